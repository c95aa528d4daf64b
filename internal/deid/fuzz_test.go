package deid

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzIdentifiers are known values of the test patient, one of which the
// fuzzer inserts into its text.
var fuzzIdentifiers = []string{
	"Ahmed", "HASSAN", "أحمد", "محمد", "00123456", "29001011234567", "0100 123 4567", "+20 100 123 4567",
	"ahmed.hassan@example.com", "Tahrir", "الجيزة", "05/03/1950", "5 March 1950", "EGI-77-1234567", "12611",
}

// FuzzScrub checks that no text makes the scrubber panic or write invalid
// UTF-8, and that a known identifier set into any text, at any rune
// boundary, as a word of its own, leaves one occurrence fewer than the text
// then holds: whatever surrounds it, the inserted one is gone.
func FuzzScrub(f *testing.F) {
	for i, n := range notes {
		f.Add(n.text, uint16(i*37), uint8(i))
	}
	f.Add("", uint16(0), uint8(0))
	f.Add("Mr. \u0301\u200d", uint16(4), uint8(2))
	f.Add("+(((---...", uint16(1), uint8(6))
	f.Add("\xff\xfe٠١٢٣ـــ", uint16(3), uint8(9))
	s := NewScrubber(patient)
	f.Fuzz(func(t *testing.T, text string, pos uint16, which uint8) {
		out, rep := s.Scrub(text)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", text)
		}
		for k, n := range rep {
			if n <= 0 || kindOrder[k] < 0 || k.Placeholder() == "" {
				t.Fatalf("report %v", rep)
			}
		}

		valid := strings.ToValidUTF8(text, "\uFFFD")
		p := int(pos) % (len(valid) + 1)
		for p < len(valid) && !utf8.RuneStart(valid[p]) {
			p--
		}
		id := fuzzIdentifiers[int(which)%len(fuzzIdentifiers)]
		in := valid[:p] + " " + id + " " + valid[p:]
		out, rep = s.Scrub(in)
		before, after := strings.Count(plain(in), plain(id)), strings.Count(plain(out), plain(id))
		if after >= before {
			t.Fatalf("%q inserted at %d survived:\n in: %q\nout: %q", id, p, in, out)
		}
		if rep.Total() == 0 {
			t.Fatalf("nothing reported for %q", in)
		}
	})
}
