package terminology

import (
	"errors"
	"strings"
	"testing"
)

func TestReadCodeList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		system string
		file   string
		want   []ListEntry
	}{
		{"CSV with a header and quotes", SystemHCPCS,
			"code,description\nA0428,\"Ambulance service, basic life support, non-emergency transport, (BLS)\"\nJ1885,\"Injection, ketorolac tromethamine, per 15 mg\"\n",
			[]ListEntry{{"A0428", "Ambulance service, basic life support, non-emergency transport, (BLS)"}, {"J1885", "Injection, ketorolac tromethamine, per 15 mg"}}},
		{"tab-separated with a comment and CRLF", SystemHCPCS,
			"# HCPCS excerpt\r\nE0114\tCrutches underarm, other than wood, adjustable or fixed, pair, with pad, tips and handgrips\r\n",
			[]ListEntry{{"E0114", "Crutches underarm, other than wood, adjustable or fixed, pair, with pad, tips and handgrips"}}},
		{"CPT codes without descriptions", SystemCPT,
			"code\n99213\n0042T\n3074F\n",
			[]ListEntry{{"99213", ""}, {"0042T", ""}, {"3074F", ""}}},
		{"LOINC", SystemLOINC, "718-7,Hemoglobin [Mass/volume] in Blood\n", []ListEntry{{"718-7", "Hemoglobin [Mass/volume] in Blood"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []ListEntry
			if err := ReadCodeList(tc.system, strings.NewReader(tc.file), func(e ListEntry) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestReadCodeListRejectsBadLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, system, file string
		line               int
		want               string
	}{
		{"a malformed HCPCS code", SystemHCPCS, "A0428,x\nF1234,y\n", 2, "HCPCS"},
		{"a LOINC code with a wrong check digit", SystemLOINC, "718-7\n2345-1\n", 2, "check digit"},
		{"a SNOMED CT description id", SystemSNOMED, "22298006\n" + func() string { c, _ := VerhoeffCheckDigit("1234501"); return "1234501" + string(c) }() + "\n", 2, "not a concept"},
		{"a repeated code", SystemCPT, "99213\n99214\n99213\n", 3, "already appeared on line 1"},
		{"three fields", SystemCPT, "99213,a,b\n", 1, "3 fields"},
		{"an unclosed quote", SystemHCPCS, "A0428,\"open\nJ1885,x\n", 1, "quote"},
		{"no codes", SystemCPT, "code,description\n", 1, "no codes"},
		{"a control character in a display", SystemHCPCS, "A0428,\"a\x00b\"\n", 1, "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ReadCodeList(tc.system, strings.NewReader(tc.file), func(ListEntry) error { return nil })
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line != tc.line || !strings.Contains(pe.Msg, tc.want) {
				t.Fatalf("error = %v, want line %d mentioning %q", err, tc.line, tc.want)
			}
		})
	}
	if err := ReadCodeList(SystemICD10CM, strings.NewReader("E119\n"), func(ListEntry) error { return nil }); err == nil {
		t.Error("an ICD-10-CM code list was accepted; ICD-10-CM loads from the CMS order file")
	}
}
