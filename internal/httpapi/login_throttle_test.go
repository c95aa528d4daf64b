package httpapi

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The finding over HTTP: wrong passwords for a clinician's username from
// five addresses (behind the trusted proxy) do not stop the clinician's
// login, from the address they used before or from a fresh one; the
// address that guessed most is the one answered 429.
func TestLoginFailuresFromStrangersDoNotLockTheOwnerOut(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newIDFixture(t, db, func(id *Identity) {
			id.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		})
		f.addUser(t, "amal", auth.Physician)
		login := func(addr, password string) *http.Response {
			t.Helper()
			resp, _ := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"amal","password":"`+password+`"}`,
				map[string]string{"Content-Type": "application/json", "X-Forwarded-For": addr})
			return resp
		}
		if resp := login("192.0.2.10", testPassword); resp.StatusCode != 200 {
			t.Fatalf("first login from the ward = %d", resp.StatusCode)
		}
		// 198.51.100.1 guesses five times, four more addresses once each.
		for i := 0; i < 5; i++ {
			if resp := login("198.51.100.1", "wrong password!!"); i < 4 && resp.StatusCode != 401 {
				t.Fatalf("failure %d = %d", i+1, resp.StatusCode)
			}
		}
		for i := 2; i <= 5; i++ {
			if resp := login("198.51.100."+strconv.Itoa(i), "wrong password!!"); resp.StatusCode != 401 {
				t.Fatalf("failure from .%d = %d", i, resp.StatusCode)
			}
		}
		if resp := login("198.51.100.1", testPassword); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "900" {
			t.Fatalf("the guessing address with the right password = %d Retry-After %q; want 429, 900", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if resp := login("192.0.2.10", testPassword); resp.StatusCode != 200 {
			t.Fatalf("owner from the ward = %d, want 200", resp.StatusCode)
		}
		if resp := login("203.0.113.50", testPassword); resp.StatusCode != 200 {
			t.Fatalf("owner from a fresh address = %d, want 200", resp.StatusCode)
		}
	})
}
