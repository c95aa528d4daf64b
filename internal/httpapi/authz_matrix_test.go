package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The patients and teams every authorization test starts from.
const (
	ownPatient   = "pat-own"
	otherPatient = "pat-other"
	// testPrincipalHeader names the test principal a request acts as: the
	// test authenticator (Options.TestPrincipal) looks it up in the
	// fixture's table. Production has no such header.
	testPrincipalHeader = "X-Test-Principal"
)

// authzFixture is a real server over a real database with a real audit log,
// care team A (holding ownPatient, and every test user), care team B
// (holding otherPatient, nobody from the tests) and care team C (empty, for
// the rows that change a team).
type authzFixture struct {
	db     *store.DB
	access *auth.Access
	log    *audit.Log
	srv    *Server
	ts     *httptest.Server
	teamA  string
	teamC  string

	mu         sync.Mutex
	principals map[string]*auth.Principal
}

func newAuthzFixture(t testing.TB, db *store.DB, now func() time.Time) *authzFixture {
	t.Helper()
	return newAuthzFixtureWith(t, db, now, nil)
}

// newAuthzFixtureWith is newAuthzFixture serving rec on /fhir/R4 too.
func newAuthzFixtureWith(t testing.TB, db *store.DB, now func() time.Time, rec *record.Service) *authzFixture {
	t.Helper()
	ctx := context.Background()
	signer, _, err := audit.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, db, audit.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	f := &authzFixture{db: db, log: log, access: auth.NewAccess(db, nil, now), principals: map[string]*auth.Principal{}}
	f.srv = New(Options{
		DB:     db,
		Record: rec,
		Access: f.access,
		Audit:  log,
		TestPrincipal: func(r *http.Request) *auth.Principal {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.principals[r.Header.Get(testPrincipalHeader)]
		},
	})
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)

	teams := f.access.CareTeams
	a, err := teams.Create(ctx, "Ward A")
	if err != nil {
		t.Fatal(err)
	}
	b, err := teams.Create(ctx, "Ward B")
	if err != nil {
		t.Fatal(err)
	}
	c, err := teams.Create(ctx, "Ward C")
	if err != nil {
		t.Fatal(err)
	}
	f.teamA, f.teamC = a.ID, c.ID
	for _, err := range []error{
		teams.AddPatient(ctx, a.ID, ownPatient),
		teams.AddPatient(ctx, b.ID, otherPatient),
		teams.AddMember(ctx, b.ID, "someone-else", "attending"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// principal makes a user of a role (or an integration client) in care team
// A, registers it with the test authenticator and returns its key. Empty
// scopes means all scopes of the principal's kind.
func (f *authzFixture) principal(t testing.TB, subject string, role auth.Role, scopes string) string {
	t.Helper()
	kind, all := auth.KindUser, "user/*.cruds"
	if role == auth.Integration {
		kind, all = auth.KindClient, "system/*.cruds"
	}
	session := ""
	switch scopes {
	case "":
		scopes = all
	case "session":
		// A careflow login session whose token names no resource scope:
		// the policy's session_scopes apply.
		scopes, session = "", "sess-"+subject
	}
	p := &auth.Principal{Subject: subject, Kind: kind, Role: role, SessionID: session,
		Scopes: append([]string{"openid"}, strings.Fields(scopes)...)}
	if err := f.access.CareTeams.AddMember(context.Background(), f.teamA, subject, "member"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.principals[subject] = p
	f.mu.Unlock()
	return subject
}

// relate gives the row's user the relationship its patient column names,
// beyond care team A: an assignment in force, an active break-the-glass
// grant (opened through the real store, audited), or an ended assignment.
func (f *authzFixture) relate(t *testing.T, who, role, kind, patient string) {
	t.Helper()
	if who == "" {
		return
	}
	ctx := context.Background()
	now := f.access.Authorizer.Now()
	var err error
	switch kind {
	case "assigned":
		err = f.access.CareTeams.Assign(ctx, who, patient, now.Add(time.Hour))
	case "expired":
		err = f.access.CareTeams.Assign(ctx, who, patient, now.Add(-time.Minute))
	case "glass":
		f.mu.Lock()
		p := f.principals[who]
		f.mu.Unlock()
		_, err = f.access.BreakGlass.Open(ctx, auth.BreakGlassRequest{Principal: p, PatientID: patient, Reason: "emergency_treatment"},
			func(ctx context.Context, tx store.Tx, g auth.Grant) (int64, error) {
				e, err := f.log.AppendTx(ctx, tx, audit.Entry{Actor: who, Role: role, Action: audit.ActionBreakGlass, ResourceType: "Patient",
					ResourceID: patient, PatientID: patient, Purpose: audit.PurposeEmergencyTreatment, Outcome: audit.OutcomeSuccess, Severity: audit.SeverityHigh})
				return e.Seq, err
			})
	}
	if err != nil {
		t.Fatalf("relate %s to %s: %v", kind, patient, err)
	}
}

// setConsent records exactly one decision (or none) for a patient.
func (f *authzFixture) setConsent(t *testing.T, patient, spec string) {
	t.Helper()
	ctx := context.Background()
	cur, err := f.access.Consents.Get(ctx, patient)
	if err != nil {
		t.Fatal(err)
	}
	var in []auth.ConsentInput
	if spec != "none" {
		purpose, decision, ok := strings.Cut(spec, "=")
		if !ok {
			t.Fatalf("consent %q is not none or PURPOSE=permit|deny", spec)
		}
		in = []auth.ConsentInput{{Purpose: auth.Purpose(purpose), Decision: auth.ConsentDecision(decision)}}
	}
	if _, err := f.access.Consents.Put(ctx, patient, cur.Version, in, "test-setup", "test"); err != nil {
		t.Fatalf("consent %q: %v", spec, err)
	}
}

type authzResponse struct {
	status    int
	header    http.Header
	body      []byte
	requestID string
}

func (f *authzFixture) do(t *testing.T, who, method, path, body string) authzResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set(testPrincipalHeader, who)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return authzResponse{status: resp.StatusCode, header: resp.Header, body: b, requestID: resp.Header.Get("X-Request-ID")}
}

// auditOf returns the audit entries a request wrote.
func (f *authzFixture) auditOf(t *testing.T, requestID string) []audit.Entry {
	t.Helper()
	page, err := audit.List(context.Background(), f.db, audit.Filter{RequestID: requestID})
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// matrixRow is one line of testdata/authz_matrix.csv.
type matrixRow struct {
	line                                         int
	role, method, path, patient, consent, scopes string
	expect                                       int
	reason, body                                 string
}

func (r matrixRow) String() string {
	return fmt.Sprintf("line %d: %s %s %s patient=%s consent=%s scopes=%q", r.line, r.role, r.method, r.path, r.patient, r.consent, r.scopes)
}

func readMatrix(t *testing.T) []matrixRow {
	t.Helper()
	return readMatrixFile(t, "testdata/authz_matrix.csv")
}

// readMatrixFile reads a matrix of authz_matrix.csv's columns in which a
// row names a patient exactly when its path does.
func readMatrixFile(t *testing.T, name string) []matrixRow {
	t.Helper()
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cr := csv.NewReader(fh)
	cr.Comment = '#'
	cr.FieldsPerRecord = 9
	want := []string{"role", "method", "path", "patient", "consent", "scopes", "expect", "reason", "body"}
	header, err := cr.Read()
	if err != nil || strings.Join(header, ",") != strings.Join(want, ",") {
		t.Fatalf("%s header %v (%v), want %v", name, header, err, want)
	}
	var rows []matrixRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		line, _ := cr.FieldPos(0)
		r := matrixRow{line: line, role: rec[0], method: rec[1], path: rec[2], patient: rec[3],
			consent: rec[4], scopes: rec[5], reason: rec[7], body: rec[8]}
		r.expect, err = strconv.Atoi(rec[6])
		if err != nil {
			t.Fatalf("line %d: expect %q is not a status", line, rec[6])
		}
		switch r.patient {
		case "own", "assigned", "glass", "expired", "other", "none":
		default:
			t.Fatalf("%s: patient must be own, assigned, glass, expired, other or none", r)
		}
		if (r.patient == "none") == strings.Contains(r.path, "{patient}") {
			t.Fatalf("%s: {patient} in the path and the patient column disagree", r)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestAuthorizationMatrix drives every row of testdata/authz_matrix.csv
// through the real HTTP server, on every backend, and checks the status,
// the reason, and that the decision reached the audit log.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readMatrix(t)
	if len(rows) < 100 {
		t.Fatalf("the matrix has %d rows; it only grows", len(rows))
	}
	// Every role and every access route appears in the matrix.
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.role] = true
		covered[r.method+" "+strings.SplitN(r.path, "?", 2)[0]] = true
	}
	for _, role := range auth.Roles() {
		if !covered[string(role)] {
			t.Errorf("role %s has no row in the matrix", role)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newAuthzFixture(t, db, nil)
		for i, row := range rows {
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				runMatrixRow(t, f, i, row)
			})
		}
	})
}

func runMatrixRow(t *testing.T, f *authzFixture, i int, row matrixRow) {
	who := ""
	if row.role != "anonymous" {
		who = f.principal(t, fmt.Sprintf("row%03d-%s", i, row.role), auth.Role(row.role), row.scopes)
	}
	patient := map[string]string{"own": ownPatient, "other": otherPatient, "assigned": "pat-assigned",
		"glass": "pat-glass", "expired": "pat-expired"}[row.patient]
	f.relate(t, who, row.role, row.patient, patient)
	if patient != "" {
		f.setConsent(t, patient, row.consent)
	} else if row.consent != "none" {
		t.Fatalf("%s: a consent needs a patient", row)
	}
	cur := 0
	if patient != "" {
		set, err := f.access.Consents.Get(context.Background(), patient)
		if err != nil {
			t.Fatal(err)
		}
		cur = set.Version
	}
	repl := strings.NewReplacer("{patient}", patient, "{team}", f.teamC, "{row}", strconv.Itoa(i),
		"{consent_version}", strconv.Itoa(cur))
	path, body := repl.Replace(row.path), repl.Replace(row.body)

	resp := f.do(t, who, row.method, path, body)
	if resp.status != row.expect {
		t.Fatalf("%s\nstatus %d, want %d: %s", row, resp.status, row.expect, resp.body)
	}
	isCheck := strings.HasPrefix(row.path, "/api/v1/access/check")
	switch {
	case row.expect == http.StatusForbidden:
		var p Problem
		if err := json.Unmarshal(resp.body, &p); err != nil || !strings.Contains(p.Detail, "("+row.reason+")") {
			t.Fatalf("%s\nproblem %s does not name the reason %s", row, resp.body, row.reason)
		}
	case row.expect == http.StatusNotFound:
		var p Problem
		if err := json.Unmarshal(resp.body, &p); err != nil || p.Type != "urn:careflow:problem:not_found" || p.Detail != "no such patient" {
			t.Fatalf("%s\na compartment miss must look like a missing patient: %s", row, resp.body)
		}
	case isCheck && row.expect == http.StatusOK:
		var d accessDecision
		if err := json.Unmarshal(resp.body, &d); err != nil || !d.Allowed || string(d.Reason) != row.reason {
			t.Fatalf("%s\ndecision %s, want reason %s", row, resp.body, row.reason)
		}
	}
	// Every decision a handler asks for is in the audit log before the
	// response: denials as denied, accesses as success. The access check
	// is a question, not an access, and writes nothing.
	entries := f.auditOf(t, resp.requestID)
	switch {
	case isCheck || row.expect == http.StatusUnauthorized:
		if len(entries) != 0 {
			t.Fatalf("%s\nwrote %d audit entries, want none", row, len(entries))
		}
	case row.expect == http.StatusBadRequest:
		// Input errors after authorization leave the authorization's entry.
	default:
		want := audit.OutcomeSuccess
		if row.expect == http.StatusForbidden || row.expect == http.StatusNotFound {
			want = audit.OutcomeDenied
		}
		if len(entries) == 0 {
			t.Fatalf("%s\nno audit entry for request %s", row, resp.requestID)
		}
		for _, e := range entries {
			if e.Outcome != want || e.Actor != who || e.Role != row.role {
				t.Fatalf("%s\naudit entry %+v, want outcome %s by %s", row, e, want, who)
			}
			if patient != "" && e.PatientID != patient {
				t.Fatalf("%s\naudit entry names patient %q, want %q", row, e.PatientID, patient)
			}
		}
		if row.patient == "glass" && (row.role == "physician" || row.role == "nurse") {
			for _, e := range entries {
				if e.Severity != audit.SeverityHigh || e.Purpose != audit.PurposeEmergencyTreatment {
					t.Fatalf("%s\naccess under a break-the-glass grant audited as %+v", row, e)
				}
			}
		}
		if row.method == "POST" && strings.HasSuffix(row.path, "/break-glass") && row.expect == http.StatusCreated {
			if entries[0].Severity != audit.SeverityHigh || entries[0].Action != audit.ActionBreakGlass || entries[0].Purpose != audit.PurposeEmergencyTreatment {
				t.Fatalf("%s\nbreak-the-glass audit entry %+v", row, entries[0])
			}
		}
	}
}
