package phi

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Normalisation decides which typed values count as equal for blind-index
// search. It must never change once indexes exist (a change is a reindex), so
// every rule is listed here and pinned by tests:
//
//  1. NFKD, so compatibility forms (full-width digits, Arabic presentation
//     forms, ligatures) become ordinary letters and accents and hamzas
//     become separate combining marks.
//  2. Combining marks are dropped after Latin, Greek, Cyrillic and Arabic
//     letters: José = Jose, مُحَمَّد = محمد, and أ إ آ (alef + hamza or madda)
//     = ا. In other scripts marks carry meaning and are kept.
//  3. Arabic: tatweel is dropped; ٱ → ا, ى → ي, ی → ي, ک → ك, ة → ه;
//     Arabic-Indic and Eastern Arabic-Indic digits become ASCII digits.
//  4. Unicode case folding, then lower case (ß = ss, Σ = σ = ς).
//  5. White space is collapsed to one space and trimmed; control and format
//     characters (zero-width joiners, bidi marks) are dropped; punctuation
//     and symbols are dropped, except that in names they separate parts
//     (Abdul-Rahman has parts abdul and rahman) and apostrophes join them
//     (O'Brien = obrien).
//  6. NFC of the result, so the same text always has the same bytes.
//
// Latin and Arabic spellings of a name are not matched with each other:
// transliteration is guesswork and a blind index gives no second look.

type normMode int

const (
	modeText       normMode = iota // general text: punctuation dropped, spaces kept
	modeIdentifier                 // identifiers and phone numbers: spaces dropped too
	modeName                       // person names: punctuation separates parts
)

// Normalize returns the normalised form of general text used for exact-match
// blind indexes.
func Normalize(s string) string { return normalize(s, modeText) }

// NormalizeIdentifier normalises identifiers and phone numbers: as Normalize,
// and spaces are dropped too, so "MRN 12-34" = "mrn1234" and
// "+20 100 123 4567" = "201001234567".
func NormalizeIdentifier(s string) string { return normalize(s, modeIdentifier) }

// NormalizeName normalises a person's name: as Normalize, except that
// punctuation other than apostrophes separates name parts.
func NormalizeName(s string) string { return normalize(s, modeName) }

func normalize(s string, mode normMode) string {
	s = norm.NFKD.String(s)
	var b strings.Builder
	b.Grow(len(s))
	stripMarks := true // marks before any letter have nothing to sit on
	pendingSpace := false
	emit := func(r rune) {
		if pendingSpace && b.Len() > 0 {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteRune(r)
	}
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) {
			if !stripMarks {
				emit(r)
			}
			continue
		}
		if m, ok := arabicFold(r); ok {
			if m != 0 {
				stripMarks = true
				emit(m)
			}
			continue
		}
		switch {
		case unicode.IsSpace(r):
			if mode != modeIdentifier {
				pendingSpace = true
			}
		case unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			if !unicode.IsMark(r) {
				stripMarks = unicode.In(r, unicode.Latin, unicode.Greek, unicode.Cyrillic, unicode.Arabic)
			}
			emit(r)
		case mode == modeName && isApostrophe(r):
			// O'Brien, D’Angelo: one part.
		case mode == modeName && (unicode.IsPunct(r) || unicode.IsSymbol(r)):
			pendingSpace = true
		default:
			// Punctuation, symbols, controls and format characters.
		}
	}
	// Folding after the mark and Arabic passes: folding can change length
	// (ß → ss) but never produces marks, punctuation or spaces. x/text's
	// Fold swaps Cherokee letters each time (small → capital → small), so
	// lower-casing afterwards makes the result a fixed point; FuzzNormalize
	// found this.
	out := strings.ToLower(cases.Fold().String(b.String()))
	return norm.NFC.String(out)
}

// arabicFold maps the Arabic letters that are written interchangeably.
// ok=false leaves r alone; m=0 drops it.
func arabicFold(r rune) (m rune, ok bool) {
	switch {
	case r == 'ـ': // tatweel (kashida): stretching only
		return 0, true
	case r == 'ٱ': // alef wasla
		return 'ا', true
	case r == 'ى', r == 'ی': // alef maksura, Farsi yeh
		return 'ي', true
	case r == 'ک': // keheh
		return 'ك', true
	case r == 'ة': // teh marbuta
		return 'ه', true
	case r >= '٠' && r <= '٩': // Arabic-Indic digits
		return '0' + (r - '٠'), true
	case r >= '۰' && r <= '۹': // Eastern Arabic-Indic digits
		return '0' + (r - '۰'), true
	}
	return 0, false
}

func isApostrophe(r rune) bool {
	switch r {
	case '\'', '’', '‘', 'ʼ', '`', '´':
		return true
	}
	return false
}

// minPrefix is the shortest typed prefix that name search answers. Two
// letters would match a large share of a hospital's patients and would let
// an observer of the index learn first letters too cheaply.
const minPrefix = 3

// maxPrefix bounds the prefixes indexed per name part, so a pathological
// 10,000-letter "name" cannot produce 10,000 index rows. Query parts are cut
// to the same length, so a longer query still finds its name (and, in the
// rare case of two parts sharing their first 20 letters, both).
const maxPrefix = 20

// NamePrefixes returns the search tokens of a name: for every part of the
// normalised name, its prefixes from 3 up to 20 letters (the whole part when
// shorter), and a part shorter than 3 letters whole. Tokens are deduplicated
// and in a stable order. The tokens are PHI; they are only ever stored as
// blind indexes.
func NamePrefixes(name string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(t string) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for part := range strings.FieldsSeq(NormalizeName(name)) {
		if utf8.RuneCountInString(part) < minPrefix {
			add(part)
			continue
		}
		count := 0
		for i := range part {
			if count > maxPrefix {
				break
			}
			if count >= minPrefix {
				add(part[:i])
			}
			count++
		}
		if count <= maxPrefix {
			add(part)
		}
	}
	return out
}

// NameQueryParts returns the normalised parts of what a user typed in a name
// search, each cut to 20 letters. A record matches when each part is one of
// its NamePrefixes; a part shorter than 3 letters therefore only matches a
// whole name part.
func NameQueryParts(query string) []string {
	parts := strings.Fields(NormalizeName(query))
	for i, p := range parts {
		parts[i] = truncateRunes(p, maxPrefix)
	}
	return parts
}

func truncateRunes(s string, n int) string {
	count := 0
	for i := range s {
		if count == n {
			return s[:i]
		}
		count++
	}
	return s
}
