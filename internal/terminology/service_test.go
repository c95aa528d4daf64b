package terminology

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// testToday is the clock of every service under test.
var testToday = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func newTestService(t testing.TB, db *store.DB) *Service {
	t.Helper()
	return NewService(db, Options{Now: func() time.Time { return testToday }})
}

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// loadFixture loads testdata/icd10cm_order_VERSION.txt with its fiscal-year window.
func loadFixture(t testing.TB, s *Service, version string) Release {
	t.Helper()
	f, err := os.Open("testdata/icd10cm_order_" + version + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rel, err := s.LoadICD10CM(context.Background(), f, version, Window{}, nil)
	if err != nil {
		t.Fatalf("load %s: %v", version, err)
	}
	return rel
}

func countCodes(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM terminology_codes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The database tests run in three groups, each on one fresh database per
// backend, because creating a PostgreSQL database costs about a second and
// ten of them made the suite slow. Within a group the steps run in order and
// the order is part of the test: each step states what it expects to be
// loaded, and loading a fixture that is already loaded changes nothing.

// TestServiceBeforeAndAfterContent starts from an empty database: format
// checks and the starter sets first, then ICD-10-CM and code-list loads.
func TestServiceBeforeAndAfterContent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		steps := []struct {
			name string
			fn   func(*testing.T, *store.DB)
		}{
			{"other systems are checked by format", testValidateOtherSystems},
			{"the Egyptian national ID is never echoed", testValidateEgyptianNationalIDNeverEchoesIt},
			{"look-ups use the starter set", testLookupWithoutContent},
			{"ICD-10-CM falls back to the starter set until a release loads", testValidateICD10CMFallsBackToTheStarterSet},
			{"a loaded code list makes membership count", testLoadCodeListMakesMembershipCount},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) { st.fn(t, db) })
		}
	})
}

// TestServiceWithTwoReleases runs against the FY2021 and FY2022 fixtures.
func TestServiceWithTwoReleases(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		steps := []struct {
			name string
			fn   func(*testing.T, *store.DB)
		}{
			{"ICD-10-CM validity follows the date of service", testValidateICD10CMAcrossTwoReleases},
			{"look-ups pick a release", testLookup},
			{"claims and conditions are checked", testCheckClaimAndCondition},
			{"operations return Parameters", testOperationParameters},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) { st.fn(t, db) })
		}
	})
}

// TestLoadICD10CM covers the loader's transaction and idempotence.
func TestLoadICD10CM(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		t.Run("a failed load changes nothing", func(t *testing.T) { testLoadICD10CMIsOneTransaction(t, db) })
		t.Run("a reload replaces the release", func(t *testing.T) { testLoadICD10CMStoresOneReleaseAndIsIdempotent(t, db) })
	})
}

func testLoadICD10CMStoresOneReleaseAndIsIdempotent(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		var calls []LoadProgress
		f, err := os.Open("testdata/icd10cm_order_2022.txt")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rel, err := s.LoadICD10CM(ctx, f, "2022", Window{}, func(p LoadProgress) { calls = append(calls, p) })
		if err != nil {
			t.Fatal(err)
		}
		if rel.Codes != 20 || rel.Window.String() != "2021-10-01..2022-09-30" {
			t.Fatalf("release = %+v", rel)
		}
		if len(calls) == 0 || !calls[len(calls)-1].Done || calls[len(calls)-1].Codes != 20 {
			t.Fatalf("progress calls = %+v, want a final Done call with 20 codes", calls)
		}
		// Again: same release, same rows, not twice as many.
		loadFixture(t, s, "2022")
		rels, err := s.Releases(ctx, SystemICD10CM)
		if err != nil {
			t.Fatal(err)
		}
		if len(rels) != 1 || rels[0].Version != "2022" || rels[0].Codes != 20 || rels[0].Source != "cms-order-file" {
			t.Fatalf("releases after reloading = %+v", rels)
		}
		if !rels[0].LoadedAt.Equal(testToday) {
			t.Errorf("loaded at %s, want the service clock %s", rels[0].LoadedAt, testToday)
		}
		if n := countCodes(t, db); n != 20 {
			t.Fatalf("%d code rows after loading twice, want 20", n)
		}
		// An explicit window overrides the fiscal year.
		april := Window{From: day("2022-04-01"), To: day("2022-09-30")}
		f2, _ := os.Open("testdata/icd10cm_order_2022.txt")
		defer f2.Close()
		if _, err := s.LoadICD10CM(ctx, f2, "2022-april", april, nil); err != nil {
			t.Fatal(err)
		}
		rels, _ = s.Releases(ctx, SystemICD10CM)
		if len(rels) != 2 || rels[0].Version != "2022-april" || rels[0].Window != april {
			t.Fatalf("releases = %+v, want 2022-april first with its own window", rels)
		}
	}
}

func testLoadICD10CMIsOneTransaction(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		loadFixture(t, s, "2022")
		good, err := os.ReadFile("testdata/icd10cm_order_2022.txt")
		if err != nil {
			t.Fatal(err)
		}
		// The same release again, damaged on its last line: the load fails
		// naming the line, and the release loaded before stays whole.
		lines := strings.Split(strings.TrimSuffix(string(good), "\n"), "\n")
		lines[len(lines)-1] = lines[len(lines)-1][:30]
		_, err = s.LoadICD10CM(ctx, strings.NewReader(strings.Join(lines, "\n")), "2022", Window{}, nil)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "line 20") {
			t.Fatalf("error = %v, want invalid naming line 20", err)
		}
		if n := countCodes(t, db); n != 20 {
			t.Fatalf("%d code rows after a failed reload, want the 20 loaded before", n)
		}
		// A new version that fails leaves no release behind.
		_, err = s.LoadICD10CM(ctx, strings.NewReader(strings.Join(lines, "\n")), "2023", Window{}, nil)
		if err == nil {
			t.Fatal("a damaged file loaded")
		}
		rels, _ := s.Releases(ctx, SystemICD10CM)
		if len(rels) != 1 {
			t.Fatalf("releases = %+v, want only 2022", rels)
		}
		// Versions without a fiscal year need a window.
		if _, err := s.LoadICD10CM(ctx, strings.NewReader(string(good)), "2024-april", Window{}, nil); !errs.Is(err, errs.Invalid) {
			t.Fatalf("a version without a window loaded: %v", err)
		}
		if _, err := s.LoadICD10CM(ctx, strings.NewReader(string(good)), "2024", Window{From: day("2024-01-01"), To: day("2023-01-01")}, nil); !errs.Is(err, errs.Invalid) {
			t.Fatalf("a window ending before it starts loaded: %v", err)
		}
	}
}

func testValidateICD10CMAcrossTwoReleases(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		loadFixture(t, s, "2021")
		loadFixture(t, s, "2022")
		// FY2022 split M54.5 "Low back pain" into M54.50, M54.51 and M54.59,
		// making M54.5 a header; the fixtures carry that change.
		tests := []struct {
			name     string
			code     string
			opts     ValidateOptions
			valid    bool
			reason   Reason
			version  string
			display  string
			inMsg    string
			wantCode string
		}{
			{"a billable code on a date in its release", "E11.9", ValidateOptions{Date: day("2021-06-01")}, true, "", "2021", "Type 2 diabetes mellitus without complications", "valid in ICD-10-CM release 2021", "E11.9"},
			{"the undotted form", "E119", ValidateOptions{Date: day("2022-06-01")}, true, "", "2022", "", "", "E11.9"},
			{"a header code", "E11", ValidateOptions{Date: day("2022-06-01")}, false, ReasonNotBillable, "2022", "Type 2 diabetes mellitus", "header code", "E11"},
			{"a header code where abstract codes are allowed", "E11", ValidateOptions{Date: day("2022-06-01"), Abstract: true}, true, "", "2022", "", "abstract", "E11"},
			{"M54.5 while it was billable", "M54.5", ValidateOptions{Date: day("2021-06-01")}, true, "", "2021", "Low back pain", "", ""},
			{"M54.5 after it became a header", "M54.5", ValidateOptions{Date: day("2022-06-01")}, false, ReasonNotBillable, "2022", "", "", ""},
			{"M54.50 before it existed", "M54.50", ValidateOptions{Date: day("2021-06-01")}, false, ReasonNotValidOnDate, "2021", "Low back pain, unspecified", "it is in release 2022 (valid 2021-10-01..2022-09-30)", ""},
			{"M54.50 on the last day of FY2021", "M54.50", ValidateOptions{Date: day("2021-09-30")}, false, ReasonNotValidOnDate, "2021", "", "2021-09-30", ""},
			{"M54.50 on the first day of FY2022", "M54.50", ValidateOptions{Date: day("2021-10-01")}, true, "", "2022", "", "", ""},
			{"a date no release covers", "E11.9", ValidateOptions{Date: day("2019-01-01")}, false, ReasonNoRelease, "", "", "2019-01-01", ""},
			{"a code in no release", "Q99.9", ValidateOptions{Date: day("2022-06-01")}, false, ReasonUnknown, "2022", "", "not a code", ""},
			{"no date: the newest release answers", "M54.5", ValidateOptions{}, false, ReasonNotBillable, "2022", "", "", ""},
			{"a pinned version", "M54.5", ValidateOptions{Version: "2021"}, true, "", "2021", "", "", ""},
			{"a version not loaded", "M54.5", ValidateOptions{Version: "2030"}, false, ReasonNoRelease, "", "", "not loaded", ""},
			{"a pinned version outside its window", "M54.5", ValidateOptions{Version: "2021", Date: day("2022-06-01")}, false, ReasonNotValidOnDate, "2021", "", "not 2022-06-01", ""},
			{"the right display, typed loosely", "E11.9", ValidateOptions{Date: day("2022-06-01"), Display: "type 2 diabetes mellitus  without complications"}, true, "", "2022", "", "", ""},
			{"the short description as display", "S72.001A", ValidateOptions{Date: day("2022-06-01"), Display: "Fx unsp part of neck of right femur, init for clos fx"}, true, "", "2022", "", "", ""},
			{"a wrong display", "E11.9", ValidateOptions{Date: day("2022-06-01"), Display: "Essential hypertension"}, false, ReasonDisplayMismatch, "2022", "Type 2 diabetes mellitus without complications", "not its display", ""},
			{"lower case", "e11.9", ValidateOptions{Date: day("2022-06-01")}, false, ReasonMalformed, "", "", "upper-case", ""},
			{"a misplaced dot", "E1.19", ValidateOptions{}, false, ReasonMalformed, "", "", "third character", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				v, err := s.ValidateCode(ctx, SystemICD10CM, tc.code, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if v.Valid != tc.valid || v.Reason != tc.reason || v.Version != tc.version {
					t.Fatalf("got valid=%v reason=%q version=%q (%s); want valid=%v reason=%q version=%q",
						v.Valid, v.Reason, v.Version, v.Message, tc.valid, tc.reason, tc.version)
				}
				if tc.display != "" && v.Display != tc.display {
					t.Errorf("display = %q, want %q", v.Display, tc.display)
				}
				if tc.inMsg != "" && !strings.Contains(v.Message, tc.inMsg) {
					t.Errorf("message %q does not mention %q", v.Message, tc.inMsg)
				}
				if tc.wantCode != "" && v.Code != tc.wantCode {
					t.Errorf("code = %q, want %q", v.Code, tc.wantCode)
				}
				if v.Message == "" {
					t.Error("no message")
				}
				if (tc.reason == ReasonMalformed) != (v.Basis == BasisFormat) {
					t.Errorf("basis = %s", v.Basis)
				}
			})
		}
	}
}

func testValidateICD10CMFallsBackToTheStarterSet(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		date := ValidateOptions{Date: day("2026-03-01")}
		v, _ := s.ValidateCode(ctx, SystemICD10CM, "E11.9", date)
		if !v.Valid || v.Basis != BasisStarterSet || v.Version != starterVersion || !strings.Contains(v.Message, "starter set") {
			t.Fatalf("E11.9 with nothing loaded: %+v", v)
		}
		v, _ = s.ValidateCode(ctx, SystemICD10CM, "E11", date)
		if v.Valid || v.Reason != ReasonNotBillable {
			t.Fatalf("E11 with nothing loaded: %+v", v)
		}
		v, _ = s.ValidateCode(ctx, SystemICD10CM, "A00.0", date)
		if v.Valid || v.Reason != ReasonUnknown || !strings.Contains(v.Message, "careflow codes load icd10cm") {
			t.Fatalf("A00.0 with nothing loaded: %+v", v)
		}
		// Once a release is loaded the starter set is out of the picture:
		// A00.0 is in the fixture, I21.9 is only in the starter set.
		loadFixture(t, s, "2026")
		v, _ = s.ValidateCode(ctx, SystemICD10CM, "A00.0", date)
		if !v.Valid || v.Basis != BasisRelease || v.Version != "2026" {
			t.Fatalf("A00.0 after loading 2026: %+v", v)
		}
		v, _ = s.ValidateCode(ctx, SystemICD10CM, "I21.9", date)
		if v.Valid || v.Reason != ReasonUnknown {
			t.Fatalf("I21.9 (starter only) after loading 2026: %+v", v)
		}
	}
}

func testValidateOtherSystems(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		tests := []struct {
			name, system, code string
			display            string
			valid              bool
			reason             Reason
			basis              Basis
			wantDisplay        string
		}{
			{"a SNOMED CT concept", SystemSNOMED, "22298006", "", true, "", BasisFormat, ""},
			{"a SNOMED CT id with a wrong check digit", SystemSNOMED, "22298007", "", false, ReasonBadCheckDigit, BasisFormat, ""},
			{"a LOINC code", SystemLOINC, "4548-4", "", true, "", BasisFormat, ""},
			{"a LOINC code with a wrong check digit", SystemLOINC, "4548-5", "", false, ReasonBadCheckDigit, BasisFormat, ""},
			{"a CPT code by format", SystemCPT, "99213", "", true, "", BasisFormat, ""},
			{"a CPT category III code by format", SystemCPT, "0042T", "", true, "", BasisFormat, ""},
			{"a malformed CPT code", SystemCPT, "9921", "", false, ReasonMalformed, BasisFormat, ""},
			{"a HCPCS code in the starter set", SystemHCPCS, "J1885", "", true, "", BasisStarterSet, "Injection, ketorolac tromethamine, per 15 mg"},
			{"a HCPCS code outside the starter set is checked by format", SystemHCPCS, "A9999", "", true, "", BasisFormat, ""},
			{"a HCPCS code with a letter CMS does not use", SystemHCPCS, "N1234", "", false, ReasonMalformed, BasisFormat, ""},
			{"an unknown system", "http://example.org/codes", "1", "", false, ReasonUnknownSystem, BasisFormat, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				v, err := s.ValidateCode(ctx, tc.system, tc.code, ValidateOptions{Display: tc.display})
				if err != nil {
					t.Fatal(err)
				}
				if v.Valid != tc.valid || v.Reason != tc.reason || v.Basis != tc.basis || v.Display != tc.wantDisplay {
					t.Fatalf("got %+v; want valid=%v reason=%q basis=%q display=%q", v, tc.valid, tc.reason, tc.basis, tc.wantDisplay)
				}
			})
		}
	}
}

func testValidateEgyptianNationalIDNeverEchoesIt(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		for id, valid := range map[string]bool{"29001010100015": true, "29002300100015": false, "2900101010001": false} {
			v, err := s.ValidateCode(ctx, SystemEgyptNationalID, id, ValidateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v.Valid != valid || v.Code != "" || v.Display != "" {
				t.Errorf("validate: %+v, want valid %v and no code or display", v, valid)
			}
			if strings.Contains(v.Message, id[:7]) || strings.Contains(v.Message, id[1:7]) {
				t.Errorf("message %q quotes the ID", v.Message)
			}
			p := ValidateCodeParameters(v)
			for _, param := range p.Parameter {
				if param.ValueString != nil && strings.Contains(*param.ValueString, id[1:7]) {
					t.Errorf("parameter %s quotes the ID", param.Name)
				}
			}
		}
		if _, err := s.Lookup(ctx, SystemEgyptNationalID, "29001010100015", LookupOptions{}); !errs.Is(err, errs.Invalid) || strings.Contains(err.Error(), "900101") {
			t.Fatalf("lookup of an ID: %v, want invalid without the ID", err)
		}
	}
}

func testLoadCodeListMakesMembershipCount(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		open := func(name string) *os.File {
			f, err := os.Open("testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}
		if _, err := s.LoadCodeList(ctx, SystemCPT, open("cpt_codes.csv"), CodeListOptions{Version: "2026"}); err != nil {
			t.Fatal(err)
		}
		rel, err := s.LoadCodeList(ctx, SystemHCPCS, open("hcpcs_2026.tsv"), CodeListOptions{
			Version: "2026-01", Window: Window{From: day("2026-01-01"), To: day("2026-12-31")}})
		if err != nil {
			t.Fatal(err)
		}
		if rel.Codes != 4 {
			t.Fatalf("HCPCS release = %+v", rel)
		}
		tests := []struct {
			system, code, display string
			date                  time.Time
			valid                 bool
			reason                Reason
		}{
			{SystemCPT, "99213", "", time.Time{}, true, ""},
			// A CPT list without descriptions cannot judge a display.
			{SystemCPT, "99213", "Office visit", time.Time{}, true, ""},
			{SystemCPT, "99215", "", time.Time{}, false, ReasonUnknown},
			{SystemHCPCS, "A0428", "", day("2026-05-01"), true, ""},
			{SystemHCPCS, "A0428", "Crutches", day("2026-05-01"), false, ReasonDisplayMismatch},
			{SystemHCPCS, "A0428", "", day("2025-05-01"), false, ReasonNoRelease},
			// In the starter set, but the loaded list is what counts now.
			{SystemHCPCS, "G0008", "", day("2026-05-01"), false, ReasonUnknown},
		}
		for _, tc := range tests {
			v, err := s.ValidateCode(ctx, tc.system, tc.code, ValidateOptions{Display: tc.display, Date: tc.date})
			if err != nil {
				t.Fatal(err)
			}
			if v.Valid != tc.valid || v.Reason != tc.reason || (v.Valid && v.Basis != BasisRelease) {
				t.Errorf("%s %s: %+v; want valid=%v reason=%q", tc.system, tc.code, v, tc.valid, tc.reason)
			}
		}
		// A list with a malformed code loads nothing.
		_, err = s.LoadCodeList(ctx, SystemLOINC, strings.NewReader("718-7\n718-8\n"), CodeListOptions{Version: "2.80"})
		if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("LOINC list with a bad check digit: %v", err)
		}
		if rels, _ := s.Releases(ctx, SystemLOINC); len(rels) != 0 {
			t.Fatalf("LOINC releases after a failed load: %+v", rels)
		}
		if _, err := s.LoadCodeList(ctx, SystemICD10CM, strings.NewReader("E119\n"), CodeListOptions{Version: "x"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("an ICD-10-CM code list loaded: %v", err)
		}
		if _, err := s.LoadCodeList(ctx, SystemCPT, strings.NewReader("99213\n"), CodeListOptions{}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("a code list without a version loaded: %v", err)
		}
	}
}

func testLookupWithoutContent(t *testing.T, db *store.DB) {
	ctx := context.Background()
	s := newTestService(t, db)
	// Nothing loaded: the starter set answers, parent included.
	r, err := s.Lookup(ctx, SystemICD10CM, "E119", LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != starterVersion || r.Code != "E11.9" || r.Display != "Type 2 diabetes mellitus without complications" || prop(r, PropParent) != CodeValue("E11") {
		t.Fatalf("starter lookup = %+v", r)
	}
	if _, err := s.Lookup(ctx, SystemSNOMED, "22298006", LookupOptions{}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("SNOMED CT lookup with no content: %v, want not found", err)
	}
}

func testLookup(t *testing.T, db *store.DB) {
	{
		ctx := context.Background()
		s := newTestService(t, db)
		loadFixture(t, s, "2021")
		loadFixture(t, s, "2022")
		r, err := s.Lookup(ctx, SystemICD10CM, "E11.65", LookupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Name != "ICD-10-CM" || r.Version != "2022" || r.Display != "Type 2 diabetes mellitus with hyperglycemia" {
			t.Fatalf("lookup = %+v", r)
		}
		if prop(r, PropNotSelectable) != false || prop(r, PropBillable) != true || prop(r, PropParent) != CodeValue("E11.6") ||
			prop(r, PropShortDisplay) != "Type 2 diabetes mellitus with hyperglycemia" {
			t.Fatalf("properties = %+v", r.Properties)
		}
		r, err = s.Lookup(ctx, SystemICD10CM, "M54.5", LookupOptions{Date: day("2021-06-01")})
		if err != nil || r.Version != "2021" || prop(r, PropBillable) != true {
			t.Fatalf("M54.5 in FY2021 = %+v, %v", r, err)
		}
		r, err = s.Lookup(ctx, SystemICD10CM, "M54.5", LookupOptions{})
		if err != nil || r.Version != "2022" || prop(r, PropNotSelectable) != true {
			t.Fatalf("M54.5 newest = %+v, %v", r, err)
		}
		// M54.50 is only in 2022; a look-up without a date finds it there.
		if r, err := s.Lookup(ctx, SystemICD10CM, "M5450", LookupOptions{}); err != nil || r.Version != "2022" || prop(r, PropParent) != CodeValue("M54.5") {
			t.Fatalf("M54.50 = %+v, %v", r, err)
		}
		if _, err := s.Lookup(ctx, SystemICD10CM, "M54.50", LookupOptions{Date: day("2021-06-01")}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("M54.50 in FY2021: %v, want not found", err)
		}
		if _, err := s.Lookup(ctx, SystemICD10CM, "Q99.9", LookupOptions{}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown code: %v, want not found", err)
		}
		if _, err := s.Lookup(ctx, SystemICD10CM, "e11", LookupOptions{}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("malformed code: %v, want invalid", err)
		}
		if _, err := s.Lookup(ctx, "http://example.org", "1", LookupOptions{}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("unknown system: %v, want not found", err)
		}
	}
}

func prop(r LookupResult, code string) any {
	for _, p := range r.Properties {
		if p.Code == code {
			return p.Value
		}
	}
	return nil
}

// BenchmarkValidateCode validates a billable code on a date of service with
// two releases loaded, on every backend under test.
func BenchmarkValidateCode(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			s := newTestService(b, db)
			loadFixture(b, s, "2021")
			loadFixture(b, s, "2022")
			ctx := context.Background()
			opts := ValidateOptions{Date: day("2022-03-15")}
			b.ReportAllocs()
			for b.Loop() {
				v, err := s.ValidateCode(ctx, SystemICD10CM, "E11.9", opts)
				if err != nil || !v.Valid {
					b.Fatalf("%+v, %v", v, err)
				}
			}
		})
	}
}

// The system URIs are HL7 Terminology's (THO) canonical URLs, written out
// here rather than through the constants so that a typo in a constant
// fails: a client sending the registry's URI must be understood.
func TestSystemURIsAreTheRegistrys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newTestService(t, db)
		for _, c := range []struct{ system, code string }{
			{"http://hl7.org/fhir/sid/icd-10-cm", "E11.9"},
			{"http://www.ama-assn.org/go/cpt", "99213"},
			{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "J3490"},
			{"http://snomed.info/sct", "44054006"},
			{"http://loinc.org", "2345-7"},
		} {
			v, err := s.ValidateCode(context.Background(), c.system, c.code, ValidateOptions{})
			if err != nil || !v.Valid {
				t.Errorf("%s|%s: valid=%v %q %v", c.system, c.code, v.Valid, v.Message, err)
			}
		}
	})
}
