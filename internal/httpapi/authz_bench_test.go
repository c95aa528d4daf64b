package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkAuthorizedRequest measures a request through the real server:
// the access check (authentication stand-in, Decide with its database
// look-ups, no audit) and a consent read (the same plus a durable audit
// append before the response).
func BenchmarkAuthorizedRequest(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			f := newAuthzFixture(b, db, nil)
			who := f.principal(b, "bench-doc", auth.Physician, "")
			for _, c := range []struct{ name, path string }{
				{"access_check", "/api/v1/access/check?resource=Observation&action=read&patient=" + ownPatient},
				{"consent_read_audited", "/api/v1/patients/" + ownPatient + "/consents"},
			} {
				b.Run(c.name, func(b *testing.B) {
					req, _ := http.NewRequest("GET", f.ts.URL+c.path, nil)
					req.Header.Set(testPrincipalHeader, who)
					b.ReportAllocs()
					for b.Loop() {
						resp, err := f.ts.Client().Do(req)
						if err != nil {
							b.Fatal(err)
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Fatal(fmt.Sprint(resp.StatusCode))
						}
					}
				})
			}
		})
	}
}
