package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// importEnv is one database an import test works on, with the settings
// every command takes to reach it.
type importEnv struct {
	dir      string // scratch space for input files
	settings []string
}

func newImportEnv(t *testing.T, d store.Dialect) importEnv {
	t.Helper()
	dir := t.TempDir()
	dbURL := filepath.Join(dir, "data", "careflow.db")
	if d == store.Postgres {
		dbURL = storetest.NewPostgresDatabase(t)
	}
	return importEnv{dir: dir, settings: []string{"--data-dir", filepath.Join(dir, "data"), "--database", dbURL, "--log-level", "error"}}
}

// run runs a careflow command in-process against the environment's
// database and returns the exit code, stdout and stderr.
func (e importEnv) run(t *testing.T, command string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	all := append(append([]string{command}, args...), e.settings...)
	code := run(context.Background(), all, &stdout, &stderr, func(string) string { return "" })
	return code, stdout.String(), stderr.String()
}

// open opens the database and the record the way the commands do.
func (e importEnv) open(t *testing.T) (*store.DB, *record.Service) {
	t.Helper()
	ctx := context.Background()
	cfg, _, err := parseConfig("import", e.settings, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	rec, stop, err := openRecord(ctx, cfg, db, logger)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); db.Close() })
	return db, rec
}

// write puts a file in the environment's scratch space (gzip-compressed
// when the name ends in .gz) and returns its path.
func (e importEnv) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(e.dir, "in", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---- Synthea-style data ----

// Synthea writes one transaction Bundle per patient: every entry a POST
// with a urn:uuid fullUrl, entries linked by those urns, and practitioners
// and organisations named by conditional references to their identifiers
// (created by conditional creates in the same Bundle or in the
// practitionerInformation and hospitalInformation Bundles).
const (
	npiSystem       = "http://hl7.org/fhir/sid/us-npi"
	syntheaSystem   = "https://github.com/synthetichealth/synthea"
	npiInBundle     = "9999990001" // created by a conditional create in the patient Bundle
	npiEarlier      = "9999990002" // created by practitionerInformation, imported before
	syntheaOrgValue = "b1ddf812-1fdd-3adf-b1d5-32cc8bd07ebb"
)

// syntheaIDs makes urn:uuid fullUrls that are unique per Bundle.
type syntheaIDs struct{ bundle, n int }

func (s *syntheaIDs) next() string {
	s.n++
	return fmt.Sprintf("urn:uuid:%08d-0000-4000-8000-%012d", s.bundle, s.n)
}

type fhirMap = map[string]any

func ref(r string) fhirMap { return fhirMap{"reference": r} }

func coding(system, code, display string) fhirMap {
	return fhirMap{"coding": []fhirMap{{"system": system, "code": code, "display": display}}}
}

func txEntry(fullURL string, resource fhirMap, ifNoneExist string) fhirMap {
	req := fhirMap{"method": "POST", "url": resource["resourceType"]}
	if ifNoneExist != "" {
		req["ifNoneExist"] = ifNoneExist
	}
	return fhirMap{"fullUrl": fullURL, "resource": resource, "request": req}
}

func transactionBundle(entries []fhirMap) []byte {
	b, err := json.MarshalIndent(fhirMap{"resourceType": "Bundle", "type": "transaction", "entry": entries}, "", " ")
	if err != nil {
		panic(err)
	}
	return b
}

// practitionerInformation is the Bundle Synthea writes for the
// practitioners its patients' claims name.
func practitionerInformation() []byte {
	ids := syntheaIDs{bundle: 99}
	return transactionBundle([]fhirMap{txEntry(ids.next(), fhirMap{
		"resourceType": "Practitioner", "active": true, "gender": "male",
		"identifier": []fhirMap{{"system": npiSystem, "value": npiEarlier}},
		"name":       []fhirMap{{"family": "Okafor", "given": []string{"Chidi"}, "prefix": []string{"Dr."}}},
	}, "identifier="+npiSystem+"|"+npiEarlier)})
}

// patientNames are the names the generated patients get: PHI that must
// never reach a message.
var patientNames = [][2]string{{"Amal", "Hassan"}, {"Mohamed", "Elmasry"}, {"Zainab", "Farouk"}, {"Youssef", "Nabil"}, {"Mona", "Saleh"}, {"Omar", "Khalil"}, {"Salma", "Adel"}}

// syntheaBundle is a patient transaction Bundle: an organisation and a
// practitioner (conditional creates), then patients, each with encounters,
// and per encounter a condition, four vital signs and a claim, every entry
// linked to the others by urn:uuid or conditional references. It has
// 2 + patients*(1 + encounters*7) entries.
func syntheaBundle(bundle, patients, encounters int) []byte {
	ids := syntheaIDs{bundle: bundle}
	prac := "Practitioner?identifier=" + npiSystem + "|" + npiInBundle
	org := "Organization?identifier=" + syntheaSystem + "|" + syntheaOrgValue
	entries := []fhirMap{
		txEntry(ids.next(), fhirMap{"resourceType": "Organization", "active": true, "name": "Nile Valley Clinic",
			"identifier": []fhirMap{{"system": syntheaSystem, "value": syntheaOrgValue}}}, "identifier="+syntheaSystem+"|"+syntheaOrgValue),
		txEntry(ids.next(), fhirMap{"resourceType": "Practitioner", "active": true,
			"identifier": []fhirMap{{"system": npiSystem, "value": npiInBundle}},
			"name":       []fhirMap{{"family": "Mansour", "given": []string{"Hala"}, "prefix": []string{"Dr."}}}}, "identifier="+npiSystem+"|"+npiInBundle),
	}
	conditions := [][2]string{{"44054006", "Diabetes mellitus type 2"}, {"38341003", "Hypertensive disorder"}, {"195662009", "Acute viral pharyngitis"}, {"10509002", "Acute bronchitis"}, {"444814009", "Viral sinusitis"}}
	vitals := []struct{ code, display, unit string }{{"8302-2", "Body Height", "cm"}, {"29463-7", "Body Weight", "kg"}, {"8867-4", "Heart rate", "/min"}, {"9279-1", "Respiratory rate", "/min"}}
	for p := range patients {
		name := patientNames[(bundle+p)%len(patientNames)]
		patient := ids.next()
		entries = append(entries, txEntry(patient, fhirMap{
			"resourceType": "Patient",
			"identifier": []fhirMap{
				{"system": syntheaSystem, "value": strings.TrimPrefix(patient, "urn:uuid:")},
				{"type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"), "system": "http://hospital.smarthealthit.org", "value": strings.TrimPrefix(patient, "urn:uuid:")},
			},
			"name":                []fhirMap{{"use": "official", "family": name[1], "given": []string{name[0]}}},
			"gender":              []string{"female", "male"}[p%2],
			"birthDate":           fmt.Sprintf("19%02d-0%d-1%d", 40+p*7, 1+p%9, p%10),
			"address":             []fhirMap{{"line": []string{fmt.Sprintf("%d Corniche St", 10+p)}, "city": "Alexandria", "country": "EG"}},
			"generalPractitioner": []fhirMap{ref(prac)},
		}, ""))
		for e := range encounters {
			day := fmt.Sprintf("2025-%02d-%02d", 1+e%12, 1+(p+e)%28)
			encounter, condition := ids.next(), ids.next()
			entries = append(entries, txEntry(encounter, fhirMap{
				"resourceType": "Encounter", "status": "finished",
				"class":           fhirMap{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
				"type":            []fhirMap{coding("http://snomed.info/sct", "185345009", "Encounter for symptom")},
				"subject":         ref(patient),
				"participant":     []fhirMap{{"individual": ref(prac)}},
				"period":          fhirMap{"start": day + "T09:00:00+02:00", "end": day + "T09:30:00+02:00"},
				"serviceProvider": ref(org),
			}, ""))
			c := conditions[(p+e)%len(conditions)]
			entries = append(entries, txEntry(condition, fhirMap{
				"resourceType":       "Condition",
				"clinicalStatus":     coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
				"verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
				"category":           []fhirMap{coding("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")},
				"code":               coding("http://snomed.info/sct", c[0], c[1]),
				"subject":            ref(patient), "encounter": ref(encounter),
				"onsetDateTime": day + "T09:00:00+02:00", "recordedDate": day + "T09:00:00+02:00",
			}, ""))
			for v, vital := range vitals {
				entries = append(entries, txEntry(ids.next(), fhirMap{
					"resourceType": "Observation", "status": "final",
					"category": []fhirMap{coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "vital-signs")},
					"code":     coding("http://loinc.org", vital.code, vital.display),
					"subject":  ref(patient), "encounter": ref(encounter),
					"effectiveDateTime": day + "T09:10:00+02:00",
					"valueQuantity":     fhirMap{"value": json.Number(fmt.Sprintf("%d.%d", 60+p*3+v*20, e)), "unit": vital.unit, "system": "http://unitsofmeasure.org", "code": vital.unit},
				}, ""))
			}
			entries = append(entries, txEntry(ids.next(), fhirMap{
				"resourceType": "Claim", "status": "active", "use": "claim",
				"type":           coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional"),
				"patient":        ref(patient),
				"billablePeriod": fhirMap{"start": day + "T09:00:00+02:00", "end": day + "T09:30:00+02:00"},
				"created":        day + "T09:30:00+02:00",
				"provider":       ref(org),
				"priority":       coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
				"careTeam":       []fhirMap{{"sequence": 1, "provider": ref("Practitioner?identifier=" + npiSystem + "|" + npiEarlier)}},
				"diagnosis":      []fhirMap{{"sequence": 1, "diagnosisReference": ref(condition)}},
				"insurance":      []fhirMap{{"sequence": 1, "focal": true, "coverage": fhirMap{"display": "Nile Insurance"}}},
				"item": []fhirMap{{"sequence": 1, "diagnosisSequence": []int{1},
					"productOrService": coding("http://snomed.info/sct", "185345009", "Encounter for symptom"),
					"encounter":        []fhirMap{ref(encounter)}}},
				"total": fhirMap{"value": json.Number("125.50"), "currency": "USD"},
			}, ""))
		}
	}
	return transactionBundle(entries)
}

// ---- checks on what an import stored ----

// storedCounts counts the current resources by type.
func storedCounts(t *testing.T, db *store.DB) map[string]int {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), `SELECT type, count(*) FROM resources WHERE deleted = FALSE GROUP BY type`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		out[typ] = n
	}
	return out
}

// storedRefs lists every stored resource as Type/id, sorted.
func storedRefs(t *testing.T, db *store.DB) []string {
	t.Helper()
	rows, err := db.Reader().Query(context.Background(), `SELECT type, id FROM resources WHERE deleted = FALSE`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, id string
		if err := rows.Scan(&typ, &id); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+"/"+id)
	}
	slices.Sort(out) // in Go: a database's collation need not be byte order
	return out
}

// referencesOf lists the reference values in a resource, by the name of
// the member that holds them (subject, provider, ...).
func referencesOf(t *testing.T, raw []byte) map[string][]string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["reference"].(string); ok {
				out[key] = append(out[key], r)
			}
			for k, c := range x {
				walk(k, c)
			}
		case []any:
			for _, c := range x {
				walk(key, c)
			}
		}
	}
	walk("", doc)
	return out
}

// readRecord reads Type/id through the record.
func readRecord(t *testing.T, rec *record.Service, ref string) record.Record {
	t.Helper()
	typ, id, _ := strings.Cut(ref, "/")
	r, err := rec.Read(context.Background(), nil, typ, id)
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	return r
}

// searchOne finds the one resource matching a query.
func searchOne(t *testing.T, rec *record.Service, typ, query string) string {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, err := rec.ParseQuery(typ, vals)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rec.Search(context.Background(), nil, q)
	if err != nil || len(res.Matches) != 1 {
		t.Fatalf("%s?%s: %d matches, %v", typ, query, len(res.Matches), err)
	}
	return typ + "/" + res.Matches[0].ID
}

// importAudit lists the import's audit entries.
func importAudit(t *testing.T, db *store.DB) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	f := audit.Filter{Actor: importActor, Limit: audit.MaxListLimit}
	for {
		page, err := audit.List(context.Background(), db, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Entries...)
		if page.Next == nil {
			return out
		}
		f.After = page.Next
	}
}

// checkAudit asserts that the audit log verifies and that its import
// entries are exactly one create or update per version written: each
// stored resource has as many import entries as it has versions.
func checkAudit(t *testing.T, env importEnv, db *store.DB) []audit.Entry {
	t.Helper()
	if code, out, errOut := env.run(t, "audit", "verify"); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify after the import: exit %d\n%s%s", code, out, errOut)
	}
	entries := importAudit(t, db)
	versions := map[string]int{}
	rows, err := db.Reader().Query(context.Background(), `SELECT type, id, version FROM resources WHERE deleted = FALSE`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var typ, id string
		var v int
		if err := rows.Scan(&typ, &id, &v); err != nil {
			t.Fatal(err)
		}
		versions[typ+"/"+id] = v
	}
	rows.Close()
	audited := map[string]int{}
	for _, e := range entries {
		if e.Role != importRole || e.Purpose != audit.PurposeOperations || e.Outcome != audit.OutcomeSuccess || !strings.HasPrefix(e.RequestID, "import-") {
			t.Fatalf("import audit entry %+v: want role %s, purpose %s, success, an import request id", e, importRole, audit.PurposeOperations)
		}
		if e.Action == audit.ActionCreate || e.Action == audit.ActionUpdate {
			audited[e.ResourceType+"/"+e.ResourceID]++
		}
	}
	for r, v := range versions {
		if audited[r] != v {
			t.Errorf("%s has %d versions and %d audited writes", r, v, audited[r])
		}
	}
	if len(audited) != len(versions) {
		t.Errorf("audited writes to %d records, %d are stored", len(audited), len(versions))
	}
	return entries
}

// summaryNumber reads "N created" (or updated, failed, ...) from the
// import's summary line.
func summaryNumber(t *testing.T, stdout, what string) int {
	t.Helper()
	m := regexp.MustCompile(`([\d,]+) ` + what).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("summary has no %q:\n%s", what, stdout)
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// ---- the tests ----

// A Synthea-style patient Bundle of hundreds of entries imports as one
// transaction: urn:uuid references are rewritten to the ids the records
// got, conditional references resolve to a practitioner and an
// organisation the Bundle creates itself and to a practitioner an earlier
// file created, every write is audited once, and the log verifies.
func TestImportSyntheaTransactionBundle(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			const patients, encounters = 5, 6 // 217 entries
			entries := 2 + patients*(1+encounters*7)
			practitioners := env.write(t, "practitionerInformation1.json", practitionerInformation())
			patientFile := env.write(t, "Amal_Hassan_bundle.json", syntheaBundle(1, patients, encounters))

			code, out, errOut := env.run(t, "import", practitioners, patientFile)
			if code != 0 {
				t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
			}
			if summaryNumber(t, out, "created") != entries+1 || summaryNumber(t, out, "failed") != 0 || strings.Contains(out, "tried again") {
				t.Fatalf("want %d created in one request each, got:\n%s", entries+1, out)
			}

			db, rec := env.open(t)
			want := map[string]int{"Organization": 1, "Practitioner": 2, "Patient": patients, "Encounter": patients * encounters,
				"Condition": patients * encounters, "Observation": 4 * patients * encounters, "Claim": patients * encounters}
			if got := storedCounts(t, db); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("stored %v, want %v", got, want)
			}
			inBundle := searchOne(t, rec, "Practitioner", "identifier="+npiSystem+"|"+npiInBundle)
			earlier := searchOne(t, rec, "Practitioner", "identifier="+npiSystem+"|"+npiEarlier)
			org := searchOne(t, rec, "Organization", "identifier="+syntheaSystem+"|"+syntheaOrgValue)
			// Every reference of every record names a stored record: no
			// urn:uuid and no conditional reference is left.
			stored := storedRefs(t, db)
			for _, r := range stored {
				refs := referencesOf(t, readRecord(t, rec, r).JSON)
				for member, values := range refs {
					for _, v := range values {
						if _, found := slices.BinarySearch(stored, v); !found {
							t.Fatalf("%s.%s is %q, which names no stored record", r, member, v)
						}
					}
				}
				switch typ, _, _ := strings.Cut(r, "/"); typ {
				case "Encounter":
					if refs["individual"][0] != inBundle || refs["serviceProvider"][0] != org {
						t.Fatalf("%s: participant %v, service provider %v; want %s and %s", r, refs["individual"], refs["serviceProvider"], inBundle, org)
					}
				case "Claim":
					if providers := refs["provider"]; len(providers) != 2 || !slices.Contains(providers, org) || !slices.Contains(providers, earlier) {
						t.Fatalf("%s: providers %v; want the organisation %s and the earlier practitioner %s", r, refs["provider"], org, earlier)
					}
					if !strings.HasPrefix(refs["diagnosisReference"][0], "Condition/") || !strings.HasPrefix(refs["patient"][0], "Patient/") {
						t.Fatalf("%s: diagnosis %v, patient %v", r, refs["diagnosisReference"], refs["patient"])
					}
				}
			}
			if n := len(checkAudit(t, env, db)); n != entries+1 {
				t.Fatalf("%d import audit entries, want one per record written (%d)", n, entries+1)
			}
		})
	}
}

// NDJSON files of a bulk export keep their ids, so references between the
// files resolve. A bad line fails alone, reported by file and line with
// the element at fault and never the value; the rest lands.
func TestImportNDJSONReportsBadLinesByNumber(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			patients := env.write(t, "export/Patient.ndjson", []byte("\ufeff"+`{"resourceType":"Patient","id":"pat-1","name":[{"family":"Hassan","given":["Amal"]}],"birthDate":"1980-02-03"}
{"resourceType":"Patient","id":"pat-2","name":[{"family":"Elmasry"}],"telecom":[{"system":"phone","value":"+20 100 555 0101"}]}
{"resourceType":"Patient","id":"pat-3","name":[{"family":"Farouk","given":["Zainab"]}],"gender":"robot"}

{"resourceType":"Patient","id":"pat-4","active":true}
{"resourceType":"Patient","id":"Zainab Farouk","active":true}
`))
			observations := env.write(t, "export/Observation.ndjson", []byte(`{"resourceType":"Observation","id":"obs-1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/pat-1"},"valueQuantity":{"value":72.5,"unit":"kg"}}
{"resourceType":"Observation","id":"obs-2","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/pat-2"}}
{"resourceType":"Observation","id":"obs-3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/pat-4"},"valueQuantity":{"value":171,"unit":"cm"}}
{"resourceType":"Observation","id":"obs-4","status":"final",
`))
			encounters := env.write(t, "export/Encounter.ndjson.gz", []byte(`{"resourceType":"Encounter","id":"enc-1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/pat-1"}}
{"resourceType":"Encounter","id":"enc-2","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/pat-2"}}`))

			// Batches of two, so failures fall on both sides of a batch's edge.
			code, out, errOut := env.run(t, "import", "--batch-size", "2", observations, patients, encounters)
			if code != 1 {
				t.Fatalf("import with bad lines: exit %d, want 1\n%s%s", code, out, errOut)
			}
			if c, f := summaryNumber(t, out, "created"), summaryNumber(t, out, "failed"); c != 7 || f != 4 {
				t.Fatalf("created %d and failed %d, want 7 and 4:\n%s", c, f, out)
			}
			wantFailures := []string{
				observations + " line 2: the Observation is not valid FHIR R4\n    Observation.status: ",
				observations + " line 4: not a FHIR resource: invalid JSON",
				patients + " line 3: the Patient is not valid FHIR R4\n    Patient.gender: ",
				patients + " line 6: the id is not a valid FHIR id",
			}
			last := -1
			for _, w := range wantFailures {
				i := strings.Index(errOut, w)
				if i < 0 || i < last {
					t.Fatalf("stderr does not list, in file order, %q:\n%s", w, errOut)
				}
				last = i
			}
			// Values from the files never reach a message: not a name, not
			// the bad code, not the id that was a name.
			for _, phi := range []string{"Zainab", "Farouk", "robot", "Hassan", "+20"} {
				if strings.Contains(errOut+out, phi) {
					t.Fatalf("output quotes %q from the data:\n%s%s", phi, out, errOut)
				}
			}

			db, rec := env.open(t)
			if got := fmt.Sprint(storedCounts(t, db)); got != "map[Encounter:2 Observation:2 Patient:3]" {
				t.Fatalf("stored %s", got)
			}
			obs := referencesOf(t, readRecord(t, rec, "Observation/obs-3").JSON)
			if obs["subject"][0] != "Patient/pat-4" {
				t.Fatalf("obs-3 subject %v", obs["subject"])
			}
			if _, err := rec.Read(context.Background(), nil, "Patient", "pat-3"); err == nil {
				t.Fatal("the invalid Patient on line 3 was stored")
			}
			checkAudit(t, env, db)
		})
	}
}

// A folder is read in name order with its sub-folders, other files
// skipped with a note. A patient Bundle that names a practitioner from a
// file sorting after it waits for that file. Collection Bundles keep
// their urn:uuid links. Importing the same folder again succeeds: records
// with ids are updated, conditional creates find what is there.
func TestImportFolderTwice(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			// Upper case sorts before lower case: the patient Bundle comes
			// first and names a practitioner practitionerInformation creates.
			env.write(t, "synthea/Amal_Hassan_0001.json", syntheaBundle(2, 1, 2))
			env.write(t, "synthea/practitionerInformation1.json", practitionerInformation())
			env.write(t, "bulk/Patient.ndjson", []byte(`{"resourceType":"Patient","id":"bulk-1","active":true}`+"\n"))
			env.write(t, "bulk/Observation.ndjson.gz", []byte(`{"resourceType":"Observation","id":"bulk-obs-1","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/bulk-1"}}`+"\n"))
			env.write(t, "bulk/notes.txt", []byte("not FHIR"))
			env.write(t, ".hidden/Patient.ndjson", []byte("not even JSON"))
			env.write(t, "document.json", []byte(`{"resourceType":"Bundle","type":"collection","entry":[
 {"fullUrl":"urn:uuid:5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a11","resource":{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"urn:uuid:5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22"},"identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22"}]}},
 {"fullUrl":"urn:uuid:5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22","resource":{"resourceType":"Patient","name":[{"family":"Saleh"}]}}
]}`))
			folder := filepath.Join(env.dir, "in")

			code, out, errOut := env.run(t, "import", folder)
			if code != 0 {
				t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
			}
			entries := 2 + 1*(1+2*7)
			if c := summaryNumber(t, out, "created"); c != entries+1+2+2 {
				t.Fatalf("created %d, want %d:\n%s", c, entries+5, out)
			}
			if !strings.Contains(out, "1 transaction waited for resources from other files and tried again") || !strings.Contains(out, "skipped 2 files") {
				t.Fatalf("summary:\n%s", out)
			}
			if !strings.Contains(errOut, "skipping "+filepath.Join(folder, "bulk", "notes.txt")) {
				t.Fatalf("no note about the skipped file:\n%s", errOut)
			}
			db, rec := env.open(t)
			obs := readRecord(t, rec, "Observation/5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a11")
			if refs := referencesOf(t, obs.JSON); refs["subject"][0] != "Patient/5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22" {
				t.Fatalf("collection entry's urn:uuid reference became %v", refs["subject"])
			}
			if !bytes.Contains(obs.JSON, []byte(`"value":"urn:uuid:5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22"`)) {
				t.Fatalf("an identifier holding a urn:uuid was rewritten: %s", obs.JSON)
			}
			readRecord(t, rec, "Patient/5b0a4e3c-8d5f-4f7e-9a51-0c2d7e6b1a22")
			first := storedCounts(t, db)

			code, out, errOut = env.run(t, "import", folder)
			if code != 0 {
				t.Fatalf("second import: exit %d\n%s%s", code, out, errOut)
			}
			// The NDJSON and collection records are updated in place; the
			// patient Bundle's POSTs add a second copy of what they create,
			// as a second POST of the Bundle to /fhir/R4 would, while its
			// conditional creates find the practitioners and organisation.
			if u := summaryNumber(t, out, "updated"); u != 4 {
				t.Fatalf("updated %d, want 4:\n%s", u, out)
			}
			if !strings.Contains(out, "3 conditional creates found their resources already stored") || strings.Contains(out, "tried again") {
				t.Fatalf("second summary:\n%s", out)
			}
			second := storedCounts(t, db)
			if second["Practitioner"] != first["Practitioner"] || second["Organization"] != 1 || second["Patient"] != first["Patient"]+1 {
				t.Fatalf("after a second import %v, after the first %v", second, first)
			}
			checkAudit(t, env, db)
		})
	}
}

// An import runs beside a careflow serve on the same database: both
// append to one audit log (the server audits every login attempt), the
// server stays ready, and the log verifies afterwards.
func TestImportBesideARunningServer(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			srv := startChild(t, env.dir, "run", nil, append(append([]string{"serve", "--listen", "127.0.0.1:0"}, env.settings...), "--log-level", "info")...)
			addr := srv.addr(t)
			ndjson := env.write(t, "Patient.ndjson", func() []byte {
				var b bytes.Buffer
				for i := range 20 {
					fmt.Fprintf(&b, `{"resourceType":"Patient","id":"p%d","name":[{"family":"Nabil"}]}`+"\n", i)
				}
				return b.Bytes()
			}())
			practitioners := env.write(t, "practitionerInformation1.json", practitionerInformation())
			bundle := env.write(t, "bundle.json", syntheaBundle(3, 1, 2))

			logins := make(chan int, 1)
			go func() {
				n := 0
				for range 5 {
					resp, err := http.Post("http://"+addr+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"nobody","password":"wrong password 1"}`))
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						n++
					}
				}
				logins <- n
			}()
			code, out, errOut := env.run(t, "import", "--batch-size", "10", ndjson, practitioners, bundle)
			if code != 0 {
				t.Fatalf("import beside serve: exit %d\n%s%s", code, out, errOut)
			}
			if n := <-logins; n != 5 {
				t.Fatalf("%d of 5 login attempts were answered", n)
			}
			getOK(t, "http://"+addr+"/readyz")
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := srv.exitCode(t, 30*time.Second); code != 0 {
				t.Fatalf("serve exit %d after the import", code)
			}
			db, _ := env.open(t)
			checkAudit(t, env, db)
			page, err := audit.List(context.Background(), db, audit.Filter{Action: "login", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Entries) < 5 {
				t.Fatalf("the server's login attempts are missing from the log: %d entries", len(page.Entries))
			}
		})
	}
}

// SIGINT stops an import between two batches: what was imported before
// is whole (records and audit entries alike), the summary says where it
// stopped, and the exit code is 1.
func TestImportStopsBetweenBatchesOnSIGINT(t *testing.T) {
	t.Parallel()
	env := newImportEnv(t, store.SQLite)
	const files, lines, batch = 30, 20, 10
	for f := range files {
		var b bytes.Buffer
		for l := range lines {
			fmt.Fprintf(&b, `{"resourceType":"Patient","id":"f%d-l%d","active":true}`+"\n", f, l)
		}
		env.write(t, fmt.Sprintf("bulk/f%02d.ndjson", f), b.Bytes())
	}
	cmd := exec.Command(os.Args[0], append([]string{"import", "--batch-size", strconv.Itoa(batch), filepath.Join(env.dir, "in", "bulk")}, env.settings...)...)
	cmd.Env = append(os.Environ(), "CAREFLOW_TEST_MAIN=run")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errLines []string
	var mu sync.Mutex
	firstFile := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			errLines = append(errLines, sc.Text())
			mu.Unlock()
			// Off a terminal each finished file gets a line.
			if strings.Contains(sc.Text(), "f00.ndjson: ") {
				once.Do(func() { close(firstFile) })
			}
		}
	}()
	select {
	case <-firstFile:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the first file was not imported within a minute")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-scanned
	_ = cmd.Wait()
	mu.Lock()
	allErr := strings.Join(errLines, "\n")
	mu.Unlock()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d after SIGINT, want 1\n%s\n%s", code, stdout.String(), allErr)
	}
	out := stdout.String()
	if !strings.Contains(out, "import stopped") || !regexp.MustCompile(`interrupted: imported through \S+f\d\d\.ndjson line \d+; \d+ more files? not read`).MatchString(out) {
		t.Fatalf("summary after SIGINT:\n%s\nstderr:\n%s", out, allErr)
	}
	if !strings.Contains(allErr, "interrupted; stopping after the batch under way") {
		t.Fatalf("the interrupt was not acknowledged:\n%s", allErr)
	}
	created := summaryNumber(t, out, "created")
	db, _ := env.open(t)
	stored := storedCounts(t, db)["Patient"]
	if created != stored || stored == 0 || stored >= files*lines || stored%batch != 0 {
		t.Fatalf("summary says %d created, %d stored (of %d); want the same, whole batches of %d, and not all", created, stored, files*lines, batch)
	}
	if n := len(checkAudit(t, env, db)); n != stored {
		t.Fatalf("%d audit entries for %d records", n, stored)
	}
}

func TestImportMistakesExit2WithOneSentence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no paths", nil, "name the files or folders to import"},
		{"a batch size of zero", []string{"--batch-size", "0", dir}, "--batch-size=0 is invalid"},
		{"a batch size too large", []string{dir, "--batch-size=100000"}, "from 1 to 10000"},
		{"a batch size without a value", []string{dir, "--batch-size"}, "--batch-size needs a value"},
		{"a batch size twice", []string{"--batch-size", "5", "--batch-size", "6", dir}, "given twice"},
		{"a path that does not exist", []string{filepath.Join(dir, "absent")}, "absent does not exist"},
		{"a file of another kind", []string{notes}, "notes.txt is not a .json or .ndjson file"},
		{"a flag of another command", []string{"--listen", "127.0.0.1:0", dir}, "unknown flag --listen"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr strings.Builder
			code := run(context.Background(), append([]string{"import", "--data-dir", t.TempDir()}, c.args...), &stdout, &stderr, func(string) string { return "" })
			msg := strings.TrimSpace(stderr.String())
			if code != 2 || !strings.Contains(msg, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, msg, c.want)
			}
			if strings.Contains(msg, "\n") || !strings.HasSuffix(msg, ".") {
				t.Fatalf("stderr %q is not one sentence on one line", msg)
			}
		})
	}
	// A folder with nothing to import is not a mistake.
	empty := t.TempDir()
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"import", "--data-dir", t.TempDir(), empty}, &stdout, &stderr, func(string) string { return "" }); code != 0 || !strings.Contains(stdout.String(), "nothing to import") {
		t.Fatalf("empty folder: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	// Help names the import's own flag and the settings it shares with serve.
	stdout.Reset()
	if code := run(context.Background(), []string{"help", "import"}, &stdout, &stderr, func(string) string { return "" }); code != 0 {
		t.Fatalf("help import: exit %d", code)
	}
	for _, w := range []string{"--batch-size N", "--database URL", "--master-key-file FILE", "--audit-signing-key-file FILE", "--audit-checkpoint-dir DIR", "NDJSON"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("help import lacks %q", w)
		}
	}
}

func TestImportProgressOffATerminal(t *testing.T) {
	t.Parallel()
	var w strings.Builder
	clock := newFakeClock()
	files := []importFile{{path: "a.ndjson", size: 1 << 20}, {path: "b.ndjson", size: 1 << 20}}
	p := newImportProgress(&w, false, 0, clock.now, files)
	p.startFile(0, files[0])
	p.read(512 << 10)
	p.done(100, 0)
	clock.add(time.Second)
	p.tick()
	if w.Len() != 0 {
		t.Fatalf("a second in, off a terminal, progress wrote %q", w.String())
	}
	clock.add(5 * time.Second)
	p.read(1 << 20)
	p.done(350, 2)
	p.tick()
	p.println("a.ndjson line 7: the Patient is not valid FHIR R4")
	p.endFile("448 created, 2 updated, 2 failed")
	p.startFile(1, files[1])
	p.tick() // not due again yet
	p.finish()
	want := "importing: 50%, 1.0/2.0 MB read, 452 resources (2 failed), 75/s, 6s elapsed; file 1/2 a.ndjson\n" +
		"a.ndjson line 7: the Patient is not valid FHIR R4\n" +
		"a.ndjson: 448 created, 2 updated, 2 failed\n"
	if w.String() != want {
		t.Fatalf("off a terminal progress wrote\n%q\nwant\n%q", w.String(), want)
	}
}

func TestImportProgressOnATerminal(t *testing.T) {
	t.Parallel()
	var w strings.Builder
	clock := newFakeClock()
	files := []importFile{{path: "synthea/Amal_Hassan_0001.json", size: 3 << 20}}
	p := newImportProgress(&w, true, 160, clock.now, files)
	p.startFile(0, files[0])
	p.entries(302)
	clock.add(4 * time.Second)
	p.read(1 << 20)
	p.done(1200, 3)
	p.tick()
	last := w.String()[strings.LastIndex(w.String(), "\r"):]
	if want := "\r\033[K[######..............]  33% 1.0/3.0 MB · 1,203 resources (3 failed) · 300/s · 4s · ETA 8s · file 1/1 entry 1203/302 synthea/Amal_Hassan_0001.json"; last != want {
		t.Fatalf("bar\n%q\nwant\n%q", last, want)
	}
	// On a narrow terminal the line is cut short: one that wrapped could
	// not be redrawn in place.
	p.width = 40
	w.Reset()
	p.tick()
	if l := strings.TrimPrefix(w.String(), "\r\033[K"); len([]rune(l)) != 39 || !strings.HasPrefix(l, "[######") {
		t.Fatalf("on 40 columns the bar is %q", l)
	}
	w.Reset()
	p.println("synthea/Amal_Hassan_0001.json: the transaction was rolled back")
	if !strings.HasPrefix(w.String(), "\r\033[Ksynthea/Amal_Hassan_0001.json: the transaction was rolled back\n\r\033[K[") {
		t.Fatalf("a failure is not printed above the bar: %q", w.String())
	}
	p.finish()
	if !strings.HasSuffix(w.String(), "\r\033[K") || strings.Count(w.String(), "\n") != 1 {
		t.Fatalf("finish did not clear the bar: %q", w.String())
	}
}

// Real transaction Bundles from the shared reference data, read in place:
// a valid one imports whole (a byte-order mark is no obstacle), an invalid
// one is refused whole with its issues, by entry.
func TestImportSharedSampleBundles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "..", "shared", "data", "fhir-r4")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared reference data absent (%v); skipping", err)
	}
	env := newImportEnv(t, store.SQLite)
	valid := filepath.Join(dir, "R4-SmartPatientC.json")
	withBOM := filepath.Join(dir, "Normative-Bundle-TransactionWithValidBundleEntry.json")
	invalid := filepath.Join(dir, "R4-SmartPatientA.json")
	code, out, errOut := env.run(t, "import", valid, withBOM, invalid)
	if code != 1 {
		t.Fatalf("exit %d, want 1 for the invalid Bundle\n%s%s", code, out, errOut)
	}
	if c := summaryNumber(t, out, "created"); c != 16+4 {
		t.Fatalf("created %d, want 20:\n%s", c, out)
	}
	if !strings.Contains(errOut, invalid+": the transaction was rolled back, nothing in this file was imported: the transaction Bundle is not valid FHIR R4\n    Bundle.entry[10].resource.participant[0].status: ") {
		t.Fatalf("the invalid Bundle's failure:\n%s", errOut)
	}
	db, _ := env.open(t)
	if n := storedCounts(t, db)["ImagingStudy"]; n != 0 {
		t.Fatalf("%d ImagingStudy records from the refused transaction", n)
	}
	checkAudit(t, env, db)
}
