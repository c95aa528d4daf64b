package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/store/storetest"
)

// careflow import writes through the record's validation like the API: a
// name with a right-to-left override or an unpaired surrogate is reported
// by line, without its value, and not stored; a Persian name with its
// zero-width non-joiner is.
func TestImportRefusesDisguisedNamesAndLoneSurrogates(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			patients := env.write(t, "export/Patient.ndjson", []byte(`{"resourceType":"Patient","id":"pat-1","name":[{"family":"حسین`+"\u200c"+`زاده","given":["Mina"]}]}
{"resourceType":"Patient","id":"pat-2","name":[{"family":"Hassan`+"\u202e"+`nimA"}]}
{"resourceType":"Patient","id":"pat-3","name":[{"given":["Zainab\ud800"]}]}
{"resourceType":"Patient","id":"pat-4","name":[{"family":"Farouk\u0000"}]}
`))
			code, out, errOut := env.run(t, "import", patients)
			if code != 1 {
				t.Fatalf("import with refused names: exit %d, want 1\n%s%s", code, out, errOut)
			}
			if c, f := summaryNumber(t, out, "created"), summaryNumber(t, out, "failed"); c != 1 || f != 3 {
				t.Fatalf("created %d and failed %d, want 1 and 3:\n%s", c, f, out)
			}
			for _, w := range []string{
				patients + " line 2: the Patient is not valid FHIR R4\n    Patient.name[0].family: ",
				patients + " line 3: not a FHIR resource: invalid JSON",
				patients + " line 4: the Patient is not valid FHIR R4\n    Patient.name[0].family: ",
			} {
				if !strings.Contains(errOut, w) {
					t.Fatalf("stderr does not list %q:\n%s", w, errOut)
				}
			}
			for _, phi := range []string{"Hassan", "Zainab", "Farouk", "\ufffd"} {
				if strings.Contains(errOut+out, phi) {
					t.Fatalf("output quotes %q from the data:\n%s%s", phi, out, errOut)
				}
			}
			db, _ := env.open(t)
			if got := fmt.Sprint(storedCounts(t, db)); got != "map[Patient:1]" {
				t.Fatalf("stored %s", got)
			}
		})
	}
}
