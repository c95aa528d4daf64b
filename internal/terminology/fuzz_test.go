package terminology

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// The fuzz targets check properties, not just the absence of panics. Seeds
// live in testdata/fuzz/<FuzzName>/ as well as in f.Add.

func FuzzParseOrderLine(f *testing.F) {
	f.Add(orderLine(1, "E119", true, "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus without complications"))
	f.Add(orderLine(99999, "S72001A", true, strings.Repeat("s", 60), "l"))
	f.Add("00001 A00     0 Cholera")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseOrderLine(line)
		if err != nil {
			return
		}
		if _, err := NormalizeICD10CM(e.Code); err != nil {
			t.Fatalf("accepted code %q that NormalizeICD10CM rejects: %v", e.Code, err)
		}
		if e.Order < 1 || e.Order > 99999 || len(e.Short) > 60 || e.Short == "" || e.Long == "" {
			t.Fatalf("accepted entry out of bounds: %+v", e)
		}
		// What was read writes back to the same entry.
		again, err := ParseOrderLine(orderLine(e.Order, e.Code, e.Billable, e.Short, e.Long))
		if err != nil || again != e {
			t.Fatalf("round trip: %+v -> %+v, %v", e, again, err)
		}
	})
}

func FuzzReadOrderFile(f *testing.F) {
	for _, v := range []string{"2021", "2022", "2026"} {
		b, err := os.ReadFile("testdata/icd10cm_order_" + v + ".txt")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, file []byte) {
		var entries []OrderEntry
		err := ReadOrderFile(bytes.NewReader(file), func(e OrderEntry) error { entries = append(entries, e); return nil })
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for i, e := range entries {
			if seen[e.Code] {
				t.Fatalf("code %s returned twice", e.Code)
			}
			seen[e.Code] = true
			if i > 0 && entries[i-1].Order >= e.Order {
				t.Fatalf("order numbers not increasing at %d", i)
			}
		}
	})
}

func FuzzNormalizeICD10CM(f *testing.F) {
	for _, s := range []string{"E11.9", "E119", "S72.001A", "e11", "E11.", ".E11", "E1.1", "F32.A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		n, err := NormalizeICD10CM(code)
		if err != nil {
			return
		}
		if strings.Contains(n, ".") || len(n) < 3 || len(n) > 7 {
			t.Fatalf("NormalizeICD10CM(%q) = %q", code, n)
		}
		if again, err := NormalizeICD10CM(DottedICD10CM(n)); err != nil || again != n {
			t.Fatalf("dotted form of %q does not normalise back: %q, %v", n, again, err)
		}
	})
}

func FuzzParseSCTID(f *testing.F) {
	for _, s := range []string{"22298006", "73211009", "22298007", "1234567", "999999999999999999", "0123456", "421000000100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSCTID(s)
		if err != nil {
			return
		}
		if !VerhoeffValid(s) || len(s) < 6 || len(s) > 18 || id.Kind == "" {
			t.Fatalf("accepted %q: %+v", s, id)
		}
		// Any other check digit must fail: Verhoeff catches every single-digit error.
		for d := byte('0'); d <= '9'; d++ {
			if d != s[len(s)-1] && VerhoeffValid(s[:len(s)-1]+string(d)) {
				t.Fatalf("%q also validates with check digit %c", s, d)
			}
		}
		if c, _ := VerhoeffCheckDigit(s[:len(s)-1]); c != s[len(s)-1] {
			t.Fatalf("VerhoeffCheckDigit disagrees with VerhoeffValid on %q", s)
		}
	})
}

func FuzzParseLOINC(f *testing.F) {
	for _, s := range []string{"718-7", "2345-7", "4548-4", "718-8", "LA6576-8", "-", "1-", "123456789-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		if err := ParseLOINC(code); err != nil {
			return
		}
		if strings.HasPrefix(code, "L") {
			return
		}
		dash := strings.IndexByte(code, '-')
		if c, _ := LOINCCheckDigit(code[:dash]); c != code[dash+1] {
			t.Fatalf("accepted %q with the wrong check digit", code)
		}
	})
}

func FuzzParseCPTAndHCPCS(f *testing.F) {
	for _, s := range []string{"99213", "0042T", "3074F", "A0428", "J1885", "N1234", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		_, cptErr := ParseCPT(code)
		hcpcsErr := ParseHCPCS(code)
		if cptErr == nil && hcpcsErr == nil {
			t.Fatalf("%q is both a CPT and a HCPCS Level II code", code)
		}
		if (cptErr == nil || hcpcsErr == nil) && len(code) != 5 {
			t.Fatalf("accepted %q of length %d", code, len(code))
		}
	})
}

func FuzzParseEgyptianNationalID(f *testing.F) {
	for _, s := range []string{"29001010100015", "30502288800026", "30102290100011", "19001010100015", "2900101010001X", ""} {
		f.Add(s)
	}
	today := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, id string) {
		got, err := ParseEgyptianNationalID(id, today)
		if err != nil {
			// Errors never carry the birth-date digits or the ID.
			if len(id) == 14 && (strings.Contains(err.Error(), id) || strings.Contains(err.Error(), id[1:7])) {
				t.Fatalf("error %q quotes the ID", err)
			}
			return
		}
		if got.BirthDate.After(today) || got.Governorate == "" {
			t.Fatalf("accepted %+v", got)
		}
		male := (id[12]-'0')%2 == 1
		if male != (got.Sex == SexMale) {
			t.Fatalf("sex %s from digit 13 = %c", got.Sex, id[12])
		}
	})
}

func FuzzReadCodeList(f *testing.F) {
	for _, name := range []string{"hcpcs_2026.tsv", "cpt_codes.csv"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(SystemHCPCS, b)
		f.Add(SystemCPT, b)
	}
	f.Add(SystemLOINC, []byte("718-7,\"Hemoglobin\"\n"))
	f.Add(SystemSNOMED, []byte("22298006\tMyocardial infarction\n"))
	f.Fuzz(func(t *testing.T, system string, file []byte) {
		err := ReadCodeList(system, bytes.NewReader(file), func(e ListEntry) error {
			info, ok := knownSystems[system]
			if !ok {
				t.Fatalf("entry for unknown system %q", system)
			}
			if p := info.checkFormat(e.Code); p != nil {
				t.Fatalf("accepted %q: %s", e.Code, p.msg)
			}
			return nil
		})
		var pe *ParseError
		if err != nil && errors.As(err, &pe) && pe.Line < 1 {
			t.Fatalf("error without a line: %v", err)
		}
	})
}

func FuzzParseOperationQuery(f *testing.F) {
	for _, s := range []string{
		"url=http://hl7.org/fhir/sid/icd-10-cm&code=E11.9&date=2026-03-01",
		"system=http://loinc.org&code=718-7&version=2.80",
		"code=a&code=b", "date=2026-03", "abstract=yes", "coding=x", "_format=json",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if _, err := ParseValidateCodeQuery(q); err != nil && !errs.Is(err, errs.Invalid) {
			t.Fatalf("$validate-code: error of kind %s: %v", errs.KindOf(err), err)
		}
		if _, err := ParseLookupQuery(q); err != nil && !errs.Is(err, errs.Invalid) {
			t.Fatalf("$lookup: error of kind %s: %v", errs.KindOf(err), err)
		}
	})
}
