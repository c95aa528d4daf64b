package phi

import (
	"slices"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		a, b    string
		want    string
		mode    normMode
		differs bool
	}{
		{name: "Latin case and surrounding spaces do not matter", a: "Mohamed", b: "  MOHAMED \t", want: "mohamed"},
		{name: "inner white space collapses", a: "Mohamed   Ali", b: "mohamed\u00a0ali", want: "mohamed ali"},
		{name: "Latin accents do not matter", a: "José Müller", b: "JOSE MULLER", want: "jose muller"},
		{name: "full case folding maps ß to ss", a: "Straße", b: "STRASSE", want: "strasse"},
		{name: "full-width forms are ordinary letters", a: "ＭＯＨＡＭＥＤ", b: "mohamed", want: "mohamed"},
		{name: "Arabic tashkeel does not matter", a: "مُحَمَّد", b: "محمد", want: "محمد"},
		{name: "Arabic presentation forms are ordinary letters", a: "ﻣﺤﻤﺪ", b: "محمد", want: "محمد"},
		{name: "tatweel does not matter", a: "محـــمد", b: "محمد", want: "محمد"},
		{name: "alef with hamza above is alef", a: "أحمد", b: "احمد", want: "احمد"},
		{name: "alef with hamza below is alef", a: "إبراهيم", b: "ابراهيم", want: "ابراهيم"},
		{name: "alef with madda is alef", a: "آمنة", b: "امنه", want: "امنه"},
		{name: "alef wasla is alef", a: "ٱلله", b: "الله", want: "الله"},
		{name: "alef maksura is yeh", a: "مصطفى", b: "مصطفي", want: "مصطفي"},
		{name: "teh marbuta is heh", a: "فاطمة", b: "فاطمه", want: "فاطمه"},
		{name: "Arabic-Indic digits are ASCII digits", a: "٠١٢٣٤٥٦٧٨٩", b: "0123456789", want: "0123456789"},
		{name: "Eastern Arabic-Indic digits are ASCII digits", a: "۰۱۲۳۴۵۶۷۸۹", b: "0123456789", want: "0123456789"},
		{name: "punctuation is dropped in text", a: "O'Brien, Jr.", b: "obrien jr", want: "obrien jr"},
		{name: "zero-width and bidi characters are dropped", a: "Mo\u200bhamed\u200f", b: "mohamed", want: "mohamed"},
		{name: "identifiers drop spaces and punctuation", a: "MRN 12-34/5", b: "mrn12345", want: "mrn12345", mode: modeIdentifier},
		{name: "phone numbers keep only digits", a: "+20 (100) 123-4567", b: "٢٠١٠٠١٢٣٤٥٦٧", want: "201001234567", mode: modeIdentifier},
		{name: "hyphens separate name parts", a: "Abdul-Rahman", b: "abdul rahman", want: "abdul rahman", mode: modeName},
		{name: "apostrophes join name parts", a: "O’Brien", b: "OBrien", want: "obrien", mode: modeName},
		{name: "Latin and Arabic spellings stay different", a: "Mohamed", b: "محمد", want: "mohamed", differs: true},
		{name: "different letters stay different", a: "Mohamed", b: "Mohammed", want: "mohamed", differs: true},
		{name: "Japanese voicing marks are kept", a: "が", b: "か", want: "が", differs: true},
		{name: "Hangul survives decomposition", a: "김민준", b: "김민준", want: "김민준"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := normalize(tt.a, tt.mode), normalize(tt.b, tt.mode)
			if a != tt.want {
				t.Errorf("normalize(%q) = %q, want %q", tt.a, a, tt.want)
			}
			if (a == b) == tt.differs {
				t.Errorf("normalize(%q) = %q and normalize(%q) = %q; differs=%v wanted", tt.a, a, tt.b, b, tt.differs)
			}
			if again := normalize(a, tt.mode); again != a {
				t.Errorf("not idempotent: %q -> %q", a, again)
			}
		})
	}
}

func TestNamePrefixes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input string
		want        []string
	}{
		{"each part gives its prefixes from three letters", "Mohamed Ali", []string{"moh", "moha", "moham", "mohame", "mohamed", "ali"}},
		{"a part shorter than three letters is kept whole", "Li Wu", []string{"li", "wu"}},
		{"repeated prefixes appear once", "Ana Anabel", []string{"ana", "anab", "anabe", "anabel"}},
		{"Arabic names are normalised first", "مُحَمَّد أحمد", []string{"محم", "محمد", "احم", "احمد"}},
		{"hyphenated parts are searchable separately", "Abdul-Rahman", []string{"abd", "abdu", "abdul", "rah", "rahm", "rahma", "rahman"}},
		{"prefixes count letters, not bytes", "Ñuño", []string{"nun", "nuno"}},
		{"nothing gives nothing", " - ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NamePrefixes(tt.input); !slices.Equal(got, tt.want) {
				t.Errorf("NamePrefixes(%q) = %q, want %q", tt.input, got, tt.want)
			}
		})
	}
}

func TestNameQueryMatchesPrefixTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query, name string
		match       bool
	}{
		{"moh", "Mohamed Ali", true},
		{"MOH ali", "Mohamed Ali", true},
		{"ali moh", "Mohamed Ali", true},
		{"mohamed", "Mohamed Ali", true},
		{"mo", "Mohamed Ali", false}, // two letters match only a whole part
		{"li", "Li Wu", true},
		{"mohx", "Mohamed Ali", false},
		{"محم", "مُحَمَّد أحمد", true},
		{"احم", "أحمد", true},
		{"moh", "محمد", false}, // no transliteration
	}
	for _, tt := range tests {
		tokens := NamePrefixes(tt.name)
		parts := NameQueryParts(tt.query)
		got := len(parts) > 0
		for _, p := range parts {
			got = got && slices.Contains(tokens, p)
		}
		if got != tt.match {
			t.Errorf("query %q against %q: match=%v, want %v", tt.query, tt.name, got, tt.match)
		}
	}
}

func TestNamePrefixesAreBounded(t *testing.T) {
	t.Parallel()
	long := "Wolfeschlegelsteinhausenbergerdorff" // 35 letters
	tokens := NamePrefixes(long)
	if len(tokens) != maxPrefix-minPrefix+1 {
		t.Fatalf("%d tokens for a 35-letter part, want %d", len(tokens), maxPrefix-minPrefix+1)
	}
	for _, q := range []string{"wolfes", long, long[:22]} {
		parts := NameQueryParts(q)
		if len(parts) != 1 || !slices.Contains(tokens, parts[0]) {
			t.Errorf("query %q (parts %q) does not find the long name", q, parts)
		}
	}
	if got := NamePrefixes(strings.Repeat("a", 100000)); len(got) != maxPrefix-minPrefix+1 {
		t.Errorf("a 100,000-letter part gave %d tokens", len(got))
	}
}
