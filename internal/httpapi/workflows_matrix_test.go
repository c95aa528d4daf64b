package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// readWorkflowMatrix reads testdata/authz_matrix_workflows.csv, which has
// the columns of authz_matrix.csv.
func readWorkflowMatrix(t *testing.T) []matrixRow {
	t.Helper()
	return readRecordMatrix(t, "authz_matrix_workflows.csv", "{run}", "{task}")
}

// readRecordMatrix reads a matrix of the record routes (workflow runs,
// journeys) from testdata: the columns of authz_matrix.csv; a row that
// names a patient reaches it through {patient} or one of the record
// placeholders (a run, a journey) made for it.
func readRecordMatrix(t *testing.T, name string, recordPlaceholders ...string) []matrixRow {
	t.Helper()
	fh, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cr := csv.NewReader(fh)
	cr.Comment = '#'
	cr.FieldsPerRecord = 9
	header, err := cr.Read()
	if err != nil || strings.Join(header, ",") != "role,method,path,patient,consent,scopes,expect,reason,body" {
		t.Fatalf("%s header %v (%v)", name, header, err)
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
		if r.expect, err = strconv.Atoi(rec[6]); err != nil {
			t.Fatalf("line %d: expect %q is not a status", line, rec[6])
		}
		switch r.patient {
		case "own", "assigned", "glass", "expired", "other", "none":
		default:
			t.Fatalf("%s: patient must be own, assigned, glass, expired, other or none", r)
		}
		names := strings.Contains(r.path, "{patient}") || strings.Contains(r.body, "{patient}")
		for _, p := range recordPlaceholders {
			names = names || strings.Contains(r.path, p)
		}
		if r.patient != "none" && !names {
			t.Fatalf("%s: the row names a patient but neither the path nor the body reaches it", r)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestWorkflowAuthorizationMatrix drives every row of
// testdata/authz_matrix_workflows.csv through the real server with a real
// engine, on every backend: the status, the reason of a 403, the shape of a
// 404, and the audit entries the request left.
func TestWorkflowAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readWorkflowMatrix(t)
	covered := map[string]bool{}
	ids := strings.NewReplacer("{run}", "{id}", "{task}", "{id}")
	for _, r := range rows {
		covered[r.role] = true
		covered[r.method+" "+ids.Replace(strings.SplitN(r.path, "?", 2)[0])] = true
	}
	for _, role := range auth.Roles() {
		if !covered[string(role)] {
			t.Errorf("role %s has no row in the workflow matrix", role)
		}
	}
	// Every workflow route has rows.
	for _, p := range New(Options{}).Patterns() {
		if (strings.Contains(p, " /api/v1/workflow") || strings.Contains(p, " /api/v1/tasks")) && !covered[p] {
			t.Errorf("route %s has no row in the workflow matrix", p)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		for i, row := range rows {
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				runWorkflowMatrixRow(t, f, i, row)
			})
		}
	})
}

// targetUser is a body placeholder {user:KIND} naming the user a task is
// handed to: a fresh enabled account of role KIND, a disabled physician
// (disabled), or an id no account has (missing).
var targetUser = regexp.MustCompile(`\{user:([a-z_]+)\}`)

func (f *wfFixture) targetUser(t *testing.T, username, kind string) string {
	t.Helper()
	switch kind {
	case "missing":
		return uuid.NewString()
	case "disabled":
		u, err := f.deps.accounts.AddUser(context.Background(), username, testAccountPassword, auth.Physician)
		if err == nil {
			err = f.deps.accounts.DisableUser(context.Background(), username)
		}
		if err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
	if !auth.Role(kind).Valid() {
		t.Fatalf("{user:%s}: a role, disabled or missing", kind)
	}
	u, err := f.deps.accounts.AddUser(context.Background(), username, testAccountPassword, auth.Role(kind))
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func runWorkflowMatrixRow(t *testing.T, f *wfFixture, i int, row matrixRow) {
	who := ""
	switch {
	case row.role == "anonymous":
	case strings.Contains(row.body, "{self}"):
		// The caller names itself: it must be an account the engine can
		// look up, like the users a task is handed to.
		if row.scopes != "" {
			t.Fatalf("%s: a {self} row takes the default scopes", row)
		}
		who = f.account(t, fmt.Sprintf("wrow%03d.%s", i, row.role), auth.Role(row.role))
	default:
		who = f.principal(t, fmt.Sprintf("wrow%03d-%s", i, row.role), auth.Role(row.role), row.scopes)
	}
	patient := map[string]string{"own": ownPatient, "other": otherPatient, "assigned": "pat-assigned",
		"glass": "pat-glass", "expired": "pat-expired"}[row.patient]
	f.relate(t, who, row.role, row.patient, patient)
	if patient != "" {
		f.setConsent(t, patient, row.consent)
	} else if row.consent != "none" {
		t.Fatalf("%s: a consent needs a patient", row)
	}
	repl := []string{"{patient}", patient, "{row}", strconv.Itoa(i), "{self}", who}
	if strings.Contains(row.body, "{encounter}") {
		if patient == "" {
			t.Fatalf("%s: {encounter} is an encounter of the row's patient", row)
		}
		repl = append(repl, "{encounter}", f.encounter(t, patient))
	}
	if strings.Contains(row.body, "{foreign_encounter}") {
		foreign := otherPatient
		if patient == otherPatient {
			foreign = ownPatient
		}
		repl = append(repl, "{foreign_encounter}", f.encounter(t, foreign))
	}
	for _, m := range targetUser.FindAllStringSubmatch(row.body, -1) {
		repl = append(repl, m[0], f.targetUser(t, fmt.Sprintf("wrow%03d.to.%s", i, m[1]), m[1]))
	}
	if strings.Contains(row.path+row.body, "{run}") || strings.Contains(row.path+row.body, "{task}") {
		run := f.startRun(t, approvalDefinition, patient, nil)
		task := f.taskOf(t, run.ID)
		cur, err := f.eng.GetRun(context.Background(), run.ID)
		if err != nil {
			t.Fatal(err)
		}
		repl = append(repl, "{run}", run.ID, "{task}", task.ID,
			"{run_version}", strconv.FormatInt(cur.RowVersion, 10), "{task_version}", strconv.FormatInt(task.RowVersion, 10))
	}
	r := strings.NewReplacer(repl...)
	path, body := r.Replace(row.path), r.Replace(row.body)

	resp := f.do(t, who, row.method, path, body)
	if resp.status != row.expect {
		t.Fatalf("%s\nstatus %d, want %d: %s", row, resp.status, row.expect, resp.body)
	}
	// A 403 for the task rule is the engine's, after the policy allowed.
	taskRule := row.expect == http.StatusForbidden && row.reason == "task_rule"
	switch row.expect {
	case http.StatusForbidden:
		var p Problem
		if err := json.Unmarshal(resp.body, &p); err != nil {
			t.Fatalf("%s\nnot a problem: %s", row, resp.body)
		}
		if taskRule && p.Detail != "task is assigned to another role or user" {
			t.Fatalf("%s\nproblem %s is not the task rule's", row, resp.body)
		}
		if !taskRule && !strings.Contains(p.Detail, "("+row.reason+")") {
			t.Fatalf("%s\nproblem %s does not name the reason %s", row, resp.body, row.reason)
		}
	case http.StatusNotFound:
		var p Problem
		if err := json.Unmarshal(resp.body, &p); err != nil || p.Type != "urn:careflow:problem:not_found" {
			t.Fatalf("%s\nnot a not_found problem: %s", row, resp.body)
		}
		switch p.Detail {
		case "workflow run not found", "task not found", "no such patient":
		default:
			t.Fatalf("%s\na record out of reach must look missing: %s", row, resp.body)
		}
	}

	entries := f.auditOf(t, resp.requestID)
	if row.expect == http.StatusUnauthorized {
		if len(entries) != 0 {
			t.Fatalf("%s\nwrote %d audit entries, want none", row, len(entries))
		}
		return
	}
	if len(entries) == 0 {
		t.Fatalf("%s\nno audit entry for request %s", row, resp.requestID)
	}
	want := audit.OutcomeSuccess
	if (row.expect == http.StatusForbidden && !taskRule) || row.expect == http.StatusNotFound {
		want = audit.OutcomeDenied
	}
	refused := row.expect == http.StatusConflict || row.expect == http.StatusBadRequest ||
		row.expect == http.StatusUnprocessableEntity || taskRule
	for k, e := range entries {
		w := want
		if refused && k == len(entries)-1 {
			// An authorized change the run's state, or a start whose input
			// the definition, refused.
			w = audit.OutcomeError
		}
		if e.Outcome != w || e.Actor != who || e.Role != row.role {
			t.Fatalf("%s\naudit entry %+v, want outcome %s by %s", row, e, w, who)
		}
		if patient != "" && e.PatientID != patient {
			t.Fatalf("%s\naudit entry names patient %q, want %q", row, e.PatientID, patient)
		}
		if want == audit.OutcomeDenied && row.reason != "-" && e.ResourceType != runType && e.ResourceType != taskType {
			t.Fatalf("%s\naudit entry for %s", row, e.ResourceType)
		}
	}
	if refused && len(entries) < 2 {
		t.Fatalf("%s\na refused change needs its error entry: %+v", row, entries)
	}
	if row.patient == "glass" && (row.role == "physician" || row.role == "nurse") {
		for _, e := range entries {
			if e.Severity != audit.SeverityHigh || e.Purpose != audit.PurposeEmergencyTreatment {
				t.Fatalf("%s\naccess under a break-the-glass grant audited as %+v", row, e)
			}
		}
	}
}
