package deid

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Known is what the patient's record says identifies them, for the
// scrubber to remove from free text wherever it appears: in any case, with
// or without diacritics, tatweel or hamza, at word boundaries, written with
// other separators ("Abd El-Rahman" for Abdelrahman, "0100-123-4567" for
// +20 100 123 4567), name parts on their own, and Arabic words with a
// conjunction or preposition joined in front ("وأحمد", "بالقاهرة").
//
// Give every value the record holds, in every script it holds it: the
// scrubber does not transliterate, so an Arabic note is only cleared of an
// Arabic name it was given. Values are PHI: a Scrubber keeps only their
// skeletons, in memory, and never prints them.
type Known struct {
	// Names of the patient (full, given, family, maiden, aliases) and of
	// relatives, contacts and employer. Each part of two letters or more
	// counts on its own, except particles (al, el, bin, abu, abd, de, van…),
	// which only count inside the name.
	Names []string
	// IDs are identifiers: MRN, national id, passport, insurance member id,
	// account, licence, device serial. Each counts as given, as its digits
	// alone, without leading zeros, and each run of four or more digits in
	// it counts on its own.
	IDs []string
	// Phones are telephone and fax numbers, in any form: the scrubber also
	// looks for them with and without the country code (+20, +91, +966,
	// +1) and trunk 0, and for their last seven and eight digits.
	Phones []string
	// Emails are e-mail addresses; the part before @ counts on its own.
	Emails []string
	// Addresses are address lines. The whole line, each part between
	// commas, and each part without its house number and street words
	// ("Tahrir" of "15 Tahrir Street") count.
	Addresses []string
	// Cities are places smaller than a state: city, district, village,
	// county, governorate district.
	Cities []string
	// PostalCodes are ZIP, PIN and postal codes.
	PostalCodes []string
	// BirthDate is the date of birth; its year alone is removed too, since
	// for a patient of 90 or more the year itself tells the age.
	BirthDate time.Time
	// Dates are other dates about the patient: admission, discharge,
	// procedure, death. Each is looked for in the common numeric and
	// written-month forms.
	Dates []time.Time
}

// matcher finds known values in a text's tokens. full maps the skeleton of
// every value (and of every variant above) to its kind; prefix holds every
// proper prefix of those skeletons, so a walk over tokens stops as soon as
// no value can match. Both are read-only once built.
type matcher struct {
	full   map[string]Kind
	prefix map[string]struct{}
	// dayMonths are the known dates' day and month, either way round:
	// "5/3" alone is a date only when the patient has one on 5 March (or
	// 3 May); elsewhere it is a score or a ratio.
	dayMonths map[[2]int]bool
}

func (m *matcher) add(skel string, k Kind) {
	if utf8.RuneCountInString(skel) < 2 {
		return
	}
	if old, ok := m.full[skel]; !ok || kindOrder[k] < kindOrder[old] {
		m.full[skel] = k
	}
	for i := range skel {
		if i > 0 {
			m.prefix[skel[:i]] = struct{}{}
		}
	}
	// Arabic attaches "and", "so", "with/in", "to" and "like" to the next
	// word: وأحمد is "and Ahmed". ال after ل loses its alef: للقاهرة.
	if r, _ := utf8.DecodeRuneInString(skel); unicode.Is(unicode.Arabic, r) && unicode.IsLetter(r) {
		for _, p := range []string{"و", "ف", "ب", "ل", "ك", "وب", "ول"} {
			m.addPlain(p+skel, k)
		}
		if rest, ok := strings.CutPrefix(skel, "ال"); ok {
			m.addPlain("لل"+rest, k)
			m.addPlain("ولل"+rest, k)
		}
	}
}

// addPlain adds skel without Arabic variants.
func (m *matcher) addPlain(skel string, k Kind) {
	if _, ok := m.full[skel]; !ok {
		m.full[skel] = k
	}
	for i := range skel {
		if i > 0 {
			m.prefix[skel[:i]] = struct{}{}
		}
	}
}

// particles are name parts that identify no one alone; they are matched
// only as part of a longer name. Skeleton forms.
var particles = set("al", "el", "ul", "bin", "ben", "ibn", "bint", "abu", "abou", "abo", "abd", "abdel", "abdul",
	"de", "del", "della", "der", "den", "di", "da", "dos", "das", "du", "van", "von", "la", "le", "mc", "st",
	"بن", "ابن", "بنت", "ابو", "عبد", "ال", "ام")

// streetWords are dropped from an address part to find its core name.
var streetWords = set("street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "boulevard", "blvd", "drive",
	"dr", "court", "ct", "way", "place", "pl", "square", "sq", "highway", "hwy", "apt", "apartment", "flat",
	"floor", "building", "bldg", "block", "suite", "no", "unit", "villa", "tower", "the",
	"شارع", "ش", "طريق", "ميدان", "حي", "عماره", "شقه", "الدور", "دور", "برج", "منطقه", "رقم", "فيلا")

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

const maxNameParts = 8 // a name's parts beyond this are matched alone, not in runs

func newMatcher(k Known) matcher {
	m := matcher{full: map[string]Kind{}, prefix: map[string]struct{}{}, dayMonths: map[[2]int]bool{}}
	for _, n := range k.Names {
		parts := skeletonParts(n)
		if len(parts) > maxNameParts {
			for _, p := range parts[maxNameParts:] {
				m.addNamePart(p)
			}
			parts = parts[:maxNameParts]
		}
		// Every part, every run of parts, and every two parts in either
		// order: "Ahmed Hassan" and "Hassan, Ahmed" for Ahmed Mohamed Hassan.
		for i := range parts {
			m.addNamePart(parts[i])
			for j := i + 1; j < len(parts); j++ {
				m.add(strings.Join(parts[i:j+1], ""), KindName)
				m.add(parts[i]+parts[j], KindName)
				m.add(parts[j]+parts[i], KindName)
			}
		}
	}
	for _, id := range k.IDs {
		m.addNumber(id, KindID)
	}
	for _, p := range k.Phones {
		m.addPhone(p)
	}
	for _, e := range k.Emails {
		m.add(skeleton(e), KindEmail)
	}
	for _, a := range k.Addresses {
		m.addAddress(a)
	}
	for _, c := range k.Cities {
		m.add(skeleton(c), KindAddress)
	}
	for _, z := range k.PostalCodes {
		m.addNumber(z, KindZIP)
	}
	if !k.BirthDate.IsZero() {
		m.addDate(k.BirthDate)
		m.add(yearString(k.BirthDate.Year()), KindDate)
	}
	for _, d := range k.Dates {
		m.addDate(d)
	}
	// An e-mail's local part alone, after everything else: it is often a
	// name, and then it keeps being one.
	for _, e := range k.Emails {
		if local, _, ok := strings.Cut(e, "@"); ok && utf8.RuneCountInString(skeleton(local)) >= 3 {
			m.addPlain(skeleton(local), KindEmail)
		}
	}
	return m
}

func (m *matcher) addNamePart(p string) {
	if !particles[p] {
		m.add(p, KindName)
	}
}

// skeletonParts returns the skeletons of the tokens of s.
func skeletonParts(s string) []string {
	t := tokenize(newView(s).s)
	parts := make([]string, len(t.list))
	for i := range t.list {
		parts[i] = t.skel[t.skelStart(i):t.list[i].skelEnd]
	}
	return parts
}

// addNumber adds an identifier: as given, its digits, its digits without
// leading zeros, and each of its digit runs of four or more.
func (m *matcher) addNumber(id string, k Kind) {
	skel := skeleton(id)
	if utf8.RuneCountInString(skel) < 3 {
		return
	}
	m.add(skel, k)
	m.addDigits(digitsOf(skel), k)
	for _, p := range skeletonParts(id) {
		if p[0] >= '0' && p[0] <= '9' {
			m.addDigits(p, k)
		}
	}
}

func (m *matcher) addDigits(d string, k Kind) {
	if len(d) >= 4 {
		m.add(d, k)
	}
	if t := strings.TrimLeft(d, "0"); len(t) >= 4 {
		m.add(t, k)
	}
}

func digitsOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// countryCodes are the calling codes of careflow's markets, tried when a
// known phone is written without one or with one.
var countryCodes = []string{"20", "91", "966", "1"}

// addPhone adds a phone number in the forms it is dialled and written:
// national significant number (nsn) alone, with the trunk 0, with the
// country code and with 00 before it, and its last seven and eight digits
// (a local number without area code).
func (m *matcher) addPhone(p string) {
	d := digitsOf(skeleton(p))
	if len(d) < 4 {
		return
	}
	trimmed := strings.TrimSpace(newView(p).s)
	var nsns []string
	switch {
	case strings.HasPrefix(trimmed, "+") || strings.HasPrefix(d, "00"):
		intl := strings.TrimPrefix(d, "00")
		for _, cc := range countryCodes {
			if rest, ok := strings.CutPrefix(intl, cc); ok && len(rest) >= 6 {
				nsns = append(nsns, strings.TrimPrefix(rest, "0"))
			}
		}
		if nsns == nil {
			nsns = append(nsns, intl)
		}
	case strings.HasPrefix(d, "0"):
		nsns = append(nsns, d[1:])
	default:
		nsns = append(nsns, d)
	}
	m.add(d, KindPhone)
	for _, nsn := range nsns {
		m.addDigits(nsn, KindPhone)
		m.add("0"+nsn, KindPhone)
		for _, cc := range countryCodes {
			m.add(cc+nsn, KindPhone)
			m.add("00"+cc+nsn, KindPhone)
			m.add(cc+"0"+nsn, KindPhone)
		}
		for _, n := range []int{7, 8} {
			if len(nsn) > n+1 {
				m.add(nsn[len(nsn)-n:], KindPhone)
			}
		}
	}
	for _, part := range skeletonParts(p) {
		m.addDigits(part, KindPhone)
	}
}

// addAddress adds an address line, its comma-separated parts and each
// part's core (without house numbers and street words).
func (m *matcher) addAddress(a string) {
	m.add(skeleton(a), KindAddress)
	for part := range strings.FieldsFuncSeq(a, func(r rune) bool { return strings.ContainsRune(",،;\n", r) }) {
		parts := skeletonParts(part)
		m.add(strings.Join(parts, ""), KindAddress)
		var core []string
		for _, p := range parts {
			if p[0] >= '0' && p[0] <= '9' {
				m.addDigits(p, KindAddress)
				continue
			}
			if !streetWords[p] {
				core = append(core, p)
			}
		}
		if c := strings.Join(core, ""); utf8.RuneCountInString(c) >= 4 {
			m.add(c, KindAddress)
		}
	}
}

var enMonthNames = [...]string{"january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"}
var arMonthNames = [...]string{"يناير", "فبراير", "مارس", "ابريل", "مايو", "يونيو", "يوليو", "اغسطس", "سبتمبر", "اكتوبر", "نوفمبر", "ديسمبر"}

// addDate adds the numeric and written-month forms of a date, as
// skeletons: the separators do not matter, so "05/03/2024", "05-03-2024"
// and "05.03.2024" are one form.
func (m *matcher) addDate(t time.Time) {
	y, mon, d := t.Date()
	Y, YY := yearString(y), two(y%100)
	days := []string{itoa(d), two(d), itoa(d) + ordinal(d)}
	months := []string{itoa(int(mon)), two(int(mon))}
	names := []string{enMonthNames[mon-1], enMonthNames[mon-1][:3], arMonthNames[mon-1]}
	for _, yr := range []string{Y, YY} {
		for _, day := range days[:2] {
			for _, mo := range months {
				m.add(day+mo+yr, KindDate)
				m.add(mo+day+yr, KindDate)
				m.add(yr+mo+day, KindDate)
			}
		}
	}
	for _, day := range days {
		for _, name := range names {
			m.add(day+name, KindDate)
			m.add(name+day, KindDate)
			for _, yr := range []string{Y, YY} {
				m.add(day+name+yr, KindDate)
				m.add(name+day+yr, KindDate)
			}
		}
	}
	m.dayMonths[[2]int{d, int(mon)}] = true
	m.dayMonths[[2]int{int(mon), d}] = true
}

func two(n int) string {
	if n < 10 {
		return "0" + itoa(n)
	}
	return itoa(n)
}

func itoa(n int) string { return strconv.Itoa(n) }

func ordinal(d int) string {
	switch {
	case d%100 >= 11 && d%100 <= 13:
		return "th"
	case d%10 == 1:
		return "st"
	case d%10 == 2:
		return "nd"
	case d%10 == 3:
		return "rd"
	}
	return "th"
}

// find appends the spans of the view where a known value stands: from each
// token, the longest run of tokens, joined only by separators, whose
// skeletons together are a value.
func (m *matcher) find(s string, t *tokens, out []span) []span {
	if len(m.full) == 0 {
		return out
	}
	for i := range t.list {
		best, kind := -1, Kind("")
		from := t.skelStart(i)
		for j := i; j < len(t.list); j++ {
			if j > i && !joinable(s[t.list[j-1].b:t.list[j].a]) {
				break
			}
			key := t.skel[from:t.list[j].skelEnd]
			if k, ok := m.full[key]; ok {
				best, kind = j, k
			}
			if _, ok := m.prefix[key]; !ok {
				break
			}
		}
		if best >= 0 {
			out = append(out, span{a: t.list[i].a, b: t.list[best].b, kind: kind})
		}
		if dm, ok := dayMonthAt(s, t, i); ok && m.dayMonths[dm] {
			out = append(out, span{a: t.list[i].a, b: t.list[i+1].b, kind: KindDate})
		}
	}
	return out
}

// dayMonthAt returns the two numbers of a day and month at token i:
// "5/3", "05-03", "5.3", not part of a longer number or date.
func dayMonthAt(s string, t *tokens, i int) ([2]int, bool) {
	if i+1 >= len(t.list) || !t.list[i].digits || !t.list[i+1].digits {
		return [2]int{}, false
	}
	x, y := t.list[i], t.list[i+1]
	if x.b-x.a > 2 || y.b-y.a > 2 || y.a-x.b != 1 || !strings.ContainsRune("/-.", rune(s[x.b])) {
		return [2]int{}, false
	}
	if x.a > 0 && strings.ContainsRune("/-.", rune(s[x.a-1])) || y.b < len(s) && strings.ContainsRune("/-.", rune(s[y.b])) && y.b+1 < len(s) && isDigit(s[y.b+1]) {
		return [2]int{}, false
	}
	a, _ := strconv.Atoi(s[x.a:x.b])
	b, _ := strconv.Atoi(s[y.a:y.b])
	return [2]int{a, b}, true
}

// joinable reports whether gap, the text between two tokens, may sit
// inside one value: nothing (letters meeting digits), or up to three
// separators.
func joinable(gap string) bool {
	n := 0
	for _, r := range gap {
		n++
		if n > 3 || !(unicode.IsSpace(r) || strings.ContainsRune("-–—.,/()'’@_+،", r)) {
			return false
		}
	}
	return true
}
