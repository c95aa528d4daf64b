package fhir

import (
	"fmt"
	"unicode/utf8"
)

// Characters a string may not hold.
//
// R4 (2.24.0.1, string): "Strings SHALL NOT contain Unicode character points
// below 32, except for u0009 (horizontal tab), u0010 (carriage return) and
// u0013 (line feed)". The type's regex, [ \r\n\t\S]+, does not say so (\S
// matches U+0000), so the rule is checked here, for string and every type
// derived from it (code, id, uri, markdown, ...). An unpaired surrogate is
// refused earlier, by the parser (jsontree.go).
//
// Names and identifiers are held to more: they are what people and
// matching algorithms compare, and some characters make two different
// values look the same or one value look like another. A right-to-left
// override (U+202E) renders "Hassan‮dam" backwards; a zero-width space
// makes "Fatma" and "Fat\u200bma" two patients that read alike. Refused in
// the parts of a HumanName (text, family, given, prefix, suffix), in an
// Identifier's value (an MRN, a national id) and in a ContactPoint's value
// (a phone number or an email address, which match by exact text):
//
//   - the bidi embedding, override and isolate controls U+202A–U+202E and
//     U+2066–U+2069, which reorder how text is shown;
//   - the invisible characters U+200B (zero-width space), U+2060 (word
//     joiner) and U+FEFF (zero-width no-break space, the BOM inside text).
//
// Allowed on purpose: right-to-left letters themselves (an Arabic or
// Hebrew name is RTL script, not an override); U+200C and U+200D (zero-width
// non-joiner and joiner), which Persian, Arabic-script and Indic names need
// to be spelled right; and the implicit marks U+200E, U+200F and U+061C,
// which only steer neutral characters and cannot reorder letters. Free-text
// elements (Address lines, notes, narrative) keep every character R4 allows:
// they are read, not matched, and a clinician's note may quote anything.

// controlRune returns the first control character R4 forbids in s (below
// U+0020 and not tab, LF or CR).
func controlRune(s string) (rune, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return rune(c), true
		}
	}
	return 0, false
}

// DisguisingRune returns the first character in s that changes how text
// is shown without being seen itself: a bidi embedding, override or isolate
// control, or an invisible zero-width space, word joiner or BOM. Names and
// identifiers that people compare must not hold one (see above).
func DisguisingRune(s string) (rune, bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c != 0xE2 && c != 0xEF {
			// Every disguising character is a 3-byte sequence starting
			// with E2 (U+2000–U+2FFF) or EF (U+FEFF), and neither byte is
			// ever a continuation byte: skip everything else a byte at a
			// time.
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
			return r, true
		case r == 0x200B, r == 0x2060, r == 0xFEFF:
			return r, true
		}
	}
	return 0, false
}

// stringCharProblem describes what makes s an invalid FHIR string, or "".
// It names the code point, never the text around it.
func stringCharProblem(s string) string {
	if r, ok := controlRune(s); ok {
		return fmt.Sprintf("a FHIR string must not contain the control character U+%04X (only tab, CR and LF are allowed below U+0020)", r)
	}
	return ""
}

// identityParts are the string elements of the datatypes whose values
// people and matching compare; DisguisingRune characters are refused in
// them.
var identityParts = map[string][]string{
	"HumanName":    {"text", "family", "given", "prefix", "suffix"},
	"Identifier":   {"value"},
	"ContactPoint": {"value"},
}

// identityText refuses disguising characters in the identity parts of a
// HumanName, Identifier or ContactPoint.
func (val *validator) identityText(typ string, v *jsonValue, path *elemPath) {
	parts := identityParts[typ]
	for _, name := range parts {
		m := v.member(name)
		if m == nil {
			continue
		}
		check := func(s *jsonValue, at *elemPath) {
			if s.kind != jsonString {
				return
			}
			if r, ok := DisguisingRune(s.text); ok {
				val.add(IssueValue, at, "%s.%s must not contain U+%04X: bidi controls and invisible characters are refused in names and identifiers", typ, name, r)
			}
		}
		if m.kind == jsonArray {
			for i := range m.items {
				check(&m.items[i], path.child(name).at(i))
			}
			continue
		}
		check(m, path.child(name))
	}
}
