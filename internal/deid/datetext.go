package deid

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Dates in text are found on tokens, not by regexps: an alternation of
// every month name in three calendars made one pattern cost more than all
// the others together, and small numeric patterns run on many windows cost
// more than reading the digit tokens once.
//
// Numeric dates: three numbers joined by single - / or . ("2024-03-05",
// "05/03/2024", "5.3.24", "1445/09/12"), a four-digit year first or a day
// and month (either order) first and a year of two or four digits last,
// with a plausible day and month; a time right after goes with the date
// ("2024-03-05T10:00:00+02:00"). A year and a month ("2024-03", "03/2024")
// is a date too; a lone year is not.
//
// Dates written with a month's name ("5 March 2024", "March 5, 2024",
// "5-Mar-24", "5th of March", "٥ مارس ٢٠٢٤", "12 ربيع الأول 1445") are
// found on tokens, not by a regexp: an alternation of every month name in
// A month name counts when a day or a year stands next to it, joined only
// by separators, or when it follows a preposition ("in March", "في رمضان").
// English names count only capitalised, so the verb "may" and the word
// "march" stay; Arabic month names that are also words (صفر, zero; اب,
// father) are removed only in such company too.

var (
	enMonths = func() map[string]bool {
		m := map[string]bool{"sept": true}
		for _, n := range enMonthNames {
			m[n], m[n[:3]] = true, true
		}
		return m
	}()
	arMonths = set("يناير", "فبراير", "مارس", "ابريل", "مايو", "يونيو", "يونيه", "يوليو", "يوليه", "اغسطس", "سبتمبر",
		"اكتوبر", "نوفمبر", "ديسمبر", "شباط", "اذار", "نيسان", "ايار", "حزيران", "تموز", "اب", "ايلول",
		"محرم", "صفر", "رجب", "شعبان", "رمضان", "شوال")
	// arMonthPairs are the month names of two words, by first word.
	arMonthPairs = map[string]map[string]bool{
		"كانون": set("الثاني", "الاول"),
		"تشرين": set("الاول", "الثاني"),
		"ربيع":  set("الاول", "الثاني", "الاخر"),
		"جمادي": set("الاولي", "الاول", "الاخره", "الثانيه"),
		"ذو":    set("القعده", "الحجه"),
		"ذي":    set("القعده", "الحجه"),
	}
	ordinals     = set("st", "nd", "rd", "th")
	prepositions = set("in", "on", "since", "during", "until", "till", "by", "from", "early", "late", "mid", "last",
		"next", "this", "of", "end", "في", "منذ", "خلال", "شهر", "حتي")
)

// monthLen returns how many tokens (1 or 2) make a month name at token i,
// or 0.
func monthLen(s string, t *tokens, i int) int {
	k := t.skelOf(i)
	switch {
	case enMonths[k]:
		if r, _ := utf8.DecodeRuneInString(s[t.list[i].a:]); unicode.IsUpper(r) {
			return 1
		}
	case arMonths[k]:
		return 1
	case arMonthPairs[k] != nil:
		if i+1 < len(t.list) && dateGap(s, t, i, i+1) && arMonthPairs[k][t.skelOf(i+1)] {
			return 2
		}
	}
	return 0
}

// dateGap reports whether tokens i and j (j > i) are joined only by date
// separators: up to three of space, - . / , and apostrophe, no line break.
func dateGap(s string, t *tokens, i, j int) bool {
	gap := s[t.list[i].b:t.list[j].a]
	return utf8.RuneCountInString(gap) <= 3 && strings.Trim(gap, " \t\u00a0-./,'’") == ""
}

// findMonthDates appends the spans of dates with a month's name.
func findMonthDates(s string, t *tokens, out []span) []span {
	n := len(t.list)
	isNum := func(i, maxLen int) bool {
		return i >= 0 && i < n && t.list[i].digits && t.list[i].b-t.list[i].a <= maxLen
	}
	for i := 0; i < n; i++ {
		l := monthLen(s, t, i)
		if l == 0 {
			continue
		}
		first, last := i, i+l-1
		// A day before: "5 March", "5-Mar", "5th of March".
		j, joinTo := i-1, i
		if j >= 0 && t.skelOf(j) == "of" && dateGap(s, t, j, i) {
			j, joinTo = j-1, j
		}
		switch {
		case j >= 1 && ordinals[t.skelOf(j)] && t.list[j-1].b == t.list[j].a && isNum(j-1, 2) && dateGap(s, t, j, joinTo):
			first = j - 1
		case isNum(j, 2) && dateGap(s, t, j, joinTo):
			first = j
		}
		// A day and a year, or a year, after: "March 5, 2024", "March 2024".
		k := last + 1
		if isNum(k, 2) && dateGap(s, t, last, k) {
			last = k
			if k+1 < n && ordinals[t.skelOf(k+1)] && t.list[k].b == t.list[k+1].a {
				last = k + 1
			}
			k = last + 1
		}
		if isNum(k, 4) && dateGap(s, t, last, k) {
			if w := t.list[k].b - t.list[k].a; w == 2 || w == 4 {
				last = k
			}
		}
		after := t.list[last].b
		if last > i+l-1 && after < len(s) && s[after] == '.' && after+1 < len(s) && isDigit(s[after+1]) {
			last = i + l - 1 // "May 2.5 mg" is no date
		}
		switch {
		case first < i || last > i+l-1:
		case i > 0 && prepositions[t.skelOf(i-1)] && dateGap(s, t, i-1, i):
		default:
			continue
		}
		out = append(out, span{a: t.list[first].a, b: t.list[last].b, kind: KindDate})
		i = last
	}
	return out
}

// findNumericDates appends the spans of numeric dates.
func findNumericDates(s string, t *tokens, out []span) []span {
	n := len(t.list)
	num := func(i int) (int, int) { // value and width of digit token i, or -1
		if i >= n || !t.list[i].digits || t.list[i].b-t.list[i].a > 4 {
			return -1, 0
		}
		v := 0
		for _, c := range []byte(s[t.list[i].a:t.list[i].b]) {
			v = v*10 + int(c-'0')
		}
		return v, t.list[i].b - t.list[i].a
	}
	sep := func(i int, seps string) bool { // token i and i+1 joined by one of seps
		gap := s[t.list[i].b:t.list[i+1].a]
		return len(gap) == 1 && strings.Contains(seps, gap)
	}
	for i := 0; i < n; i++ {
		a, wa := num(i)
		if a < 0 || i+1 >= n || !sep(i, "-/.") {
			continue
		}
		if p := t.list[i].a; p > 1 && strings.IndexByte("-/.", s[p-1]) >= 0 && isDigit(s[p-2]) {
			continue // the tail of a longer number
		}
		b, _ := num(i + 1)
		if b < 0 {
			continue
		}
		if c, wc := num(i + 2); c >= 0 && sep(i+1, "-/.") {
			if i+3 < n && sep(i+2, "-/.") && t.list[i+3].digits {
				continue // four numbers: a version or an address, not a date
			}
			ok := wa == 4 && wc <= 2 && b >= 1 && b <= 12 && c >= 1 && c <= 31 ||
				wa <= 2 && (wc == 2 || wc == 4) && a >= 1 && b >= 1 && (a <= 31 && b <= 12 || a <= 12 && b <= 31)
			if ok {
				end := t.list[i+2].b
				if m := reTimeOn.FindStringIndex(s[end:min(len(s), end+40)]); m != nil {
					end += m[1]
				}
				out = append(out, span{a: t.list[i].a, b: end, kind: KindDate})
				i += 2
			}
			continue
		}
		if !sep(i, "-/") || i+2 < n && sep(i+1, "-/.") && t.list[i+2].digits {
			continue
		}
		// A year and a month, either way round.
		_, wb := num(i + 1)
		year := func(v, w int) bool { return w == 4 && v >= 1400 && v <= 2099 }
		if year(a, wa) && wb <= 2 && b >= 1 && b <= 12 || wa <= 2 && a >= 1 && a <= 12 && year(b, wb) {
			out = append(out, span{a: t.list[i].a, b: t.list[i+1].b, kind: KindDate})
			i++
		}
	}
	return out
}
