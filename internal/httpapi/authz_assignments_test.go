package httpapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// An assignment gives one clinician one patient for a time, through the
// API; withdrawing it (or its end passing) takes the reach away again.
func TestAssignmentAPIGivesAndTakesReach(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clock := &settableClock{t: time.Now()}
		f := newAuthzFixture(t, db, clock.Now)
		admin := f.principal(t, "cadmin-as", auth.ClinicalAdmin, "")
		doc := f.principal(t, "consultant-9", auth.Physician, "")
		nurse := f.principal(t, "nurse-as", auth.Nurse, "")
		check := "/api/v1/access/check?resource=Observation&action=read&patient=pat-consult"
		base := "/api/v1/patients/pat-consult/assignments"
		until := func(d time.Duration) string {
			return fmt.Sprintf(`{"until":%q}`, time.Now().Add(d).UTC().Format(time.RFC3339))
		}

		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusNotFound)
		// Only care-relationship administrators assign, and not themselves
		// through a clinician's token.
		wantStatus(t, f.do(t, doc, "PUT", base+"/"+doc, until(time.Hour)), http.StatusForbidden)
		wantStatus(t, f.do(t, nurse, "PUT", base+"/"+doc, until(time.Hour)), http.StatusForbidden)

		resp := f.do(t, admin, "PUT", base+"/"+doc, until(8*time.Hour))
		wantStatus(t, resp, http.StatusNoContent)
		if es := f.auditOf(t, resp.requestID); len(es) != 1 || es[0].PatientID != "pat-consult" || es[0].Action != audit.ActionUpdate || es[0].Actor != admin {
			t.Fatalf("audit %+v", es)
		}
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusOK)
		// The nurse was not assigned.
		wantStatus(t, f.do(t, nurse, "GET", check, ""), http.StatusNotFound)

		resp = f.do(t, admin, "GET", base, "")
		wantStatus(t, resp, http.StatusOK)
		var list struct {
			Assignments []auth.Assignment `json:"assignments"`
		}
		decodeInto(t, resp, &list)
		if len(list.Assignments) != 1 || list.Assignments[0].UserID != doc || list.Assignments[0].Until.Before(time.Now().Add(7*time.Hour)) {
			t.Fatalf("assignments %+v", list)
		}

		// Bad ends.
		wantStatus(t, f.do(t, admin, "PUT", base+"/"+doc, `{}`), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "PUT", base+"/"+doc, until(-time.Minute)), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "PUT", base+"/"+doc, until(31*24*time.Hour)), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "PUT", base+"/"+doc, `{"until":"tomorrow"}`), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "PUT", "/api/v1/patients/bad..%20id/assignments/"+doc, until(time.Hour)), http.StatusBadRequest)

		// The end passing takes the reach away.
		clock.Advance(9 * time.Hour)
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusNotFound)
		clock.Advance(-9 * time.Hour)
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusOK)

		// Withdrawing does too, and is idempotent.
		wantStatus(t, f.do(t, admin, "DELETE", base+"/"+doc, ""), http.StatusNoContent)
		wantStatus(t, f.do(t, admin, "DELETE", base+"/"+doc, ""), http.StatusNoContent)
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusNotFound)
	})
}
