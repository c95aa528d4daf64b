package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A stated purpose of use (X-Purpose-Of-Use) is what the policy and the
// patient's consent are checked for, and what the audit log records; the
// role must be allowed it, and a malformed one is a 400.
func TestStatedPurposeOfUse(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newAuthzFixture(t, db, nil)
		gateway := f.principal(t, "gateway-p", auth.Integration, "")
		biller := f.principal(t, "biller-p", auth.Billing, "")
		f.setConsent(t, ownPatient, "payment=deny")
		check := "/api/v1/access/check?resource=Claim&action=read&patient=" + ownPatient
		ask := func(who, purpose string) (int, string) {
			t.Helper()
			req, _ := http.NewRequest("GET", f.ts.URL+check, nil)
			req.Header.Set(testPrincipalHeader, who)
			if purpose != "" {
				req.Header.Set(purposeHeader, purpose)
			}
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		// The integration's default purpose is operations: allowed.
		if code, body := ask(gateway, ""); code != http.StatusOK || !strings.Contains(body, `"purpose":"operations"`) {
			t.Fatalf("default purpose: %d %s", code, body)
		}
		// A stated purpose the role has and the patient did not refuse.
		if code, body := ask(gateway, "TREAT"); code != http.StatusOK || !strings.Contains(body, `"purpose":"treatment"`) {
			t.Fatalf("stated treatment: %d %s", code, body)
		}
		// Stating payment (by name or by HL7 code) meets the refusal.
		for _, p := range []string{"payment", "HPAYMT"} {
			if code, body := ask(gateway, p); code == http.StatusOK {
				t.Fatalf("purpose %s passed a payment refusal: %s", p, body)
			}
		}
		// Research needs an explicit permit, which this patient never gave.
		if code, _ := ask(gateway, "research"); code == http.StatusOK {
			t.Fatal("research passed without a research permit")
		}
		// Billing may act for payment only.
		if code, _ := ask(biller, "treatment"); code != http.StatusForbidden {
			t.Fatalf("billing stating treatment: %d, want 403", code)
		}
		if code, _ := ask(gateway, "curiosity"); code != http.StatusBadRequest {
			t.Fatalf("a purpose that is none: %d, want 400", code)
		}
	})
}
