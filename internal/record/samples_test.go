package record

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// bundleExpect says how the spec wants each batch or transaction sample
// handled: the whole Bundle refused with this kind, or processed with these
// entries failing (batch).
type bundleExpect struct {
	rejected  errs.Kind
	failedAt  []int // batch entries that fail
	dependsOn string
}

var bundleExpectations = map[string]bundleExpect{
	"fhir-r4/Normative-Bundle-Batch.json":                                               {failedAt: []int{4, 5, 7, 9}},       // bdl-7 duplicate fullUrl; DELETE and GET of a missing Patient (not known: existence.go); ValueSet/$lookup
	"fhir-r4/Normative-Bundle-BatchWithConditionalUpdateByIdentifier.json":              {failedAt: []int{0, 1, 2, 3}},       // identifier.system "" in every entry
	"fhir-r4/Normative-Bundle-BatchWithInvalidEleEnums.json":                            {failedAt: []int{0, 2, 4, 5, 7, 9}}, // 5: DELETE of a missing Patient
	"fhir-r4/Normative-Bundle-BinaryPatch.json":                                         {failedAt: []int{1}},                // PATCH of a Binary
	"fhir-r4/Normative-Bundle-InvalidBundleType.json":                                   {rejected: errs.Unprocessable},
	"fhir-r4/Normative-Bundle-MissingIdentifier.json":                                   {failedAt: []int{0}},
	"fhir-r4/Normative-Bundle-TransactionForRollBack.json":                              {rejected: errs.NotFound}, // GET of a missing Patient
	"fhir-r4/Normative-Bundle-TransactionForRollBackWithDelete.json":                    {rejected: errs.Invalid},  // entry 2's id differs from its URL; nothing is kept
	"fhir-r4/Normative-Bundle-TransactionWithConditionalCreateAndReference.json":        {rejected: errs.Unprocessable},
	"fhir-r4/Normative-Bundle-TransactionWithConditionalReferenceInResourceBody.json":   {rejected: errs.PreconditionFailed}, // matches no Patient
	"fhir-r4/Normative-Bundle-TransactionWithConditionalUpdateAndReference.json":        {rejected: errs.Unprocessable},
	"fhir-r4/Normative-Bundle-TransactionWithForeignReferenceInResourceBody.json":       {rejected: errs.NotFound}, // urn:uuid of no entry
	"fhir-r4/Normative-Bundle-TransactionWithInvalidProcessingRecord.json":              {rejected: errs.Unprocessable},
	"fhir-r4/Normative-Bundle-TransactionWithInvalidProcessingRoutes.json":              {rejected: errs.Invalid}, // POST ValueSet/$lookup
	"fhir-r4/Normative-Bundle-TransactionWithMetaHistory.json":                          {},
	"fhir-r4/Normative-Bundle-TransactionWithMultipleEntriesModifyingSameResource.json": {rejected: errs.Invalid},
	"fhir-r4/Normative-Bundle-TransactionWithPOSTFullUrlMatchesWithPUTRequestUrl.json":  {rejected: errs.Invalid},
	"fhir-r4/Normative-Bundle-TransactionWithValidBundleEntry.json":                     {},
	// Its conditional reference names an identifier that earlier samples
	// give to several Patients in this shared database: 412 is the spec's
	// answer; TestTransactionResolvesReferences checks the success.
	"fhir-r4/R4-Bundle-TransactionWithReferenceInResourceBody.json": {rejected: errs.PreconditionFailed},
	"fhir-r4/R4-SmartCompartmentLeak.json":                          {},
	"fhir-r4/R4-SmartPatientA.json":                                 {rejected: errs.Unprocessable},
	"fhir-r4/R4-SmartPatientC.json":                                 {},
	"fhir-r4/R4-SmartPatientD.json":                                 {rejected: errs.Invalid}, // PUTs each Device twice: overlapping identities SHALL fail
	"fhir-r4/Normative-Expand-ValueSets.json":                       {failedAt: []int{}},
	"fhir-r4/Normative-Includes-TestResources.json":                 {failedAt: []int{30, 31, 32, 33, 34, 35, 36, 37, 38, 39}}, // STU3 DiagnosticReport.result
	"fhir-r4/Normative-SearchParameter-USCoreIG.json":               {failedAt: []int{}},
}

// sampleRun is what one pass over the sample data did.
type sampleRun struct {
	roundTripped, rejected, bundles int
	readOnly                        []string
	phi                             []string
	public                          map[string]bool
}

// runSamples creates every sample (valid ones must round-trip, invalid
// ones must be refused with their issues) and processes every batch and
// transaction Bundle, through fn's create/read/bundle calls.
func runSamples(t *testing.T, s *Service) sampleRun {
	t.Helper()
	ctx := context.Background()
	dir, files := sampleFiles(t)
	run := sampleRun{public: map[string]bool{}}
	done := map[string]bool{}
	var processBundle func(name string, raw []byte)
	processBundle = func(name string, raw []byte) {
		want, ok := bundleExpectations[name]
		if !ok {
			t.Errorf("%s: batch/transaction sample without an expectation", name)
			return
		}
		if done[name] {
			return
		}
		if want.dependsOn != "" && !done[want.dependsOn] {
			dep, _ := os.ReadFile(filepath.Join(dir, want.dependsOn))
			processBundle(want.dependsOn, dep)
		}
		done[name] = true
		run.bundles++
		res, err := s.ProcessBundle(ctx, nil, raw)
		if want.rejected != "" {
			if !errs.Is(err, want.rejected) {
				t.Errorf("%s: got %v, want the Bundle rejected as %s", name, err, want.rejected)
			}
			return
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		for i, e := range res.Entries {
			failed := e.Err != nil
			if failed != slices.Contains(want.failedAt, i) {
				t.Errorf("%s: entry %d failed=%v (%v), want failed=%v", name, i, failed, e.Err, !failed)
			}
		}
	}
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		run.phi = append(run.phi, patientPHI(raw, run.public)...)
		env, envErr := fhir.ReadEnvelope(raw)
		typ := env.ResourceType
		if envErr != nil || !fhir.IsResourceType(typ) {
			typ = "Basic"
		}
		if typ == "AuditEvent" {
			run.readOnly = append(run.readOnly, name)
			continue
		}
		valid := !fhir.Validate(raw).HasErrors()
		rec, _, err := s.Create(ctx, nil, typ, raw, "")
		if valid {
			if err != nil {
				t.Errorf("%s: create: %v", name, err)
				continue
			}
			got, err := s.Read(ctx, nil, typ, rec.ID)
			if err != nil {
				t.Errorf("%s: read: %v", name, err)
				continue
			}
			want, err := fhir.SetIDAndMeta(raw, rec.ID, "1", got.LastUpdated)
			if err != nil {
				t.Fatal(err)
			}
			if eq, _ := fhir.JSONEqual(want, got.JSON); !eq {
				t.Errorf("%s: read back differs beyond id and meta", name)
			}
			run.roundTripped++
		} else {
			var ie *IssuesError
			if !errors.As(err, &ie) || len(ie.Issues) == 0 {
				t.Errorf("%s: invalid sample: got %v, want an OperationOutcome", name, err)
			}
			run.rejected++
		}
		if typ == "Bundle" {
			if b, err := fhir.ParseBundle(raw); err == nil && (b.Type == "batch" || b.Type == "transaction") || strings.Contains(name, "InvalidBundleType") {
				processBundle(name, raw)
			}
		}
	}
	return run
}

// patientPHI collects from a sample what a dump must not show: the
// patients' names, identifiers, birth dates and phone numbers (Patient
// resources at any depth). Short values are left out: four letters occur by
// chance in a few megabytes of base64 blind indexes. public collects what the record may store in
// plain text (ids, type names, identifiers of organisations and other
// non-patient records, dates of record), so that a PHI value that
// coincides with one of those is not taken for a leak.
func patientPHI(raw []byte, public map[string]bool) []string {
	doc, err := decodeDoc(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")))
	if err != nil {
		return nil
	}
	var out []string
	add := func(s string, minLen int) {
		if len(s) >= minLen {
			out = append(out, s)
		}
	}
	plainIdentifiers := map[string]bool{"Organization": true, "Location": true, "Practitioner": true, "PractitionerRole": true, "InsurancePlan": true, "PaymentNotice": true, "PaymentReconciliation": true}
	var visit func(v any, inPatient bool)
	visit = func(v any, inPatient bool) {
		switch x := v.(type) {
		case map[string]any:
			rt, _ := x["resourceType"].(string)
			if rt != "" {
				public[rt] = true
				inPatient = rt == "Patient"
			}
			if id, ok := x["id"].(string); ok {
				public[id] = true
			}
			// A literal reference's target id is stored plain, as
			// references are (doc.go); a client-chosen id such as
			// RelatedPerson/peter is a public value of the record.
			if ref, ok := x["reference"].(string); ok {
				if _, id, ok := parseLiteralRef(ref); ok {
					public[id] = true
				}
			}
			if rt == "Organization" || rt == "Location" || rt == "InsurancePlan" {
				for _, n := range append(walk(x, "name"), walk(x, "alias")...) {
					if s, ok := n.(string); ok {
						public[s] = true
					}
				}
			}
			if plainIdentifiers[rt] {
				for _, id := range walk(x, "identifier.value") {
					if s, ok := id.(string); ok {
						public[s] = true
					}
				}
			}
			if rt == "Patient" {
				for _, n := range walk(x, "name") {
					for _, part := range stringsOf(n) {
						add(part, 5)
					}
				}
				for _, id := range walk(x, "identifier.value") {
					s, _ := id.(string)
					add(s, 6)
				}
				if bd, ok := x["birthDate"].(string); ok {
					add(bd, 10)
				}
				for _, tel := range walk(x, "telecom[system=phone].value") {
					s, _ := tel.(string)
					add(s, 7)
				}
			}
			for _, c := range x {
				visit(c, inPatient)
			}
		case []any:
			for _, c := range x {
				visit(c, inPatient)
			}
		case string:
			if !inPatient {
				if _, _, ok := parseDateRange(x); ok && len(x) >= 10 {
					public[x[:10]] = true
				}
			}
		}
	}
	visit(doc, false)
	return out
}

// coincides reports whether a PHI value is part of something the record
// stores in plain text.
func coincides(v string, public map[string]bool) bool {
	lv := strings.ToLower(v)
	for p := range public {
		if strings.Contains(strings.ToLower(p), lv) {
			return true
		}
	}
	return false
}

// leaks reports whether v stands in dump other than by the chance that an
// index row puts next to each other: a random resource id ending in "ab"
// stored just before the parameter name "based-on" reads "abbased-on",
// which holds "abbas", a normalised family name, though no patient's data
// is there. An occurrence is excused only when v's first bytes end a run of
// at least 8 lowercase hex digits (an id) and what follows them in the dump
// is the name of a search parameter; a name stored in plain text, in JSON or
// as an index value, is not framed so.
func leaks(dump []byte, v string) bool {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '-' }
	for off := 0; v != ""; {
		i := bytes.Index(dump[off:], []byte(v))
		if i < 0 {
			return false
		}
		i += off
		off = i + 1
		before := 0
		for j := i - 1; j >= 0 && isHex(dump[j]); j-- {
			before++
		}
		excused := false
		for k := 1; k < len(v) && isHex(v[k-1]) && before+k >= 8 && !excused; k++ {
			excused = startsWithParamName(dump[i+k:])
		}
		if !excused {
			return true
		}
	}
	return false
}

// startsWithParamName reports whether b begins with the name of a search
// parameter of some type.
func startsWithParamName(b []byte) bool {
	for _, ps := range typeParams {
		for name := range ps {
			if len(name) >= 3 && bytes.HasPrefix(b, []byte(name)) {
				return true
			}
		}
	}
	return false
}

// TestSamplesRoundTripAndDump runs every sample through the record on each
// backend, then reads the database as an attacker with a copy would (the
// SQLite file and its WAL; pg_dump) and looks for the patients' PHI.
func TestSamplesRoundTripAndDump(t *testing.T) {
	sampleDir(t)
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.Open(t, d)
			s := newService(t, db)
			run := runSamples(t, s)
			t.Logf("%d samples round-tripped, %d invalid rejected with an OperationOutcome, %d batch/transaction Bundles processed, read-only (AuditEvent) skipped: %v",
				run.roundTripped, run.rejected, run.bundles, run.readOnly)
			if run.roundTripped < 100 || run.rejected < 20 {
				t.Fatalf("too few samples: %+v", run)
			}
			dump := storetest.Dump(t, db)
			if d == store.Postgres {
				// bytea columns are dumped as hex text, in which any short
				// digit string occurs by chance: decode them to their bytes,
				// which is what the data is.
				dump = byteaHex.ReplaceAllFunc(dump, func(m []byte) []byte {
					b, err := hex.DecodeString(string(m[2:]))
					if err != nil {
						return m
					}
					return b
				})
			}
			if len(dump) < 100000 {
				t.Fatalf("dump is only %d bytes", len(dump))
			}
			found := 0
			checked := 0
			for _, v := range run.phi {
				if coincides(v, run.public) {
					continue
				}
				checked++
				// The value as sent, and as a plain index would hold it.
				if leaks(dump, v) || leaks(dump, phi.Normalize(v)) {
					found++
					t.Errorf("the dump contains a patient's PHI value of %d bytes", len(v))
					if os.Getenv("RECORD_DEBUG_DUMP") != "" {
						i := max(bytes.Index(dump, []byte(v)), bytes.Index(dump, []byte(phi.Normalize(v))))
						t.Logf("DEBUG %q in %q", v, dump[max(0, i-80):min(len(dump), i+80)])
					}
				}
			}
			t.Logf("dump of %d bytes checked for %d PHI values (%d more coincide with ids, types or dates of record): %d found", len(dump), checked, len(run.phi)-checked, found)
			if checked < 100 {
				t.Fatalf("only %d PHI values checked", checked)
			}
		})
	}
}

var byteaHex = regexp.MustCompile(`\\x([0-9a-f]{2})+`)

func TestLeaksExcusesOnlyAnIdBeforeAParameterName(t *testing.T) {
	id := "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f40ab"
	for _, tc := range []struct {
		dump string
		want bool
	}{
		{`{"family":"abbas"}`, true},
		{id + "based-on", false},
		{id + "abbas", true},
		{"family" + "abbas", true},
		{id + "based-on" + `"abbas"`, true},
		{"nothing here", false},
	} {
		if got := leaks([]byte(tc.dump), "abbas"); got != tc.want {
			t.Errorf("leaks(%q) = %v, want %v", tc.dump, got, tc.want)
		}
	}
}
