package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// apiClient calls a running serve as one signed-in user.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func (c apiClient) do(method, path string, body any, want int) []byte {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, out)
	}
	return out
}

func decodeInto[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// The built-in discharge sign-off on a real `careflow serve`: accounts made
// with `careflow user add`, password logins, a care team set up through the
// API; a physician of the team starts the run for the patient with the
// patient's encounter (another patient's is refused), finds its task in
// /api/v1/tasks; the clinical admin can neither take it nor claim it; the
// physician claims it and signs off; the run completes with the outcome
// recorded.
func TestDischargeSignOffOnARealServer(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			dbURL := filepath.Join(dir, store.DefaultSQLiteFile)
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			}
			env := map[string]string{"CAREFLOW_DATABASE": dbURL, "CAREFLOW_DATA_DIR": dir}
			pwFile := filepath.Join(dir, "pw")
			const password = "a long enough passphrase"
			if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			idOf := regexp.MustCompile(`\(id ([0-9a-f-]{36}),`)
			addUser := func(name, role string) string {
				code, out, errOut := runCmd(t, env, "user", "add", name, "--role", role, "--password-file", pwFile)
				m := idOf.FindStringSubmatch(out)
				if code != 0 || m == nil {
					t.Fatalf("user add %s = %d %q %q", name, code, out, errOut)
				}
				return m[1]
			}
			doctor := addUser("dr.amal", "physician")
			ops1 := addUser("ops.sara", "clinical_admin")

			base := "http://" + startServe(t, "--database", dbURL, "--data-dir", dir)
			login := func(name string) apiClient {
				b := apiClient{t: t, base: base}.do("POST", "/api/v1/auth/login", map[string]string{"username": name, "password": password}, 200)
				return apiClient{t: t, base: base, token: decodeInto[struct {
					AccessToken string `json:"access_token"`
				}](t, b).AccessToken}
			}
			ops, doc := login("ops.sara"), login("dr.amal")

			team := decodeInto[struct {
				ID string `json:"id"`
			}](t, ops.do("POST", "/api/v1/care-teams", map[string]string{"name": "Ward 4"}, 201))
			ops.do("PUT", "/api/v1/care-teams/"+team.ID+"/members/"+doctor, map[string]string{"role": "attending"}, 204)
			ops.do("PUT", "/api/v1/care-teams/"+team.ID+"/patients/pat-42", nil, 204)

			ops.do("PUT", "/api/v1/care-teams/"+team.ID+"/patients/pat-43", nil, 204)

			// The encounter is the patient's, in the record; the engine
			// (wired by serve to the record) refuses another patient's.
			encounterOf := func(patient string) string {
				enc := decodeInto[struct {
					ID string `json:"id"`
				}](t, doc.do("POST", "/fhir/R4/Encounter", map[string]any{"resourceType": "Encounter", "status": "in-progress",
					"class": map[string]string{"code": "IMP"}, "subject": map[string]string{"reference": "Patient/" + patient}}, 201))
				return "Encounter/" + enc.ID
			}
			encounter, theirs := encounterOf("pat-42"), encounterOf("pat-43")
			doc.do("POST", "/api/v1/workflow-runs", map[string]any{
				"definition": clinical.DischargeSignOffDefinition, "patient_id": "pat-42",
				"input": map[string]string{"encounter": theirs}}, 422)
			run := decodeInto[engine.Run](t, doc.do("POST", "/api/v1/workflow-runs", map[string]any{
				"definition": clinical.DischargeSignOffDefinition, "patient_id": "pat-42",
				"input": map[string]string{"encounter": encounter}}, 201))

			var task engine.Task
			deadline := time.Now().Add(30 * time.Second)
			for task.ID == "" {
				page := decodeInto[struct {
					Tasks []engine.Task `json:"tasks"`
				}](t, doc.do("GET", "/api/v1/tasks?status=open&role=physician&run_id="+run.ID, nil, 200))
				if len(page.Tasks) == 1 {
					task = page.Tasks[0]
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the sign-off task did not appear in /api/v1/tasks")
				}
				<-time.After(50 * time.Millisecond)
			}
			if task.Title != "Sign off the discharge" || strings.Join(task.Decisions, ",") != "sign_off,not_ready" ||
				task.DueAt == nil || task.EscalateAt == nil || task.EscalateTo != "physician" ||
				task.DueAt.Sub(task.CreatedAt) != 4*time.Hour || task.EscalateAt.Sub(task.CreatedAt) != 2*time.Hour {
				t.Fatalf("task %+v", task)
			}

			// The clinical admin may manage the run, not decide it: serve's
			// engine looks the admin's account up and refuses it the task.
			ops.do("POST", "/api/v1/tasks/"+task.ID+"/reassign", map[string]any{"version": task.RowVersion, "user": ops1}, 422)
			ops.do("POST", "/api/v1/tasks/"+task.ID+"/claim", map[string]any{"version": task.RowVersion}, 403)

			claimed := decodeInto[engine.Task](t, doc.do("POST", "/api/v1/tasks/"+task.ID+"/claim", map[string]any{"version": task.RowVersion}, 200))
			if claimed.Status != engine.TaskClaimed || claimed.Assignee != doctor {
				t.Fatalf("claimed %+v", claimed)
			}
			done := decodeInto[engine.Task](t, doc.do("POST", "/api/v1/tasks/"+task.ID+"/complete",
				map[string]any{"version": claimed.RowVersion, "decision": clinical.DischargeSignOff}, 200))
			if done.Status != engine.TaskCompleted || done.Decision != clinical.DischargeSignOff {
				t.Fatalf("completed %+v", done)
			}

			deadline = time.Now().Add(30 * time.Second)
			for {
				cur := decodeInto[engine.Run](t, doc.do("GET", "/api/v1/workflow-runs/"+run.ID, nil, 200))
				if cur.Status == engine.StatusCompleted {
					var outcome map[string]string
					if err := json.Unmarshal(cur.Outputs["record"], &outcome); err != nil {
						t.Fatal(err)
					}
					if outcome["encounter"] != encounter || outcome["outcome"] != "signed_off" || outcome["decided_by"] != doctor {
						t.Fatalf("recorded outcome %v", outcome)
					}
					return
				}
				if cur.Status.Final() || time.Now().After(deadline) {
					t.Fatalf("run %s: %s", cur.Status, cur.Error)
				}
				<-time.After(50 * time.Millisecond)
			}
		})
	}
}
