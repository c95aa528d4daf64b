package record

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A clinical code of the fixture: resource name "<Type>-a" carries it,
// "<Type>-b" carries another code of the same parameter.
type codeCase struct {
	typ, param, system, code string
}

const (
	sct    = "http://snomed.info/sct"
	loinc  = "http://loinc.org"
	icd10  = "http://hl7.org/fhir/sid/icd-10-cm"
	rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
	v3Act  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// codeCases are the "-a" resources' codes, one or more for every clinical
// parameter (TestEveryClinicalParameterIsTested keeps it so).
var codeCases = []codeCase{
	{"Condition", "code", sct, "86406008"},  // HIV infection
	{"Condition", "code", icd10, "C50.911"}, // breast cancer
	{"Observation", "code", loinc, "75622-1"},
	{"Observation", "value-concept", rxnorm, "197361"},
	{"Observation", "component-code", loinc, "8480-6"},
	{"Procedure", "code", sct, "80146002"},
	{"Procedure", "category", sct, "24642003"}, // psychiatry procedure
	{"Procedure", "reason-code", icd10, "F32A"},
	{"Encounter", "type", "", "HIVCLINIC"}, // a local code without system
	{"Encounter", "reason-code", sct, "66071002"},
	{"CareTeam", "category", loinc, "LA28865-6"},
	{"Coverage", "type", v3Act, "SUBPRG"}, // substance use program
	{"Consent", "category", "http://terminology.hl7.org/CodeSystem/consentcategorycodes", "dnr"},
}

// codeFixture stores an "-a" and a "-b" resource of each type with
// clinical codes; it returns their ids by name.
func codeFixture(t *testing.T, s *Service) map[string]string {
	t.Helper()
	cc := func(system, code string) string {
		if system == "" {
			return fmt.Sprintf(`{"coding":[{"code":%q}]}`, code)
		}
		return fmt.Sprintf(`{"coding":[{"system":%q,"code":%q}]}`, system, code)
	}
	bodies := map[string]string{
		"Condition-a": `{"resourceType":"Condition","subject":{"reference":"Patient/p1"},"onsetDateTime":"2026-02-10",
"category":[` + cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item") + `],
"code":{"coding":[{"system":"` + sct + `","code":"86406008"},{"system":"` + icd10 + `","code":"C50.911"}]}}`,
		"Condition-b": `{"resourceType":"Condition","subject":{"reference":"Patient/p2"},"onsetDateTime":"2026-02-10",
"code":{"coding":[{"system":"` + sct + `","code":"44054006"},{"system":"` + icd10 + `","code":"E11.9"}]}}`,
		"Observation-a": `{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-01",
"code":` + cc(loinc, "75622-1") + `,"valueCodeableConcept":` + cc(rxnorm, "197361") + `,"component":[{"code":` + cc(loinc, "8480-6") + `,"valueQuantity":{"value":120}}]}`,
		"Observation-b": `{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/p2"},"effectiveDateTime":"2026-03-01",
"code":` + cc(loinc, "10160-0") + `,"valueCodeableConcept":` + cc(rxnorm, "314076") + `,"component":[{"code":` + cc(loinc, "8462-4") + `,"valueQuantity":{"value":80}}]}`,
		"Procedure-a": `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/p1"},"code":` + cc(sct, "80146002") + `,
"category":` + cc(sct, "24642003") + `,"reasonCode":[` + cc(icd10, "F32A") + `]}`,
		"Procedure-b": `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/p2"},"code":` + cc(sct, "387713003") + `,
"category":` + cc(sct, "387713003") + `,"reasonCode":[` + cc(icd10, "K35.80") + `]}`,
		"Encounter-a": `{"resourceType":"Encounter","status":"finished","class":{"system":"` + v3Act + `","code":"AMB"},"subject":{"reference":"Patient/p1"},
"type":[` + cc("", "HIVCLINIC") + `],"reasonCode":[` + cc(sct, "66071002") + `]}`,
		"Encounter-b": `{"resourceType":"Encounter","status":"finished","class":{"system":"` + v3Act + `","code":"AMB"},"subject":{"reference":"Patient/p2"},
"type":[` + cc("", "GENCLINIC") + `],"reasonCode":[` + cc(sct, "38341003") + `]}`,
		"CareTeam-a": `{"resourceType":"CareTeam","status":"active","subject":{"reference":"Patient/p1"},"category":[` + cc(loinc, "LA28865-6") + `]}`,
		"CareTeam-b": `{"resourceType":"CareTeam","status":"active","subject":{"reference":"Patient/p2"},"category":[` + cc(loinc, "LA27976-2") + `]}`,
		"Coverage-a": `{"resourceType":"Coverage","status":"active","beneficiary":{"reference":"Patient/p1"},"payor":[{"reference":"Organization/o1"}],"type":` + cc(v3Act, "SUBPRG") + `}`,
		"Coverage-b": `{"resourceType":"Coverage","status":"active","beneficiary":{"reference":"Patient/p2"},"payor":[{"reference":"Organization/o1"}],"type":` + cc(v3Act, "EHCPOL") + `}`,
		"Consent-a": `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/p1"},"scope":` + cc("http://terminology.hl7.org/CodeSystem/consentscope", "adr") + `,
"category":[` + cc("http://terminology.hl7.org/CodeSystem/consentcategorycodes", "dnr") + `],"policyRule":` + cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN") + `}`,
		"Consent-b": `{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/p2"},"scope":` + cc("http://terminology.hl7.org/CodeSystem/consentscope", "adr") + `,
"category":[` + cc("http://terminology.hl7.org/CodeSystem/consentcategorycodes", "acd") + `],"policyRule":` + cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN") + `}`,
	}
	ids := map[string]string{}
	names := make([]string, 0, len(bodies))
	for n := range bodies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		typ, _, _ := strings.Cut(n, "-")
		ids[n] = mustCreate(t, s, typ, bodies[n]).ID
	}
	return ids
}

// TestEveryClinicalParameterIsTested checks every parameter the rule
// marks clinical, of every type: a resource holding a code at each of its
// paths gets token rows holding the blind index of the code, never the
// code; a search value for the code is the same index. codeCases cover
// the search through both backends for the parameters of the fixture.
func TestEveryClinicalParameterIsTested(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) { everyClinicalParameterIsBlind(t, newService(t, db).ring) })
}

func everyClinicalParameterIsBlind(t *testing.T, ring *phi.Ring) {
	const code = "X-86406008"
	n := 0
	for _, typ := range ModelledTypes() {
		for _, p := range ParamsOf(typ) {
			if !p.Code {
				continue
			}
			n++
			for _, path := range p.Paths {
				doc := docWithCode(typ, path, code)
				rows, err := extract(ring, typ, doc, 1000)
				if err != nil {
					t.Fatalf("%s.%s at %s: %v", typ, p.Name, path, err)
				}
				want, err := tokenIndex(ring, typ, p, code)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, r := range rows.tokens {
					if strings.Contains(r.code, code) || strings.Contains(r.system, code) {
						t.Errorf("%s.%s at %s: a %s row holds the code in plain text", typ, p.Name, path, r.param)
					}
					found = found || r.param == p.Name && r.code == want && r.system == sct
				}
				if !found {
					t.Errorf("%s.%s at %s: no blind row for the code (rows %v)", typ, p.Name, path, rows.tokens)
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d clinical code parameters", n)
	}
}

// docWithCode builds a resource holding one CodeableConcept (SNOMED CT,
// code) at path, with each filter's member set so the filter keeps it.
func docWithCode(typ, path, code string) map[string]any {
	doc := map[string]any{"resourceType": typ}
	cur := doc
	steps := strings.Split(path, ".")
	for i, st := range steps {
		name, filter, _ := strings.Cut(st, "[")
		var next map[string]any
		if i == len(steps)-1 {
			next = map[string]any{"coding": []any{map[string]any{"system": sct, "code": code}}}
		} else {
			next = map[string]any{}
		}
		if k, v, ok := strings.Cut(strings.TrimSuffix(filter, "]"), "="); ok {
			next[k] = v
		}
		cur[name] = next
		cur = next
	}
	return doc
}

// TestPatientRecordsTokenParametersAreDecided: every token parameter of a
// patient record is blind (identifier, telecom, birth date, clinical
// code), bound to a small fixed value set (a required binding, a boolean),
// or named in plainTokens with its reason.
func TestPatientRecordsTokenParametersAreDecided(t *testing.T) {
	n := 0
	for _, typ := range ModelledTypes() {
		if !isPatientRecord(typ) {
			continue
		}
		fixed := map[string]bool{}
		for _, sp := range fhir.SearchParams(typ) {
			fixed[sp.Name] = sp.Fixed
		}
		for _, p := range ParamsOf(typ) {
			if p.Kind != Token || p.PHI {
				continue
			}
			n++
			if !fixed[p.Name] && PlainTokenReason(typ, p.Name) == "" {
				t.Errorf("%s.%s is a plain token of a patient record with an open binding: the rule in params_r4.go must mark it, or plainTokens say why it stays plain", typ, p.Name)
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d plain tokens of patient records looked at", n)
	}
	for _, must := range []string{"Condition.code", "Observation.code", "Procedure.code", "Encounter.reason-code", "Observation.value-concept",
		"DocumentReference.type", "Immunization.vaccine-code", "MedicationRequest.code", "AllergyIntolerance.code", "DiagnosticReport.code"} {
		typ, name, _ := strings.Cut(must, ".")
		if p := typeParams[typ][name]; p == nil || !p.PHI {
			t.Errorf("%s is not blind", must)
		}
	}
	for _, must := range []string{"Patient.identifier", "DocumentReference.identifier", "ExplanationOfBenefit.identifier", "RelatedPerson.name", "RelatedPerson.birthdate", "Practitioner.name", "Location.address", "DocumentReference.description"} {
		typ, name, _ := strings.Cut(must, ".")
		if p := typeParams[typ][name]; p == nil || !p.PHI || p.Code {
			t.Errorf("%s is not a blind non-code index", must)
		}
	}
}

// TestClinicalCodesAreBlindAndSearchable stores resources with a code in
// every clinical parameter and checks, on each backend, that the token
// table holds none of the codes (only their systems), and that every FHIR
// token form a blind index can answer still finds them: system|code, code,
// system|, |code, :not; while wrong case finds nothing and the modifiers
// that need the code's text are refused.
func TestClinicalCodesAreBlindAndSearchable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		ids := codeFixture(t, s)

		// The index table, read as a dump reader would.
		for _, c := range codeCases {
			var n int
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_tokens WHERE code = $1`, c.code).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s.%s: resource_tokens holds the code of %s/%s in plain text", c.typ, c.param, c.typ, ids[c.typ+"-a"])
			}
			if c.system != "" {
				if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_tokens WHERE param = $1 AND system = $2`, paramKey(c.typ, c.param), c.system).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					t.Errorf("%s.%s: no row keeps the system %s plain", c.typ, c.param, c.system)
				}
			}
		}
		// The plain parameters beside them stay plain (and searchable by
		// range of values a dump reader sees anyway).
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_tokens WHERE param = $1 AND code = 'AMB'`, paramKey("Encounter", "class")).Scan(&n); err != nil || n != 2 {
			t.Fatalf("Encounter.class rows with AMB: %d, %v", n, err)
		}

		for _, c := range codeCases {
			a, b := ids[c.typ+"-a"], ids[c.typ+"-b"]
			sys := c.system
			tests := []struct {
				name, query string
				want        []string
			}{
				{"system|code", c.param + "=" + sys + "|" + c.code, []string{a}},
				{"code in any system", c.param + "=" + c.code, []string{a}},
				{"one of two codes", c.param + "=nothing-like-it," + c.code, []string{a}},
				{":not", c.param + ":not=" + sys + "|" + c.code, []string{b}},
				{"wrong system", c.param + "=http://example.org/other|" + c.code, nil},
				{"another case", c.param + "=" + strings.ToLower(c.code) + "x", nil},
				{":missing=false", c.param + ":missing=false", []string{a, b}},
			}
			if strings.ToLower(c.code) != c.code {
				tests = append(tests, struct {
					name, query string
					want        []string
				}{"codes are case-sensitive", c.param + "=" + strings.ToLower(c.code), nil})
			}
			if sys == "" {
				tests = append(tests, struct {
					name, query string
					want        []string
				}{"|code: no system", c.param + "=|" + c.code, []string{a}})
			} else {
				tests = append(tests, []struct {
					name, query string
					want        []string
				}{
					{"|code: the code has a system", c.param + "=|" + c.code, nil},
					{"system|: any code of the system", c.param + "=" + sys + "|", []string{a, b}},
				}...)
			}
			for _, tc := range tests {
				got, err := searchIDs(t, s, c.typ, tc.query)
				if err != nil {
					t.Errorf("%s.%s %s: %v", c.typ, c.param, tc.name, err)
					continue
				}
				sort.Strings(got)
				want := slices.Clone(tc.want)
				sort.Strings(want)
				if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("%s.%s %s (%s): got %v, want %v", c.typ, c.param, tc.name, tc.query, got, want)
				}
			}
			for _, mod := range []string{"text", "in", "not-in", "below", "above", "of-type"} {
				_, err := searchIDs(t, s, c.typ, c.param+":"+mod+"="+c.code)
				if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "blind") || strings.Contains(err.Error(), c.code) {
					t.Errorf("%s.%s:%s: %v, want a 400 saying the codes are blind indexes (without the value)", c.typ, c.param, mod, err)
				}
			}
			if _, err := searchIDs(t, s, c.typ, "_sort="+c.param); !errs.Is(err, errs.Invalid) {
				t.Errorf("_sort=%s: %v, want refused", c.param, err)
			}
		}
	})
}

// makeCodesPlain turns the database into one written before clinical codes
// were blind: every clinical code row holds the code in plain text, as the
// old extraction wrote it.
func makeCodesPlain(t *testing.T, s *Service) {
	t.Helper()
	ctx := context.Background()
	err := s.db.Tx(ctx, func(tx store.Tx) error {
		type version struct {
			rid     int64
			typ, id string
			v       int
			ct      []byte
		}
		var all []version
		rows, err := tx.Query(ctx, `SELECT rid, type, id, version, ciphertext FROM resources WHERE deleted = FALSE`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var v version
			if err := rows.Scan(&v.rid, &v.typ, &v.id, &v.v, &v.ct); err != nil {
				return err
			}
			all = append(all, v)
		}
		rows.Close()
		for _, v := range all {
			raw, err := s.ring.Open(ctx, versionAAD(v.typ, v.id, v.v), v.ct)
			if err != nil {
				return err
			}
			doc, err := decodeDoc(raw)
			if err != nil {
				return err
			}
			for _, p := range typeParams[v.typ] {
				if !p.Code {
					continue
				}
				if _, err := tx.Exec(ctx, `DELETE FROM resource_tokens WHERE rid = $1 AND param = $2`, v.rid, paramKey(v.typ, p.Name)); err != nil {
					return err
				}
				for _, path := range p.Paths {
					for _, val := range walk(doc, path) {
						for _, tk := range tokensOf(val) {
							if _, err := tx.Exec(ctx, `INSERT INTO resource_tokens (rid, param, system, code) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, v.rid, paramKey(v.typ, p.Name), tk.system, tk.code); err != nil {
								return err
							}
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// plainCodeRows counts the fixture's codes left in plain text.
func plainCodeRows(t *testing.T, db *store.DB, typ string) int {
	t.Helper()
	total := 0
	for _, c := range codeCases {
		if typ != "" && c.typ != typ {
			continue
		}
		var n int
		if err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM resource_tokens WHERE code = $1`, c.code).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// TestBlindLegacyCodes runs the pass over a database whose clinical code
// rows are plain, as they were before migration 0011 (simulated on
// today's layout: since 0024 rebuilt every index row from the sealed
// resources, a database from before 0011 reaches the pass with its rows
// already blind, and TestMigrate0024ConvertsInPlace upgrades one from the
// release before): the task row 0011 lists makes the pass resume from its
// cursor, rewrite every row blind (no plain code left, every search by
// code answers again), be idempotent, and remove its task when done, on
// each backend. A new database has no pass to run.
func TestBlindLegacyCodes(t *testing.T) {
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) { testBlindLegacyCodes(t, d) })
	}
}

func testBlindLegacyCodes(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	{
		s := newService(t, storetest.Open(t, d))
		if n, err := s.BlindLegacyCodes(ctx); err != nil || n != 0 {
			t.Fatalf("on a new database: %d, %v; want 0", n, err)
		}
	}
	db := storetest.Open(t, d)
	{
		s := newService(t, db)
		ids := codeFixture(t, s)
		// More than one batch of Observations.
		const extra = blindCodesBatch + 50
		err := db.Tx(ctx, func(tx store.Tx) error {
			for i := range extra {
				if _, _, err := s.createTx(ctx, tx, nil, "Observation", "", benchObservation(i), ""); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		makeCodesPlain(t, s)
		if _, err := db.Writer().Exec(ctx, `INSERT INTO record_reindex (task) VALUES ('blind_codes')`); err != nil {
			t.Fatal(err)
		}
		if plainCodeRows(t, db, "") == 0 {
			t.Fatal("the simulated old database holds no plain code")
		}
		if got, _ := searchIDs(t, s, "Procedure", "code="+sct+"|80146002"); len(got) != 0 {
			t.Fatalf("a blind search found a plain row: %v", got)
		}

		// A pass that stopped after the first Observations resumes there:
		// what comes before its cursor is left as it was.
		var obsIDs []string
		rows, err := db.Reader().Query(ctx, `SELECT id FROM resources WHERE type = 'Observation' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			obsIDs = append(obsIDs, id)
		}
		rows.Close()
		if _, err := db.Writer().Exec(ctx, `UPDATE record_reindex SET after_type = 'Observation', after_id = $1 WHERE task = 'blind_codes'`, obsIDs[99]); err != nil {
			t.Fatal(err)
		}
		var procedures int
		_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM resources WHERE type = 'Procedure'`).Scan(&procedures)
		n, err := s.BlindLegacyCodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(obsIDs) - 100 + procedures; n != want {
			t.Fatalf("resumed pass re-indexed %d resources, want %d (the Observations after the cursor and the Procedures)", n, want)
		}
		if plainCodeRows(t, db, "Procedure") != 0 || plainCodeRows(t, db, "Condition") == 0 {
			t.Fatalf("after a pass from the cursor: %d plain Procedure codes (want 0), %d plain Condition codes (want them left)",
				plainCodeRows(t, db, "Procedure"), plainCodeRows(t, db, "Condition"))
		}
		var tasks int
		_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM record_reindex`).Scan(&tasks)
		if tasks != 0 {
			t.Fatalf("the finished pass left its task: %d rows", tasks)
		}

		// The whole pass, over rows half plain and half already blind.
		if _, err := db.Writer().Exec(ctx, `INSERT INTO record_reindex (task) VALUES ('blind_codes')`); err != nil {
			t.Fatal(err)
		}
		var all int
		_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM resources WHERE type IN ('CareTeam', 'Condition', 'Consent', 'Coverage', 'Encounter', 'Observation', 'Procedure')`).Scan(&all)
		if n, err := s.BlindLegacyCodes(ctx); err != nil || n != all {
			t.Fatalf("full pass: %d, %v; want %d", n, err, all)
		}
		if left := plainCodeRows(t, db, ""); left != 0 {
			t.Fatalf("%d plain clinical codes left", left)
		}
		var plainLOINC int
		_ = db.Reader().QueryRow(ctx, `SELECT count(*) FROM resource_tokens WHERE param = $1 AND code LIKE '1____-_'`, paramKey("Observation", "code")).Scan(&plainLOINC)
		if plainLOINC != 0 {
			t.Fatalf("%d plain benchmark LOINC codes left", plainLOINC)
		}
		for _, c := range codeCases {
			got, err := searchIDs(t, s, c.typ, c.param+"="+c.system+"|"+c.code)
			if err != nil || len(got) != 1 || got[0] != ids[c.typ+"-a"] {
				t.Errorf("%s.%s after the pass: %v, %v", c.typ, c.param, got, err)
			}
		}
		got, err := searchIDs(t, s, "Observation", "code="+loinc+"|"+benchLOINC(7))
		if err != nil || len(got) != 1 {
			t.Fatalf("a re-indexed Observation by code: %v, %v", got, err)
		}
		// Plain parameters were rewritten to themselves.
		got, err = searchIDs(t, s, "Observation", "category=laboratory&_count=500")
		if err != nil || len(got) != extra {
			t.Fatalf("Observations by plain category after the pass: %d, %v; want %d", len(got), err, extra)
		}
		if n, err := s.BlindLegacyCodes(ctx); err != nil || n != 0 {
			t.Fatalf("after the task is done: %d, %v; want 0", n, err)
		}
	}
}
