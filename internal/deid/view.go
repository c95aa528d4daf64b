package deid

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A view is the text as the detectors read it, and the way back to the
// text. Each rune of the input becomes its NFKD compatibility decomposition
// without nonspacing marks (so é is e, أ is ا, a full-width Ａ is A, ﻣ is م),
// with Arabic-Indic, Eastern Arabic-Indic and Devanagari digits as ASCII
// digits; tatweel, nonspacing marks and invisible format characters (zero
// width joiners, bidi controls) disappear. Case is kept: the patterns for
// "Mr. Smith" need it, and word matching lowers case itself (skeleton).
//
// Every byte of the view knows the input rune it came from: start[k] is
// where that rune began. A rune ends where the next kept rune begins, so
// it stretches over the runes that disappeared after it. A span of the view
// [a, b) is therefore the input span from start[a] to the start of the
// first kept rune after b-1's, which holds every mark and invisible
// character inside and at the end of what was matched: replacing it leaves
// no piece of an identifier behind.
type view struct {
	s     string
	start []int32
	n     int // the input's length
}

func newView(text string) *view {
	buf := make([]byte, 0, len(text)+8)
	start := make([]int32, 0, len(text)+8)
	var enc [utf8.UTFMax]byte
	for o, r := range text {
		switch {
		case r < utf8.RuneSelf:
			buf = append(buf, byte(r))
			start = append(start, int32(o))
			continue
		case r >= 'ا' && r <= 'ي' && r != 'ـ':
			// Arabic letters without hamza or madda: nothing to decompose.
		case vanishes(r):
			continue
		default:
			if d := norm.NFKD.Properties(enc[:utf8.EncodeRune(enc[:], r)]).Decomposition(); d != nil {
				for len(d) > 0 {
					dr, size := utf8.DecodeRune(d)
					d = d[size:]
					if !vanishes(dr) {
						buf, start = appendRune(buf, start, foldDigit(dr), o)
					}
				}
				continue
			}
			r = foldDigit(r)
		}
		buf, start = appendRune(buf, start, r, o)
	}
	return &view{s: string(buf), start: start, n: len(text)}
}

func appendRune(buf []byte, start []int32, r rune, o int) ([]byte, []int32) {
	k := len(buf)
	buf = utf8.AppendRune(buf, r)
	for ; k < len(buf); k++ {
		start = append(start, int32(o))
	}
	return buf, start
}

// vanishes reports whether r carries nothing a detector needs: a
// nonspacing mark (tashkeel, accents), a format character (ZWJ, bidi
// marks, soft hyphen) or the tatweel that stretches Arabic words.
func vanishes(r rune) bool {
	return r == 'ـ' || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Cf, r)
}

// foldDigit maps the decimal digits of the scripts careflow's markets
// write in to ASCII, and the Arabic decimal and thousands separators to
// '.' and ','.
func foldDigit(r rune) rune {
	switch {
	case r >= '٠' && r <= '٩':
		return '0' + r - '٠'
	case r >= '۰' && r <= '۹':
		return '0' + r - '۰'
	case r >= '०' && r <= '९':
		return '0' + r - '०'
	case r == '٫':
		return '.'
	case r == '٬':
		return ','
	}
	return r
}

// span returns the input span of the view span [a, b), b > a.
func (v *view) span(a, b int) (int, int) {
	last := v.start[b-1]
	for b < len(v.start) && v.start[b] == last {
		b++ // the rest of a rune that decomposed into several
	}
	if b == len(v.start) {
		return int(v.start[a]), v.n
	}
	return int(v.start[a]), int(v.start[b])
}

// A token is a word of the view: a maximal run of letters (with their
// spacing marks) or of digits; a change between letters and digits also
// ends a token, so "MRN00123456" is "MRN" and "00123456", and an id known
// as 00123456 is found inside it. skel is the token's skeleton: lower case,
// ß as ss, and the Arabic letters written interchangeably made one
// (ى and ی as ي, ة as ه, ک as ك, ٱ as ا; hamza forms are plain letters
// already, their hamza being a mark).
type token struct {
	a, b    int // view byte span
	skelEnd int // end of this token's skeleton in tokens' shared skeleton string
	digits  bool
}

type tokens struct {
	list []token
	skel string // the skeletons of all tokens, concatenated
}

func tokenize(s string) tokens {
	var t tokens
	var sk strings.Builder
	sk.Grow(len(s))
	in := false
	var cur token
	for i, r := range s {
		var letter, digit bool
		if r < utf8.RuneSelf {
			letter, digit = 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z', '0' <= r && r <= '9'
		} else {
			letter, digit = isLetter(r), unicode.IsDigit(r)
		}
		if in && ((cur.digits && !digit) || (!cur.digits && !letter)) {
			cur.b, cur.skelEnd = i, sk.Len()
			t.list = append(t.list, cur)
			in = false
		}
		if !letter && !digit {
			continue
		}
		if !in {
			cur, in = token{a: i, digits: digit}, true
		}
		writeSkel(&sk, r)
	}
	if in {
		cur.b, cur.skelEnd = len(s), sk.Len()
		t.list = append(t.list, cur)
	}
	t.skel = sk.String()
	return t
}

func isLetter(r rune) bool {
	return unicode.IsLetter(r) || (r >= utf8.RuneSelf && unicode.IsMark(r))
}

// skelStart returns where token i's skeleton begins.
func (t *tokens) skelStart(i int) int {
	if i == 0 {
		return 0
	}
	return t.list[i-1].skelEnd
}

func writeSkel(sk *strings.Builder, r rune) {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		sk.WriteByte(byte(r))
		return
	}
	switch r {
	case 'ß', 'ẞ':
		sk.WriteString("ss")
		return
	case 'ى', 'ی':
		r = 'ي'
	case 'ة':
		r = 'ه'
	case 'ک':
		r = 'ك'
	case 'ٱ':
		r = 'ا'
	case 'ς':
		r = 'σ'
	}
	sk.WriteRune(unicode.ToLower(r))
}

// skeleton returns the skeleton of a whole value: its tokens' skeletons
// joined, everything between them dropped ("Abd El-Rahman" and
// "Abdelrahman" are both "abdelrahman"; "+20 100 123 4567" is
// "201001234567").
func skeleton(s string) string {
	return tokenize(newView(s).s).skel
}
