package record

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestDatabaseDumpHoldsNoClinicalCode stores a patient's HIV infection
// (SNOMED CT 86406008), breast cancer (ICD-10-CM C50.911), HIV test (LOINC
// 75622-1), a medication (RxNorm 197361, as an Observation's value and in a
// MedicationRequest) and a psychiatric procedure, then reads the database
// as someone with a copy would (the SQLite file and its WAL; pg_dump) and
// looks for each code as text and as hex. The systems stay plain, so the
// dump is checked to hold them: the index rows are there, only blind.
func TestDatabaseDumpHoldsNoClinicalCode(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.Open(t, d)
			s := newService(t, db)
			ids := codeFixture(t, s)
			mustCreate(t, s, "MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p1"},
"medicationCodeableConcept":{"coding":[{"system":"`+rxnorm+`","code":"197361"}]}}`)

			raw := storetest.Dump(t, db)
			dump := raw
			if d == store.Postgres {
				// bytea columns are dumped as hex: decode them to their
				// bytes, which is what the data is.
				dump = byteaHex.ReplaceAllFunc(raw, func(m []byte) []byte {
					b, err := hex.DecodeString(string(m[2:]))
					if err != nil {
						return m
					}
					return b
				})
			}
			// Not vacuous: the index rows of the codes are in the dump,
			// with their plain systems and the resources' ids.
			for _, must := range []string{"http://snomed.info/sct", "http://loinc.org", icd10, rxnorm, ids["Condition-a"], ids["Observation-a"]} {
				if !bytes.Contains(dump, []byte(must)) {
					t.Fatalf("the dump (%d bytes) does not hold %q, which stays plain", len(dump), must)
				}
			}
			codes := []string{"86406008", "C50.911", "75622-1", "197361", "24642003", "80146002", "66071002", "LA28865-6", "HIVCLINIC", "SUBPRG"}
			for _, c := range codes {
				for _, form := range [][]byte{[]byte(c), []byte(hex.EncodeToString([]byte(c)))} {
					for _, in := range [][]byte{dump, raw} {
						if i := bytes.Index(in, form); i >= 0 {
							t.Errorf("the dump holds the clinical code %s: …%q…", c, in[max(0, i-60):min(len(in), i+len(form)+20)])
						}
					}
				}
			}
		})
	}
}
