package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The writes of a role with field rules (clinical_admin: Patient
// demographics only), through the real server on every backend: what it
// cannot see is neither erased by its updates nor set by them, in a plain
// update, a conditional update, a create, a transaction and a batch.
func TestFHIRWritesRespectTheWritersFields(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		doc := f.principal(t, "fw-physician", auth.Physician, "")
		admin := f.principal(t, "fw-clinical-admin", auth.ClinicalAdmin, "")
		const secret = "SEEN-BY-DR-A-FOR-DEPRESSION"
		do := func(who, method, path, body string, header ...string) (int, http.Header, []byte) {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, err := http.NewRequest(method, f.ts.URL+path, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(testPrincipalHeader, who)
			req.Header.Set("Content-Type", fhirJSON)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, resp.Header, out
		}
		members := func(body []byte) map[string]json.RawMessage {
			t.Helper()
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("not a JSON object: %s", body)
			}
			return m
		}
		// physicianView is what a physician (every field) reads of pat-own.
		physicianView := func() map[string]json.RawMessage {
			t.Helper()
			status, _, body := do(doc, "GET", "/fhir/R4/Patient/"+ownPatient, "")
			if status != http.StatusOK {
				t.Fatalf("physician read: %d %s", status, body)
			}
			return members(body)
		}
		// refused checks a 403 OperationOutcome naming the element (and
		// not the value the request sent).
		refused := func(status int, body []byte, path string) {
			t.Helper()
			if status != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", status, body)
			}
			var oo fhir.OperationOutcome
			if err := json.Unmarshal(body, &oo); err != nil || len(oo.Issue) != 1 || !slices.Equal(oo.Issue[0].Expression, []string{path}) ||
				oo.Issue[0].Code != "forbidden" || !strings.Contains(oo.Issue[0].Diagnostics, "(field_not_writable)") {
				t.Fatalf("outcome %s, want forbidden field_not_writable at %s", body, path)
			}
			if strings.Contains(string(body), secret) || strings.Contains(string(body), "true") {
				t.Fatalf("the outcome carries a value: %s", body)
			}
		}

		// The physician writes the narrative, an extension and the deceased flag.
		full := `{"resourceType":"Patient","id":"` + ownPatient + `",` +
			`"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + secret + `</div>"},` +
			`"extension":[{"url":"http://example.org/fhir/StructureDefinition/religion","valueString":"x"}],` +
			`"identifier":[{"system":"urn:eg:nid","value":"NID-` + ownPatient + `"}],"name":[{"family":"Own"}],"gender":"female","deceasedBoolean":false}`
		if status, _, body := do(doc, "PUT", "/fhir/R4/Patient/"+ownPatient, full); status != http.StatusOK {
			t.Fatalf("physician update: %d %s", status, body)
		}

		// clinical_admin reads it redacted, changes the name, writes it back.
		status, hdr, body := do(admin, "GET", "/fhir/R4/Patient/"+ownPatient, "")
		if status != http.StatusOK {
			t.Fatalf("clinical_admin read: %d %s", status, body)
		}
		seen := members(body)
		for _, hidden := range []string{"text", "extension", "deceasedBoolean"} {
			if seen[hidden] != nil {
				t.Fatalf("clinical_admin reads %s: %s", hidden, body)
			}
		}
		seen["name"] = json.RawMessage(`[{"family":"Renamed"}]`)
		delete(seen, "meta")
		put, _ := json.Marshal(seen)
		status, _, body = do(admin, "PUT", "/fhir/R4/Patient/"+ownPatient, string(put), "If-Match", hdr.Get("ETag"))
		if status != http.StatusOK {
			t.Fatalf("clinical_admin update: %d %s", status, body)
		}
		if back := members(body); back["text"] != nil || back["extension"] != nil || back["deceasedBoolean"] != nil || string(back["name"]) != `[{"family":"Renamed"}]` {
			t.Fatalf("the write's response is not redacted as a read: %s", body)
		}
		pv := physicianView()
		if string(pv["name"]) != `[{"family":"Renamed"}]` || !strings.Contains(string(pv["text"]), secret) || pv["extension"] == nil || string(pv["deceasedBoolean"]) != "false" {
			t.Fatalf("after clinical_admin's update the physician reads %s: want the new name with text, extension and deceasedBoolean kept", show(pv))
		}
		version := string(pv["meta"])

		// clinical_admin may not set what it cannot see; nothing is stored
		// and the refusal is audited.
		setDeceased := `{"resourceType":"Patient","id":"` + ownPatient + `","name":[{"family":"Renamed"}],"deceasedBoolean":true}`
		status, hdr, body = do(admin, "PUT", "/fhir/R4/Patient/"+ownPatient, setDeceased)
		refused(status, body, "Patient.deceasedBoolean")
		var got []string
		for _, e := range f.auditOf(t, hdr.Get("X-Request-ID")) {
			got = append(got, string(e.Action)+":"+e.PatientID+":"+string(e.Outcome))
		}
		if !slices.Equal(got, []string{"update:" + ownPatient + ":" + string(audit.OutcomeDenied)}) {
			t.Fatalf("audit of the refused write: %v", got)
		}
		setText := `{"resourceType":"Patient","id":"` + ownPatient + `","name":[{"family":"Renamed"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + secret + `-2</div>"}}`
		status, _, body = do(admin, "PUT", "/fhir/R4/Patient/"+ownPatient, setText)
		refused(status, body, "Patient.text")
		// A conditional update applies the same rule.
		byID := "/fhir/R4/Patient?identifier=urn:eg:nid|NID-" + ownPatient
		status, _, body = do(admin, "PUT", byID, setDeceased)
		refused(status, body, "Patient.deceasedBoolean")
		if pv := physicianView(); string(pv["meta"]) != version || string(pv["deceasedBoolean"]) != "false" || strings.Contains(string(pv["text"]), secret+"-2") {
			t.Fatalf("a refused write changed the record: %s", show(pv))
		}
		status, _, body = do(admin, "PUT", byID, `{"resourceType":"Patient","id":"`+ownPatient+`","identifier":[{"system":"urn:eg:nid","value":"NID-`+ownPatient+`"}],"name":[{"family":"Again"}],"gender":"female"}`)
		if status != http.StatusOK {
			t.Fatalf("conditional update: %d %s", status, body)
		}
		if pv := physicianView(); string(pv["name"]) != `[{"family":"Again"}]` || !strings.Contains(string(pv["text"]), secret) || string(pv["deceasedBoolean"]) != "false" {
			t.Fatalf("after the conditional update the physician reads %s", show(pv))
		}

		// A create with an element clinical_admin cannot see is refused.
		status, _, body = do(admin, "POST", "/fhir/R4/Patient", `{"resourceType":"Patient","name":[{"family":"New"}],"extension":[{"url":"http://example.org/x","valueString":"y"}]}`)
		refused(status, body, "Patient.extension")

		// A transaction with one such entry is refused whole.
		entries := `[{"request":{"method":"PUT","url":"Patient/` + ownPatient + `"},"resource":{"resourceType":"Patient","id":"` + ownPatient + `","identifier":[{"system":"urn:eg:nid","value":"NID-` + ownPatient + `"}],"name":[{"family":"Batched"}],"gender":"female"}},` +
			`{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","name":[{"family":"New"}],"deceasedBoolean":true}}]`
		status, _, body = do(admin, "POST", "/fhir/R4", `{"resourceType":"Bundle","type":"transaction","entry":`+entries+`}`)
		refused(status, body, "Patient.deceasedBoolean")
		if pv := physicianView(); string(pv["name"]) != `[{"family":"Again"}]` {
			t.Fatalf("a refused transaction changed the record: %s", show(pv))
		}
		// In a batch the entry fails alone.
		status, _, body = do(admin, "POST", "/fhir/R4", `{"resourceType":"Bundle","type":"batch","entry":`+entries+`}`)
		if status != http.StatusOK {
			t.Fatalf("batch: %d %s", status, body)
		}
		var b fhir.Bundle
		if err := json.Unmarshal(body, &b); err != nil || len(b.Entry) != 2 {
			t.Fatalf("batch response %s", body)
		}
		if b.Entry[0].Response.Status != "200 OK" || !strings.HasPrefix(b.Entry[1].Response.Status, "403") {
			t.Fatalf("batch statuses %q, %q", b.Entry[0].Response.Status, b.Entry[1].Response.Status)
		}
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(b.Entry[1].Response.Outcome, &oo); err != nil || len(oo.Issue) != 1 || !slices.Equal(oo.Issue[0].Expression, []string{"Patient.deceasedBoolean"}) {
			t.Fatalf("batch entry outcome %s", b.Entry[1].Response.Outcome)
		}
		if pv := physicianView(); string(pv["name"]) != `[{"family":"Batched"}]` || !strings.Contains(string(pv["text"]), secret) || pv["extension"] == nil {
			t.Fatalf("after the batch the physician reads %s", show(pv))
		}
	})
}

// show prints a decoded resource for a failure message.
func show(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}
