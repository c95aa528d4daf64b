package fhirconformance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store/storetest"
)

// clinicalPassword is every test account's password (the password policy
// wants a long one; the accounts live only in the test's data folder).
const clinicalPassword = "a long enough passphrase for the ward"

// dischargeSteps is the discharge template as the issue states it: which
// steps, in which order, and the role that must do each.
var dischargeSteps = []struct{ code, role string }{
	{"discharge_readiness", "nurse"},
	{"discharge_summary", "physician"},
	{"discharge_signoff", "physician"},
	{"discharge_teaching", "nurse"},
}

// TestClinicalDischargeAgainstCareflowServe drives a discharge workflow
// start to finish through a real `careflow serve`, as people signed in with
// passwords: a clinical_admin registers the patient and the practitioner
// over /fhir/R4 and puts a nurse, a physician and the patient in one care
// team; the physician records the encounter and starts the workflow; each
// of its four steps is started and completed by the holder of the step's
// role. The workflow's FHIR view (its Task, and the step Tasks partOf it)
// is read back through /fhir/R4 as the nurse and judged by @medplum/core's
// validator; any error issue fails the test.
func TestClinicalDischargeAgainstCareflowServe(t *testing.T) {
	t.Parallel()
	tools := requireNodeTools(t)
	bin := careflowBinary(t)
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			common := serveStorage(t, d)
			pwFile := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pwFile, []byte(clinicalPassword+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			userIDs := map[string]string{}
			for _, u := range []struct{ name, role string }{
				{"nurse.amal", "nurse"}, {"dr.karim", "physician"}, {"admin.sara", "clinical_admin"},
			} {
				out := runCareflow(t, bin, append([]string{"user", "add", u.name, "--role", u.role, "--password-file", pwFile}, common...)...)
				if userIDs[u.role] = addedUserID(out); userIDs[u.role] == "" {
					t.Fatalf("careflow user add printed no user id: %q", out)
				}
			}
			base := startServe(t, bin, common)
			nurse := login(t, base, "nurse.amal")
			doctor := login(t, base, "dr.karim")
			admin := login(t, base, "admin.sara")

			// Registration and the care team, as the clinical_admin: the
			// team is what lets the clinicians reach the patient at all.
			patientID := created(t, admin.call(t, "POST", "/fhir/R4/Patient",
				`{"resourceType":"Patient","name":[{"family":"Synthetic","given":["Discharge"]}],"gender":"female","birthDate":"1951-03-04"}`, http.StatusCreated))
			practitionerID := created(t, admin.call(t, "POST", "/fhir/R4/Practitioner",
				`{"resourceType":"Practitioner","name":[{"family":"Attending"}]}`, http.StatusCreated))
			teamID := created(t, admin.call(t, "POST", "/api/v1/care-teams", `{"name":"Ward 3 discharges"}`, http.StatusCreated))
			team := "/api/v1/care-teams/" + url.PathEscape(teamID)
			admin.call(t, "PUT", team+"/members/"+url.PathEscape(userIDs["nurse"]), `{"role":"nurse"}`, http.StatusNoContent)
			admin.call(t, "PUT", team+"/members/"+url.PathEscape(userIDs["physician"]), `{"role":"attending"}`, http.StatusNoContent)
			admin.call(t, "PUT", team+"/patients/"+url.PathEscape(patientID), "", http.StatusNoContent)

			// The physician reaches the patient through the team now, and
			// records the stay the discharge ends.
			encounterID := created(t, doctor.call(t, "POST", "/fhir/R4/Encounter",
				`{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"Patient/`+patientID+`"}}`, http.StatusCreated))

			w := decode[e2eWorkflow](t, doctor.call(t, "POST", "/api/v1/clinical-workflows/workflows", fmt.Sprintf(
				`{"type":"discharge","priority":"urgent","patient":"Patient/%s","provider":"Practitioner/%s","encounter":"Encounter/%s","chief_complaint":"Shortness of breath","clinical_notes":"Improving on oral antibiotics."}`,
				patientID, practitionerID, encounterID), http.StatusCreated))
			var template []struct{ code, role string }
			for _, s := range w.Steps {
				template = append(template, struct{ code, role string }{s.Code, s.Role})
			}
			if w.Status != "active" || !slices.Equal(template, dischargeSteps) || w.FHIRTask == "" {
				t.Fatalf("created workflow: status %s, steps %v, FHIR Task %q; want active, %v and a Task", w.Status, template, w.FHIRTask, dischargeSteps)
			}

			// A step is worked only by its role: the nurse may not start
			// the physician's sign-off. Nothing changes: the physician
			// later starts it at the version read here.
			signoff := w.step(t, "discharge_signoff")
			nurse.call(t, "PUT", "/api/v1/clinical-workflows/workflows/"+url.PathEscape(w.ID)+"/steps/"+url.PathEscape(signoff.ID),
				fmt.Sprintf(`{"status":"in_progress","version":%d}`, signoff.Version), http.StatusForbidden)

			// Each step in order, started and completed by the holder of
			// its role; the workflow stays active until the last one.
			holder := map[string]signedIn{"nurse": nurse, "physician": doctor}
			for i, want := range dischargeSteps {
				for _, status := range []string{"in_progress", "completed"} {
					s := w.step(t, want.code)
					w = decode[e2eWorkflow](t, holder[want.role].call(t, "PUT", "/api/v1/clinical-workflows/workflows/"+url.PathEscape(w.ID)+"/steps/"+url.PathEscape(s.ID),
						fmt.Sprintf(`{"status":%q,"version":%d}`, status, s.Version), http.StatusOK))
				}
				if last := i == len(dischargeSteps)-1; (w.Status == "completed") != last {
					t.Fatalf("after %s the workflow is %s", want.code, w.Status)
				}
			}

			// Read back as the nurse: the workflow and who did each step.
			w = decode[e2eWorkflow](t, nurse.call(t, "GET", "/api/v1/clinical-workflows/workflows/"+url.PathEscape(w.ID), "", http.StatusOK))
			if w.Status != "completed" {
				t.Fatalf("workflow status %s, want completed", w.Status)
			}
			stepTasks := map[string]e2eStep{}
			for _, s := range w.Steps {
				by := userIDs[s.Role]
				if s.Status != "completed" || s.StartedBy != by || s.FinishedBy != by || s.FHIRTask == "" {
					t.Errorf("step %s: %s, started by %q, finished by %q, FHIR Task %q; want completed by the %s (%s)", s.Code, s.Status, s.StartedBy, s.FinishedBy, s.FHIRTask, s.Role, by)
				}
				stepTasks[s.FHIRTask] = s
			}

			// The workflow's engine run ends after it: the last step sends
			// the run its closing signal in the step's transaction, and a
			// River job of the server then finishes the run.
			waitRunCompleted(t, nurse, w.ID)

			// The FHIR view, through /fhir/R4 as the nurse.
			out := &outputs{dir: t.TempDir(), what: map[string]output{}}
			r := get(t, base+"/fhir/R4/"+w.FHIRTask, nurse.token)
			if r.status != http.StatusOK {
				t.Fatalf("GET /fhir/R4/%s as the nurse = %d: %s", w.FHIRTask, r.status, r.body)
			}
			wt := decode[e2eTask](t, r.body)
			if wt.Status != "completed" || wt.For.Reference != "Patient/"+patientID || wt.Encounter.Reference != "Encounter/"+encounterID || wt.Owner.Reference != "Practitioner/"+practitionerID {
				t.Errorf("workflow Task: status %s, for %s, encounter %s, owner %s", wt.Status, wt.For.Reference, wt.Encounter.Reference, wt.Owner.Reference)
			}
			out.add(t, "workflow", "read", r.body)

			r = get(t, base+"/fhir/R4/Task?part-of="+url.QueryEscape(w.FHIRTask)+"&_count=50", nurse.token)
			if r.status != http.StatusOK {
				t.Fatalf("GET /fhir/R4/Task?part-of=%s as the nurse = %d: %s", w.FHIRTask, r.status, r.body)
			}
			out.add(t, "steps", "search", r.body)
			bundle := decode[struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}](t, r.body)
			var seen []string
			for _, e := range bundle.Entry {
				st := decode[e2eTask](t, e.Resource)
				ref := "Task/" + st.ID
				s, ok := stepTasks[ref]
				switch {
				case !ok:
					t.Errorf("the search returned %s, not a step Task of the workflow", ref)
					continue
				case st.Status != "completed" || len(st.PartOf) != 1 || st.PartOf[0].Reference != w.FHIRTask:
					t.Errorf("step Task %s (%s): status %s, partOf %v", ref, s.Code, st.Status, st.PartOf)
				case st.Owner.Identifier.Value != s.FinishedBy || len(st.PerformerType) != 1 || len(st.PerformerType[0].Coding) != 1 || st.PerformerType[0].Coding[0].Code != s.Role:
					t.Errorf("step Task %s (%s): owner %q, performerType %v; want %q and %s", ref, s.Code, st.Owner.Identifier.Value, st.PerformerType, s.FinishedBy, s.Role)
				}
				seen = append(seen, ref)
				out.add(t, s.Code, "step", e.Resource)
			}
			if len(seen) != len(dischargeSteps) {
				t.Fatalf("Task?part-of found %d step Tasks, want %d", len(seen), len(dischargeSteps))
			}

			// The independent judge: the workflow Task, the searchset and
			// each step Task in it. medplum's validateResource checks
			// structure, cardinality, primitive formats and unknown
			// elements but not code bindings (a Task.status of "done"
			// passes it), so careflow's own R4 validator, which checks the
			// required bindings (status, intent, priority), judges the same
			// files too.
			verdicts := crosscheck(t, tools, out.dir, out.files)
			for _, f := range out.files {
				if v := verdicts[f]; v != "OK" {
					t.Errorf("medplum finds errors in %s (%s %s): %s", f, out.what[f].sample, out.what[f].step, v)
				}
				raw, err := os.ReadFile(filepath.Join(out.dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if is := fhir.Validate(raw); is.HasErrors() {
					t.Errorf("careflow's validator finds errors in %s (%s %s): %+v", f, out.what[f].sample, out.what[f].step, is)
				}
			}
			t.Logf("discharge %s completed by the nurse and the physician; medplum judged %d Task resources and Bundles", w.ID, len(out.files))
		})
	}
}

// waitRunCompleted waits for the workflow's engine run (same id) to be
// completed, as caller reads it at /api/v1/workflow-runs/{id}.
func waitRunCompleted(t *testing.T, caller signedIn, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		run := decode[struct {
			Status string `json:"status"`
		}](t, caller.call(t, "GET", "/api/v1/workflow-runs/"+url.PathEscape(id), "", http.StatusOK))
		if run.Status == "completed" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workflow's run is %s 30s after its last step, want completed", run.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// e2eWorkflow is what the test reads of a clinical workflow.
type e2eWorkflow struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"`
	FHIRTask string    `json:"fhir_task"`
	Steps    []e2eStep `json:"steps"`
}

type e2eStep struct {
	ID         string `json:"id"`
	Code       string `json:"code"`
	Role       string `json:"role"`
	Status     string `json:"status"`
	FHIRTask   string `json:"fhir_task"`
	StartedBy  string `json:"started_by"`
	FinishedBy string `json:"finished_by"`
	Version    int    `json:"version"`
}

func (w e2eWorkflow) step(t *testing.T, code string) e2eStep {
	t.Helper()
	for _, s := range w.Steps {
		if s.Code == code {
			return s
		}
	}
	t.Fatalf("the workflow has no step %s", code)
	return e2eStep{}
}

// e2eTask is what the test reads of a FHIR Task.
type e2eTask struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	PartOf []struct {
		Reference string `json:"reference"`
	} `json:"partOf"`
	For struct {
		Reference string `json:"reference"`
	} `json:"for"`
	Encounter struct {
		Reference string `json:"reference"`
	} `json:"encounter"`
	Owner struct {
		Reference  string `json:"reference"`
		Identifier struct {
			Value string `json:"value"`
		} `json:"identifier"`
	} `json:"owner"`
	PerformerType []struct {
		Coding []struct {
			Code string `json:"code"`
		} `json:"coding"`
	} `json:"performerType"`
}

// signedIn is a person signed in to the server under test.
type signedIn struct {
	base, username, token string
}

// login signs username in with POST /api/v1/auth/login.
func login(t *testing.T, base, username string) signedIn {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": clinicalPassword})
	r := request(t, "POST", base+"/api/v1/auth/login", "", body)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("login as %s = %d: %s", username, r.status, r.body)
	}
	return signedIn{base: base, username: username, token: tr.AccessToken}
}

// call sends body ("" for none) to path and fails the test unless the
// answer has status want. Only a refusal's body is shown: problem+json and
// OperationOutcome never carry PHI, a success's body may.
func (s signedIn) call(t *testing.T, method, path, body string, want int) []byte {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r := request(t, method, s.base+path, s.token, b)
	if r.status != want {
		shown := "(body not shown)"
		if r.status >= 400 {
			shown = string(r.body)
		}
		t.Fatalf("%s %s as %s = %d, want %d: %s", method, path, s.username, r.status, want, shown)
	}
	return r.body
}

// created is the id of what a create answered with.
func created(t *testing.T, body []byte) string {
	t.Helper()
	id := decode[struct {
		ID string `json:"id"`
	}](t, body).ID
	if id == "" {
		t.Fatal("the create answer holds no id")
	}
	return id
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}

// addedUserID reads the id from `careflow user add`'s "added user NAME
// (id ID, role ROLE)".
func addedUserID(out string) string {
	m := regexp.MustCompile(`\(id (\S+), role `).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}
