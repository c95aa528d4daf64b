package deid

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Numbers are where identifiers and clinical values meet: "0100 123 4567"
// is a phone, "120/80" a blood pressure, "50000 IU" a dose, "MRN-00123456"
// a record number, "E11.9" a diagnosis. The rules, on the view:
//
//   - A number is a run of digits. Runs joined by one space, hyphen or
//     parenthesis are one number (a phone written in groups, an SSN); runs
//     joined by dots are one number only when there are three or more (a
//     dotted id; a.b is a decimal). Slashes and colons never join (120/80,
//     10:30: dates are the date patterns' job).
//   - A number is an identifier when it has a run of five digits or more,
//     seven digits or more in all, or five or more in three runs or more,
//     or follows a "+" (an international phone).
//   - Except a quantity: a number of one run, or two joined by a hyphen
//     (a range), followed by a unit ("50000 IU", "1000-1500 mg"); a
//     decimal; a number with thousands commas ("250,000").
//   - A number of three or four digits is an identifier right after a word
//     that announces one ("MRN 4521", "#1234", "رقم 555", "plate ABC 1234").
//   - A number right after the name of a code system is a code ("CPT 99213",
//     "SNOMED 44054006").
//   - A word of letters and digits (joined by - _ / .) with four digits or
//     more is an identifier ("MRN-00123456", "A1234567"), unless each of its
//     parts is letters, three digits or fewer, or a quantity with its unit
//     ("500mg/5ml"), or it is a dotted ICD-10 code ("S72.001A").
//
// What an identifier number is called (PHONE, ZIP or ID) only makes the
// placeholder read well; all are removed.

// units that make a number before them a quantity. Lower case.
var units = set("mg", "mcg", "µg", "μg", "ug", "g", "gm", "gr", "gram", "grams", "kg", "ng", "pg", "ml", "mls", "l", "dl",
	"cl", "ul", "µl", "μl", "mmol", "umol", "µmol", "nmol", "mol", "meq", "iu", "u", "unit", "units", "mm", "cm",
	"m", "km", "mmhg", "cmh2o", "bpm", "kcal", "cal", "hr", "hrs", "h", "min", "mins", "sec", "s", "x", "times",
	"tab", "tabs", "tablet", "tablets", "cap", "caps", "capsule", "capsules", "drop", "drops", "puff", "puffs",
	"cells", "copies", "percent", "mosm", "ms", "mv", "k", "cc", "mu", "miu",
	"مجم", "ملجم", "مغ", "ملغ", "مل", "ملي", "وحده", "وحدات", "قرص", "اقراص", "كبسوله", "جرام", "جم", "كجم", "سم", "مم")

// idWords announce an identifier in the number after them.
var idWords = set("mrn", "id", "no", "nr", "number", "num", "acct", "account", "policy", "member", "card", "licence",
	"license", "lic", "passport", "plate", "serial", "sn", "ssn", "file", "record", "chart", "pin", "nid", "ref",
	"رقم", "ملف", "بطاقه", "جواز", "لوحه", "الرقم", "القومي")

// Words before a number that say what kind of identifier it is.
var (
	phoneWords = []string{"tel", "phone", "mobile", "mob", "cell", "fax", "whatsapp", "call", "contact",
		"هاتف", "تليفون", "تلفون", "موبايل", "جوال", "محمول", "فاكس", "واتس", "اتصال"}
	zipWords    = []string{"zip", "postal", "postcode", "post code", "pin code", "pincode", "البريدي", "بريدي"}
	idWordsNear = []string{"id", "mrn", "national", "aadhaar", "aadhar", "iqama", "passport", "account", "acct", "member",
		"policy", "licen", "serial", "record", "ssn", "القومي", "هويه", "الهويه", "اقامه", "جواز", "حساب", "ملف", "رقم"}
)

// icd10 is a dotted ICD-10 code: a letter, two digits or a digit and a
// letter, a dot, up to four more.
var icd10 = regexp.MustCompile(`^[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4}$`)

type digitRun struct{ a, b int }

// byteRuns returns the maximal runs of bytes of s that in accepts.
func byteRuns(s string, in func(byte) bool) []digitRun {
	var runs []digitRun
	for i := 0; i < len(s); {
		if !in(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && in(s[j]) {
			j++
		}
		runs = append(runs, digitRun{i, j})
		i = j
	}
	return runs
}

// findNumbers appends the identifier numbers of the view s.
func findNumbers(s string, t *tokens, out []span) []span {
	runs := byteRuns(s, isDigit)
	out = findCompounds(s, t, out)
	for i := 0; i < len(runs); {
		r := runs[i]
		if touchesLetter(s, r) {
			i++ // a word of letters and digits: findCompounds' job
			continue
		}
		// A decimal, or a number with thousands commas: a quantity.
		if n := quantityRuns(s, runs[i:]); n > 0 {
			i += n
			continue
		}
		chain := []digitRun{r}
		dotted := false
		for j := i + 1; j < len(runs); j++ {
			gap := s[runs[j-1].b:runs[j].a]
			next := runs[j]
			if touchesLetter(s, next) {
				break
			}
			if gap == "." {
				// a.b.c…: a dotted id (a lone a.b was a decimal above).
				if len(chain) == 1 && !(next.b < len(s) && s[next.b] == '.' && next.b+1 < len(s) && isDigit(s[next.b+1])) {
					break
				}
				dotted = true
			} else if dotted || !joins(gap) || quantityRuns(s, runs[j:]) > 0 {
				break
			}
			chain = append(chain, next)
		}
		i += len(chain)
		if sp, ok := classifyNumber(s, chain); ok {
			out = append(out, sp)
		}
	}
	return out
}

// joins reports whether gap joins two digit runs into one number.
func joins(gap string) bool {
	switch gap {
	case " ", "-", "–", "\u00a0", ")", ") ", "(", " (", ")-", "-(":
		return true
	}
	return false
}

// quantityRuns returns how many runs from rs[0] form a decimal ("38.5") or
// a number with thousands commas ("250,000", "1,500.75"), or 0.
func quantityRuns(s string, rs []digitRun) int {
	if len(rs) < 2 {
		return 0
	}
	n := 1
	if rs[0].b-rs[0].a <= 3 {
		for n < len(rs) && s[rs[n-1].b:rs[n].a] == "," && rs[n].b-rs[n].a == 3 &&
			!(rs[n].b < len(s) && isDigit(s[rs[n].b])) {
			n++
		}
	}
	if n < len(rs) && s[rs[n-1].b:rs[n].a] == "." {
		// A decimal point: not if another dot and digits follow (1.2.3).
		after := rs[n].b
		if after+1 < len(s) && s[after] == '.' && isDigit(s[after+1]) {
			return 0
		}
		return n + 1
	}
	if n > 1 {
		return n
	}
	return 0
}

func touchesLetter(s string, r digitRun) bool {
	before, _ := utf8.DecodeLastRuneInString(s[:r.a])
	after, _ := utf8.DecodeRuneInString(s[r.b:])
	return r.a > 0 && isLetter(before) || r.b < len(s) && isLetter(after)
}

// classifyNumber decides whether a chain of digit runs is an identifier,
// and which kind, returning its span.
func classifyNumber(s string, chain []digitRun) (span, bool) {
	a, b := chain[0].a, chain[len(chain)-1].b
	total, longest := 0, 0
	for _, r := range chain {
		total += r.b - r.a
		longest = max(longest, r.b-r.a)
	}
	plus := a > 0 && s[a-1] == '+' || a > 1 && s[a-2:a] == "+("
	if a > 0 && s[a-1] == '(' {
		a-- // "(02) 3761 2980", and "(12345)" whole
		if b < len(s) && s[b] == ')' {
			b++
		}
	}
	if plus {
		a = strings.LastIndexByte(s[:a], '+')
	}
	if w, _, _ := wordBefore(s, a); codeWords[w] {
		return span{}, false
	}
	switch {
	case plus && total >= 7:
	case longest >= 5, total >= 7, len(chain) >= 3 && total >= 5:
		if len(chain) == 1 || len(chain) == 2 && s[chain[0].b:chain[1].a] == "-" {
			if unitAfter(s, b) {
				return span{}, false
			}
		}
	case total >= 3 && announced(s, a):
		if unitAfter(s, b) {
			return span{}, false
		}
		return span{a: a, b: b, kind: KindID}, true
	default:
		return span{}, false
	}
	kind := KindID
	window := strings.ToLower(s[max(0, a-32):a])
	sizes := make([]int, len(chain))
	for i, r := range chain {
		sizes[i] = r.b - r.a
	}
	ssn := len(chain) == 3 && sizes[0] == 3 && sizes[1] == 2 && sizes[2] == 4
	switch {
	case containsAny(window, zipWords) && (len(chain) == 1 && total <= 6 || len(chain) == 2 && sizes[0] == 5 && sizes[1] == 4):
		kind = KindZIP
	case len(chain) == 1 && total == 5 && usState(s, a):
		kind = KindZIP
	case plus, containsAny(window, phoneWords):
		kind = KindPhone
	case ssn, containsAny(window, idWordsNear):
	case strings.Contains(s[a:b], "("):
		kind = KindPhone
	case len(chain) >= 2 && total >= 7 && total <= 15:
		kind = KindPhone
	case len(chain) == 1 && s[a] == '0' && total >= 9 && total <= 13:
		kind = KindPhone
	}
	return span{a: a, b: b, kind: kind}, true
}

// unitAfter reports whether a unit follows position b: "mg", " IU", "%",
// "/uL".
func unitAfter(s string, b int) bool {
	i := b
	for n := 0; i < len(s) && n < 2 && (s[i] == ' ' || s[i] == '\t'); n++ {
		i++
	}
	if i < len(s) && (s[i] == '%' || s[i] == '/') {
		return true
	}
	j := i
	for j < len(s) {
		r, size := utf8.DecodeRuneInString(s[j:])
		if !isLetter(r) && !(r >= '0' && r <= '9' && j > i) {
			break
		}
		j += size
	}
	return j > i && units[strings.ToLower(s[i:j])]
}

// announced reports whether an identifier word or "#" stands right before
// position a: "MRN 4521", "MRN: 4521", "#4521", "رقم ٤٥٢١", and, over the
// letters of a plate, "plate ABC 1234".
func announced(s string, a int) bool {
	w, at, hash := wordBefore(s, a)
	if hash || idWords[w] {
		return true
	}
	if n := len(w); n >= 1 && n <= 3 && strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") == "" && strings.ToUpper(w) == s[at:at+n] {
		w, _, _ = wordBefore(s, at)
		return w == "plate" || w == "لوحه"
	}
	return false
}

// codeWords name code systems: the number after one is a code, not an
// identifier ("CPT 99213", "SNOMED 44054006").
var codeWords = set("cpt", "hcpcs", "loinc", "snomed", "sct", "icd", "ndc", "rxnorm", "atc")

// wordBefore returns, lower case, the word before position a, skipping
// spaces, colons, dots and "#"; where it starts; and whether a "#" was
// among what it skipped.
func wordBefore(s string, a int) (string, int, bool) {
	i, hash := a, false
	for i > 0 && strings.ContainsRune(" \t:.#", rune(s[i-1])) {
		i--
		hash = hash || s[i] == '#'
	}
	j := i
	for j > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:j])
		if !isLetter(r) {
			break
		}
		j -= size
	}
	return strings.ToLower(s[j:i]), j, hash
}

// usState reports whether two capital letters and a space stand before a
// ("NY 10001").
func usState(s string, a int) bool {
	if a < 3 || s[a-1] != ' ' || !isUpperASCII(s[a-2]) || !isUpperASCII(s[a-3]) {
		return false
	}
	return a == 3 || !isLetter(rune(s[a-4]))
}

func isUpperASCII(c byte) bool { return c >= 'A' && c <= 'Z' }

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// findCompounds appends words of letters and digits, tokens joined by
// nothing or by one of - _ / ., that hold a letter and four digits or more
// and are not made only of benign parts.
func findCompounds(s string, t *tokens, out []span) []span {
	n := len(t.list)
	for i := 0; i < n; {
		j, letters, digits := i, 0, 0
		for {
			if tk := t.list[j]; tk.digits {
				digits += tk.b - tk.a
			} else {
				letters++
			}
			if j+1 == n {
				break
			}
			gap := s[t.list[j].b:t.list[j+1].a]
			if gap != "" && (len(gap) > 1 || strings.IndexByte("-_/.", gap[0]) < 0) {
				break
			}
			j++
		}
		a, b := t.list[i].a, t.list[j].b
		i = j + 1
		if letters == 0 || digits < 4 || icd10.MatchString(s[a:b]) {
			continue
		}
		benign := true
		for part := range strings.FieldsFuncSeq(s[a:b], func(r rune) bool { return strings.ContainsRune("-_/.", r) }) {
			benign = benign && benignPart(part)
		}
		if !benign {
			out = append(out, span{a: a, b: b, kind: KindID})
		}
	}
	return out
}

// benignPart reports whether one part of a compound word is clinical: a
// number with its unit ("500mg"), or three digits or fewer (letters only,
// "SpO2", "B12").
func benignPart(p string) bool {
	d := 0
	for d < len(p) && isDigit(p[d]) {
		d++
	}
	if d > 0 && d < len(p) && units[strings.ToLower(p[d:])] {
		return true
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if isDigit(p[i]) {
			n++
		}
	}
	return n <= 3
}
