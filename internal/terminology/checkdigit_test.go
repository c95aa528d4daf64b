package terminology

import (
	"errors"
	"strings"
	"testing"
)

// The Verhoeff tables are rebuilt here from their definitions, so that a
// typo in snomed.go cannot hide.
func TestVerhoeffTablesFollowTheirDefinitions(t *testing.T) {
	t.Parallel()
	// d: the dihedral group D5, rotations r^k as 0-4 and reflections s·r^k as 5-9.
	mul := func(j, k int) int {
		switch {
		case j < 5 && k < 5:
			return (j + k) % 5
		case j < 5:
			return 5 + (j+k)%5
		case k < 5:
			return 5 + ((j-k)%5+5)%5
		default:
			return ((j-k)%5 + 5) % 5
		}
	}
	for j := 0; j < 10; j++ {
		for k := 0; k < 10; k++ {
			if int(verhoeffD[j][k]) != mul(j, k) {
				t.Errorf("d[%d][%d] = %d, want %d", j, k, verhoeffD[j][k], mul(j, k))
			}
		}
	}
	// p: p(0) is the identity, p(i+1)(n) = p(1)(p(i)(n)), with
	// p(1) = (0 1 5 8 9 4 2 7)(3 6).
	cycle := []int{0, 1, 5, 8, 9, 4, 2, 7}
	var p1 [10]int
	for i, c := range cycle {
		p1[c] = cycle[(i+1)%len(cycle)]
	}
	p1[3], p1[6] = 6, 3
	var row [10]int
	for n := range row {
		row[n] = n
	}
	for i := 0; i < 8; i++ {
		for n := 0; n < 10; n++ {
			if int(verhoeffP[i][n]) != row[n] {
				t.Errorf("p[%d][%d] = %d, want %d", i, n, verhoeffP[i][n], row[n])
			}
		}
		for n := range row {
			row[n] = p1[row[n]]
		}
	}
	// inv: d(j, inv(j)) = 0.
	for j := 0; j < 10; j++ {
		if mul(j, int(verhoeffInv[j])) != 0 {
			t.Errorf("inv[%d] = %d is not the inverse", j, verhoeffInv[j])
		}
	}
}

func TestVerhoeffCatchesEverySingleErrorAndAdjacentSwap(t *testing.T) {
	t.Parallel()
	if c, _ := VerhoeffCheckDigit("236"); c != '3' {
		t.Fatalf("check digit of 236 = %c, want 3 (the textbook example)", c)
	}
	base := "73211009" // diabetes mellitus
	if !VerhoeffValid(base) {
		t.Fatal("73211009 does not validate")
	}
	for i := 0; i < len(base); i++ {
		for d := byte('0'); d <= '9'; d++ {
			if d == base[i] {
				continue
			}
			b := []byte(base)
			b[i] = d
			if VerhoeffValid(string(b)) {
				t.Errorf("single-digit error %s validates", b)
			}
		}
		if i+1 < len(base) && base[i] != base[i+1] {
			b := []byte(base)
			b[i], b[i+1] = b[i+1], b[i]
			if VerhoeffValid(string(b)) {
				t.Errorf("adjacent swap %s validates", b)
			}
		}
	}
	if _, err := VerhoeffCheckDigit("12a"); err == nil {
		t.Error("a letter got a check digit")
	}
}

func TestParseSCTID(t *testing.T) {
	t.Parallel()
	// A long-format concept and description in namespace 1000000, built
	// with the check digit function so the test states its inputs.
	withCheck := func(s string) string { c, _ := VerhoeffCheckDigit(s); return s + string(c) }
	longConcept := withCheck("42" + "1000000" + "10")
	longDesc := withCheck("42" + "1000000" + "11")
	shortDesc := withCheck("12345" + "01")
	shortRel := withCheck("12345" + "02")
	tests := []struct {
		name, id  string
		kind      SCTIDKind
		namespace string
		wantErr   string
	}{
		{"myocardial infarction", "22298006", SCTIDConcept, "", ""},
		{"diabetes mellitus", "73211009", SCTIDConcept, "", ""},
		{"hypertensive disorder", "38341003", SCTIDConcept, "", ""},
		{"clinical finding", "404684003", SCTIDConcept, "", ""},
		{"the root concept", "138875005", SCTIDConcept, "", ""},
		{"type 2 diabetes mellitus", "44054006", SCTIDConcept, "", ""},
		{"a short description", shortDesc, SCTIDDescription, "", ""},
		{"a short relationship", shortRel, SCTIDRelationship, "", ""},
		{"a long-format concept", longConcept, SCTIDConcept, "1000000", ""},
		{"a long-format description", longDesc, SCTIDDescription, "1000000", ""},
		{"a wrong check digit", "22298007", "", "", "check digit"},
		{"five digits", "12340", "", "", "6 to 18"},
		{"nineteen digits", strings.Repeat("1", 19), "", "", "6 to 18"},
		{"a leading zero", withCheck("0229800"), "", "", "start with 0"},
		{"a letter", "2229800A", "", "", "digits"},
		{"partition 03 (an RF1 subset)", withCheck("12345" + "03"), "", "", "partition 03"},
		{"partition 20", withCheck("12345" + "20"), "", "", "partition 20"},
		{"a long format too short for its namespace", withCheck("12345" + "10"), "", "", "at least 11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseSCTID(tc.id)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSCTID(%s) error = %v, want %q", tc.id, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSCTID(%s): %v", tc.id, err)
			}
			if id.Kind != tc.kind || id.Namespace != tc.namespace {
				t.Fatalf("ParseSCTID(%s) = %+v, want kind %s namespace %q", tc.id, id, tc.kind, tc.namespace)
			}
		})
	}
	if p := snomedFormat(shortDesc); p == nil || p.reason != ReasonWrongPartition {
		t.Errorf("a description id as a FHIR code: %+v, want wrong-partition", p)
	}
	if p := snomedFormat("22298007"); p == nil || p.reason != ReasonBadCheckDigit {
		t.Errorf("a wrong check digit: %+v, want bad-check-digit", p)
	}
}

func TestLOINCCheckDigit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code    string
		wantErr error
		msg     string
	}{
		{"718-7", nil, ""},   // hemoglobin
		{"2345-7", nil, ""},  // glucose
		{"4548-4", nil, ""},  // hemoglobin A1c
		{"2160-0", nil, ""},  // creatinine
		{"8480-6", nil, ""},  // systolic blood pressure
		{"94500-6", nil, ""}, // SARS-CoV-2 RNA
		{"LA6576-8", nil, ""},
		{"718-8", errBadCheckDigit, ""},
		{"2345-1", errBadCheckDigit, ""},
		{"7187", nil, "hyphen"},
		{"718-", nil, "hyphen"},
		{"-7", nil, "hyphen"},
		{"718-77", nil, "hyphen"},
		{"71a-7", nil, "only digits"},
		{"0718-7", nil, "start with 0"},
		{"12345678-9", nil, "at most"},
	}
	for _, tc := range tests {
		err := ParseLOINC(tc.code)
		switch {
		case tc.wantErr != nil:
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("ParseLOINC(%s) = %v, want %v", tc.code, err, tc.wantErr)
			}
		case tc.msg != "":
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseLOINC(%s) = %v, want an error mentioning %q", tc.code, err, tc.msg)
			}
		case err != nil:
			t.Errorf("ParseLOINC(%s) = %v, want valid", tc.code, err)
		}
	}
	// The documented worked example: 12345 has check digit 5.
	if c, _ := LOINCCheckDigit("12345"); c != '5' {
		t.Errorf("check digit of 12345 = %c, want 5", c)
	}
}

func TestCPTAndHCPCSFormats(t *testing.T) {
	t.Parallel()
	cpt := []struct {
		code string
		cat  CPTCategory
	}{
		{"99213", CPTCategoryI}, {"00100", CPTCategoryI}, {"3074F", CPTCategoryII},
		{"0042T", CPTCategoryIII}, {"0001U", CPTPLA}, {"0002M", CPTMAAA},
		{"9921", ""}, {"992134", ""}, {"9921A", ""}, {"A9921", ""}, {"3074f", ""}, {"", ""},
	}
	for _, tc := range cpt {
		cat, err := ParseCPT(tc.code)
		if cat != tc.cat || (err == nil) != (tc.cat != "") {
			t.Errorf("ParseCPT(%q) = %q, %v; want %q", tc.code, cat, err, tc.cat)
		}
	}
	hcpcs := map[string]bool{
		"A0428": true, "E0114": true, "J1885": true, "G0008": true, "U0003": true, "V2020": true, "D0120": true,
		"F1234": false, "I1234": false, "N1234": false, "O1234": false, "W1234": false, "Z1234": false,
		"j1885": false, "J188": false, "J18855": false, "JA885": false, "99213": false,
	}
	for code, ok := range hcpcs {
		if err := ParseHCPCS(code); (err == nil) != ok {
			t.Errorf("ParseHCPCS(%q) = %v, want valid %v", code, err, ok)
		}
	}
}
