package deid

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The patterns find identifiers nobody named: they run on the view (digits
// ASCII, marks and tatweel gone, case kept). Go's regexp is RE2, linear in
// the text whatever it holds, so no note can make the scrubber slow; its \b
// knows only ASCII, so boundaries next to Arabic are checked in code
// (bounded).

// A detector is one pattern, where to look for it, and what its match is.
// Running a dozen regexps over a whole note costs milliseconds (RE2 steps
// through every byte with every pattern), so each detector names the
// tokens that anchor it (a month, "Mr", "street", a digit token followed
// by a slash) and runs only on windows of a few tokens around them. A
// window starts after the token before its first and ends before the
// token after its last, so the separators around a match (the "." of
// "Mr.", the "+" of a phone) are in it; wide windows run from white space
// to white space, for URLs and e-mails, whose length has no bound.
type detector struct {
	re    *regexp.Regexp
	kind  Kind
	group int // the submatch removed (the first from it that took part); 0 is the whole match
	// solo gives each anchor a window of its own, starting at it: a name
	// pattern that took the next honorific for a name word (Arabic joins
	// "and" to it: "د. منى والسيد محمود") must not hide the name after that
	// honorific from its own window; the honorific taken is cut (trimAnchor).
	solo      bool
	atStart   *regexp.Regexp                        // re anchored at the start of the window, for solo detectors
	words     []string                              // skeletons of the tokens that anchor it, or
	anchor    func(s string, t *tokens, i int) bool // whether token i anchors it
	back, fwd int                                   // tokens before and after the anchor in its window
	wide      bool                                  // the window runs to white space on both sides
	bound     bool                                  // the whole match must stand at word boundaries
	valid     func(s string, m []int) bool          // accepts a match (m: submatch indexes into s)
}

// skelOf returns token i's skeleton.
func (t *tokens) skelOf(i int) string { return t.skel[t.skelStart(i):t.list[i].skelEnd] }

// digitThen anchors a detector on digit tokens followed by one of seps and
// a digit.
func digitThen(seps string) func(string, *tokens, int) bool {
	return func(s string, t *tokens, i int) bool {
		b := t.list[i].b
		return t.list[i].digits && b+1 < len(s) && strings.IndexByte(seps, s[b]) >= 0 && isDigit(s[b+1])
	}
}

const (
	arLetter = `[\x{0620}-\x{064A}\x{066E}\x{066F}\x{0671}-\x{06D3}\x{06D5}\x{06FA}-\x{06FC}]`
	arWord   = arLetter + `+`
	capWord  = `\p{Lu}[\p{L}'’-]*`
	gapH     = `[ \t\x{00A0}]` // horizontal space: a name never runs over a line break
)

var (
	dateTo = `(?:[T ](?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?`

	reTimeOn = regexp.MustCompile(`^` + dateTo)

	reAge = regexp.MustCompile(`(\d{2,3})[\s-]*(?:years?|yrs?|y)(?:[\s-]*(?:old|o|/o|\.\s?o\.?))?` +
		`|(?i:aged?)[\s:]+(\d{2,3})` +
		`|(\d{2,3})\s*(?:عاما|عام|سن[ةه]|سنوات|سنين)` +
		`|(?:عمره|عمرها|العمر|بعمر|عمر|سن)\s*:?\s*(\d{2,3})` +
		`|((?i:ninety|a hundred|one hundred|hundred)(?:[\s-]+(?i:one|two|three|four|five|six|seven|eight|nine))?)[\s-]+(?i:years?|yrs?)`)

	// reBirthYear finds a year of birth standing alone ("born in 1930",
	// "DOB: 1930", "مواليد ١٩٣٠"): for a patient of 90 or more the year
	// itself is an identifier, and the scrubber cannot know the age.
	reBirthYear = regexp.MustCompile(`(?:\b(?i:born|dob|d\.o\.b\.?|birth\s*year|year\s+of\s+birth|birth)[\s:,-]*(?i:in\s+|on\s+)?|` +
		`(?:مواليد|مولود[ةه]?|ولد|ولدت|تاريخ\s+الميلاد|الميلاد)\s*:?\s*(?:عام|سن[ةه]|في)?\s*)(\d{4})`)

	reHonorific = regexp.MustCompile(`\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Mme|Madam|Sheikh|Sheikha|Shaikh|Hajj|Haj|Hajja|Eng|Sr|Sra|Shri|Smt|Sri)\.?` +
		gapH + `+(` + capWord + `(?:` + gapH + `+` + capWord + `){0,3})`)
	reHonorificAr = regexp.MustCompile(`(?:و?(?:السيد[ةه]|السيد|الحاج[ةه]|الحاج|الاستاذ[ةه]|الاستاذ|الدكتور[ةه]|الدكتور|الشيخ[ةه]|الشيخ|المهندس[ةه]|المهندس)` +
		gapH + `+|(?:د|م)\.` + gapH + `*)(` + arWord + `(?:` + gapH + `+` + arWord + `)?)`)
	// rePlace finds where someone lives: "lives in Nasr City, Cairo",
	// "يسكن في مدينة نصر". A place nobody named is otherwise invisible.
	rePlace = regexp.MustCompile(`\b(?i:lives|living|resides|residing|resident|moved|relocated|native)(?:` + gapH + `+(?i:in|at|of|to|near))+` +
		gapH + `+(` + capWord + `(?:,?` + gapH + `+` + capWord + `){0,3})` +
		`|(?:يسكن|تسكن|يقيم|تقيم|مقيم[ةه]?|من` + gapH + `+سكان|ساكن[ةه]?)(?:` + gapH + `+(?:في|ب))?` + gapH + `+(` + arWord + `(?:` + gapH + `*[،,]?` + gapH + `*` + arWord + `){0,2})`)
	reNamed = regexp.MustCompile(`(?:\b[Nn]ame` + gapH + `+is|\b[Nn]amed|\b[Cc]alled|\b(?:[Pp]atient|[Pp]t|[Nn]ame|NAME|PATIENT)` + gapH + `*:|` +
		`\b(?:wife|husband|son|daughter|mother|father|brother|sister|spouse|friend|neighbou?r|employer|guardian|Wife|Husband|Son|Daughter|Mother|Father|Brother|Sister|Spouse)` + gapH + `*,?)` +
		gapH + `*(` + capWord + `(?:` + gapH + `+` + capWord + `){0,2})`)
	reNamedAr = regexp.MustCompile(`(?:اسم` + gapH + `+المريض[ةه]?|اسمه|اسمها|الاسم|يدع[ىي]|تدع[ىي]|المدعو[ةه]?)` + gapH + `*:?` + gapH + `*(` +
		arWord + `(?:` + gapH + `+` + arWord + `){0,2})`)

	reStreet = regexp.MustCompile(`\d{1,5}[A-Za-z]?,?` + gapH + `+(?:[\p{Lu}\d][\p{L}\d'’.-]*` + gapH + `+){1,4}` +
		`(?i:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|court|ct|way|place|pl|terrace|square|sq|highway|hwy|parkway|pkwy|circle|close|crescent|corniche|marg|nagar)\b\.?` +
		`(?:,` + gapH + `*` + capWord + `(?:` + gapH + `+` + capWord + `)?){0,3}` +
		`|(?:` + capWord + gapH + `+){1,3}(?:Street|Road|Avenue|Lane|Boulevard|Drive|Square|Highway|Parkway|Terrace|Corniche)\b`)
	reStreetAr = regexp.MustCompile(`(?:\d{1,5}` + gapH + `*)?(?:(?:شارع|ش\.|طريق|ميدان|عمار[ةه]|شق[ةه]|قري[ةه]|عزب[ةه]|كومباوند)` + gapH + `*(?:رقم` + gapH + `*)?(?:` + arWord + `|\d{1,5})` +
		`(?:` + gapH + `+` + arWord + `)?|حي` + gapH + `+ال` + arWord + `)(?:` + gapH + `+\d{1,5})?` +
		`(?:` + gapH + `*[،,]` + gapH + `*` + arWord + `(?:` + gapH + `+` + arWord + `)?){0,3}`)
	rePOBox = regexp.MustCompile(`(?:\b[Pp]\.?` + gapH + `?[Oo]\.?` + gapH + `*(?i:box)|ص\.?` + gapH + `*ب\.?)` + gapH + `*\d{1,7}` +
		`|\b(?i:apt|apartment|flat|suite|bldg|building|villa)\.?` + gapH + `*#?` + gapH + `*\d{1,5}[A-Za-z]?\b`)

	reEmail  = regexp.MustCompile(`[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)+`)
	reURL    = regexp.MustCompile(`(?i:(?:https?|ftp)://|www\.)[^\s<>"'،]+`)
	reDomain = regexp.MustCompile(`(?i)[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.(?:com|org|net|info|io|gov|edu|eg|in|sa|co|me|us|uk|ae|health)(?:/[^\s<>"'،]*)?`)
	reIPv4   = regexp.MustCompile(`(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})`)
)

var (
	streetAnchors = []string{"street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "boulevard", "blvd", "drive",
		"court", "ct", "way", "place", "pl", "terrace", "square", "sq", "highway", "hwy", "parkway", "pkwy", "circle",
		"close", "crescent", "corniche", "marg", "nagar"}
	tlds = set("com", "org", "net", "info", "io", "gov", "edu", "eg", "in", "sa", "co", "me", "us", "uk", "ae", "health")
)

var detectors = []detector{
	{re: reEmail, kind: KindEmail, wide: true, anchor: func(s string, t *tokens, i int) bool {
		return t.list[i].b < len(s) && s[t.list[i].b] == '@'
	}},
	{re: reURL, kind: KindURL, wide: true, words: []string{"http", "https", "ftp", "www"}},
	{re: reDomain, kind: KindURL, wide: true, bound: true, anchor: func(s string, t *tokens, i int) bool {
		a := t.list[i].a
		return a > 0 && s[a-1] == '.' && tlds[t.skelOf(i)]
	}},
	{re: reIPv4, kind: KindIP, bound: true, valid: validIPv4, anchor: digitThen("."), fwd: 4},
	{re: reAge, kind: KindAge, back: 3, fwd: 3, words: []string{"year", "years", "yr", "yrs", "y", "yo", "old", "o", "aged", "age",
		"عاما", "عام", "سنه", "سنوات", "سنين", "عمره", "عمرها", "العمر", "بعمر", "عمر", "سن", "ninety", "hundred"}},
	{re: reBirthYear, kind: KindDate, group: 1, fwd: 4, words: []string{"born", "dob", "d", "birth", "مواليد", "مولود", "مولوده",
		"ولد", "ولدت", "الميلاد"}},
	{re: reHonorific, kind: KindName, group: 1, solo: true, fwd: 5, words: []string{"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir",
		"dame", "mme", "madam", "sheikh", "sheikha", "shaikh", "hajj", "haj", "hajja", "eng", "sr", "sra", "shri", "smt", "sri"}},
	{re: reHonorificAr, kind: KindName, group: 1, solo: true, fwd: 3, words: withWaw("السيد", "السيده", "الحاج", "الحاجه", "الاستاذ",
		"الاستاذه", "الدكتور", "الدكتوره", "الشيخ", "الشيخه", "المهندس", "المهندسه", "د", "م")},
	{re: rePlace, kind: KindAddress, group: 1, fwd: 7, valid: notPreposition, words: []string{"lives", "living", "resides",
		"residing", "resident", "moved", "relocated", "native", "يسكن", "تسكن", "يقيم", "تقيم", "مقيم", "مقيمه", "سكان", "ساكن", "ساكنه"}},
	{re: reNamed, kind: KindName, group: 1, solo: true, fwd: 5, words: []string{"name", "named", "called", "patient", "pt", "wife", "husband",
		"son", "daughter", "mother", "father", "brother", "sister", "spouse", "friend", "neighbor", "neighbour", "employer", "guardian"}},
	{re: reNamedAr, kind: KindName, group: 1, solo: true, fwd: 4, words: []string{"اسم", "اسمه", "اسمها", "الاسم", "يدعي", "تدعي", "المدعو", "المدعوه"}},
	{re: reStreet, kind: KindAddress, back: 8, fwd: 8, words: streetAnchors},
	{re: reStreetAr, kind: KindAddress, back: 2, fwd: 12, words: []string{"شارع", "ش", "طريق", "ميدان", "عماره", "شقه", "قريه",
		"عزبه", "كومباوند", "حي"}},
	{re: rePOBox, kind: KindAddress, back: 4, fwd: 3, words: []string{"box", "ب", "apt", "apartment", "flat", "suite", "bldg",
		"building", "villa"}},
}

type window struct{ a, b int }

func init() {
	for i, d := range detectors {
		if d.solo {
			detectors[i].atStart = regexp.MustCompile(`^(?:` + d.re.String() + `)`)
		}
	}
}

// byWord lists, for each anchoring skeleton, the detectors it anchors.
var byWord = func() map[string][]int {
	m := map[string][]int{}
	for i, d := range detectors {
		for _, w := range d.words {
			m[w] = append(m[w], i)
		}
	}
	return m
}()

// byAnchor lists the detectors anchored by a function.
var byAnchor = func() []int {
	var a []int
	for i, d := range detectors {
		if d.anchor != nil {
			a = append(a, i)
		}
	}
	return a
}()

// findPatterns appends the spans every detector finds in the view s: one
// pass over the tokens collects each detector's windows (merged where they
// overlap), then each runs on its windows.
func findPatterns(s string, t *tokens, out []span) []span {
	ws := make([][]window, len(detectors))
	for i := range t.list {
		for _, d := range byWord[t.skelOf(i)] {
			ws[d] = detectors[d].addWindow(ws[d], s, t, i)
		}
		for _, d := range byAnchor {
			if detectors[d].anchor(s, t, i) {
				ws[d] = detectors[d].addWindow(ws[d], s, t, i)
			}
		}
	}
	for d := range detectors {
		for _, w := range ws[d] {
			out = detectors[d].find(s, w, out)
		}
	}
	out = findMonthDates(s, t, out)
	out = findNumericDates(s, t, out)
	return findAddresses(s, out)
}

// addWindow adds the window around anchor token i to ws.
func (d *detector) addWindow(ws []window, s string, t *tokens, i int) []window {
	n := len(t.list)
	lo, hi := max(0, i-d.back), min(n-1, i+d.fwd)
	a, b := 0, len(s)
	if lo > 0 {
		a = t.list[lo-1].b
	}
	if hi+1 < n {
		b = t.list[hi+1].a
	}
	k := len(ws)
	if d.wide {
		// From white space to white space. A window already reaching past
		// this one's tokens ends at the same white space, and one reaching
		// its first token starts at the same; not searching again keeps a
		// text of many anchors and no spaces linear.
		from, to := t.list[lo].a, t.list[hi].b
		if k > 0 && ws[k-1].b >= to {
			return ws
		}
		if k > 0 && ws[k-1].b >= from {
			a = ws[k-1].a
		} else {
			a = strings.LastIndexAny(s[:from], " \t\n\r") + 1
		}
		if e := strings.IndexAny(s[to:], " \t\n\r"); e >= 0 {
			b = to + e
		} else {
			b = len(s)
		}
	}
	if d.solo {
		return append(ws, window{t.list[i].a, b})
	}
	if k > 0 && a <= ws[k-1].b {
		ws[k-1].b = max(ws[k-1].b, b)
		return ws
	}
	return append(ws, window{a, b})
}

// trimAnchor cuts from the name s[a:b] a last word that is one of d's
// anchors, with the space before it.
func (d *detector) trimAnchor(s string, a, b int) int {
	i := strings.LastIndexAny(s[a:b], " \t\u00a0")
	if i < 0 {
		return b
	}
	if last := skeleton(s[a+i+1 : b]); slices.Contains(d.words, last) {
		return a + len(strings.TrimRight(s[a:a+i], " \t\u00a0"))
	}
	return b
}

// find appends d's matches in the window w of s.
func (d *detector) find(s string, w window, out []span) []span {
	var ms [][]int
	if d.solo {
		// The window starts at its anchor: one match, there or nowhere
		// (a later one has a window of its own).
		if m := d.atStart.FindStringSubmatchIndex(s[w.a:w.b]); m != nil {
			ms = [][]int{m}
		}
	} else {
		ms = d.re.FindAllStringSubmatchIndex(s[w.a:w.b], -1)
	}
	for _, m := range ms {
		for k := range m {
			if m[k] >= 0 {
				m[k] += w.a
			}
		}
		if d.bound && !bounded(s, m[0], m[1]) {
			continue
		}
		if d.valid != nil && !d.valid(s, m) {
			continue
		}
		a, b := m[0], m[1]
		if d.kind == KindAge {
			var ok bool
			if a, b, ok = ageGroup(s, m); !ok {
				continue
			}
		} else if d.group > 0 {
			// The first group that took part: alternatives (English or
			// Arabic) each have their own.
			for g := d.group; 2*g < len(m); g++ {
				if m[2*g] >= 0 {
					a, b = m[2*g], m[2*g+1]
					break
				}
			}
			if d.solo {
				b = d.trimAnchor(s, a, b)
			}
		}
		if d.kind == KindURL {
			b = a + len(strings.TrimRight(s[a:b], ".,;:!?)]}'\""))
		}
		if b > a {
			out = append(out, span{a: a, b: b, kind: d.kind})
		}
	}
	return out
}

// withWaw returns words and each with "and" (و) joined in front.
func withWaw(words ...string) []string {
	for _, w := range words {
		words = append(words, "و"+w)
	}
	return words
}

// notPreposition refuses a place that is only the preposition the pattern
// could have skipped ("يسكن في ١٥ شارع…" is the street pattern's).
func notPreposition(s string, m []int) bool {
	for g := 1; 2*g < len(m); g++ {
		if a := m[2*g]; a >= 0 {
			first, _, _ := strings.Cut(s[a:m[2*g+1]], " ")
			return first != "في" && first != "ب"
		}
	}
	return true
}

// validIPv4 accepts four numbers up to 255 that no digit or dot continues.
func validIPv4(s string, m []int) bool {
	if m[0] > 0 && s[m[0]-1] == '.' || m[1]+1 < len(s) && s[m[1]] == '.' && isDigit(s[m[1]+1]) {
		return false
	}
	for g := 1; g <= 4; g++ {
		if v, _ := strconv.Atoi(s[m[2*g]:m[2*g+1]]); v > 255 {
			return false
		}
	}
	return true
}

// ageGroup returns the span of the age in an age match when it is over 89;
// only the number is replaced ("92-year-old" becomes "90+-year-old").
func ageGroup(s string, m []int) (int, int, bool) {
	for g := 1; 2*g < len(m); g++ {
		a, b := m[2*g], m[2*g+1]
		if a < 0 {
			continue
		}
		if a > 0 && isDigit(s[a-1]) || b < len(s) && isDigit(s[b]) {
			return 0, 0, false
		}
		if !isDigit(s[a]) {
			return a, b, true // ninety-two, a hundred
		}
		v, _ := strconv.Atoi(s[a:b])
		return a, b, v >= OldestAge && v < 150
	}
	return 0, 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// bounded reports whether s[a:b] neither starts nor ends inside a word.
func bounded(s string, a, b int) bool {
	before, _ := utf8.DecodeLastRuneInString(s[:a])
	after, _ := utf8.DecodeRuneInString(s[b:])
	return !(a > 0 && isWordRune(before)) && !(b < len(s) && isWordRune(after))
}

// findAddresses finds IPv6 addresses and MAC addresses (device
// identifiers): runs of hex digits, colons and dots holding two colons or
// more, checked by net/netip or by the MAC shape.
func findAddresses(s string, out []span) []span {
	if !strings.Contains(s, ":") {
		return out
	}
	isHex := func(c byte) bool {
		return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.'
	}
	for _, r := range byteRuns(s, isHex) {
		run := strings.TrimRight(s[r.a:r.b], ".")
		a, b := r.a, r.a+len(run)
		if strings.Count(run, ":") < 2 || !bounded(s, a, b) {
			continue
		}
		if ip, err := netip.ParseAddr(run); err == nil && ip.Is6() {
			out = append(out, span{a: a, b: b, kind: KindIP})
		} else if isMAC(run) {
			out = append(out, span{a: a, b: b, kind: KindID})
		}
	}
	return out
}

func isMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i%3 == 2 {
			if s[i] != ':' {
				return false
			}
		} else if s[i] == ':' || s[i] == '.' {
			return false
		}
	}
	return true
}
