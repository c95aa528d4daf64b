package auth_test

import (
	"testing"

	"github.com/careflow/careflow/internal/auth"
)

func TestParseScope(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		ok    bool
		want  string // the canonical form when ok
		perms auth.Perms
	}{
		{"user/Patient.rs", true, "user/Patient.rs", auth.PermRead | auth.PermSearch},
		{"system/*.cruds", true, "system/*.cruds", auth.PermAll},
		{"patient/Observation.r", true, "patient/Observation.r", auth.PermRead},
		{"user/Claim.cud", true, "user/Claim.cud", auth.PermCreate | auth.PermUpdate | auth.PermDelete},
		{"user/Observation.read", true, "user/Observation.rs", auth.PermRead | auth.PermSearch},
		{"user/Observation.write", true, "user/Observation.cud", auth.PermCreate | auth.PermUpdate | auth.PermDelete},
		{"user/*.*", true, "user/*.cruds", auth.PermAll},
		{"user/Observation.rs?category=laboratory", true, "user/Observation.rs?category=laboratory", auth.PermRead | auth.PermSearch},
		{"user/Patient.sr", false, "", 0},  // out of order
		{"user/Patient.rr", false, "", 0},  // repeated
		{"user/Patient.x", false, "", 0},   // not a permission
		{"user/Patient.", false, "", 0},    // empty
		{"user/Patient", false, "", 0},     // no permissions
		{"user/patient.rs", false, "", 0},  // type must be capitalised
		{"user/Pa-tient.rs", false, "", 0}, // not a type name
		{"user/Patient.rs?", false, "", 0}, // empty query
		{"user/Patient.rs?a b", false, "", 0},
		{"admin/Patient.rs", false, "", 0}, // unknown context
		{"openid", false, "", 0},
		{"launch/patient", false, "", 0},
		{"", false, "", 0},
	}
	for _, c := range cases {
		s, err := auth.ParseScope(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseScope(%q) error %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if c.ok && (s.String() != c.want || s.Perms != c.perms) {
			t.Errorf("ParseScope(%q) = %s (%s), want %s", c.in, s, s.Perms, c.want)
		}
	}
}

func TestScopesAllow(t *testing.T) {
	t.Parallel()
	p := &auth.Principal{Subject: "u", Kind: auth.KindUser, Role: auth.Physician,
		Scopes: []string{"user/Observation.r", "user/Observation.s", "user/Patient.read", "bogus", "user/Claim.rs?status=active"}}
	cases := []struct {
		typ    string
		action auth.Action
		want   bool
	}{
		{"Observation", auth.ActionRead, true},
		{"Observation", auth.ActionSearch, true},
		{"Observation", auth.ActionExport, true}, // r and s from two scopes together
		{"Observation", auth.ActionUpdate, false},
		{"Patient", auth.ActionBreakGlass, true},
		{"Patient", auth.ActionDelete, false},
		{"Claim", auth.ActionRead, false}, // granular: ignored
		{"Condition", auth.ActionRead, false},
		{"Condition", "purge", false},
	}
	for _, c := range cases {
		if got := auth.ScopesAllow(p, c.typ, c.action); got != c.want {
			t.Errorf("ScopesAllow(%s, %s) = %v, want %v", c.typ, c.action, got, c.want)
		}
	}
	odd := &auth.Principal{Subject: "u", Kind: "robot", Scopes: []string{"user/*.cruds", "system/*.cruds"}}
	if auth.ScopesAllow(odd, "Patient", auth.ActionRead) {
		t.Fatal("a principal of unknown kind was allowed")
	}
}

// FuzzScope: parsing never panics, and a parsed scope prints in a form
// that parses back to the same scope.
func FuzzScope(f *testing.F) {
	for _, s := range []string{"user/Patient.rs", "system/*.cruds", "patient/Observation.read", "user/*.*",
		"user/Observation.rs?category=laboratory", "openid", "user/Patient.sr", "user//.", "/.?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := auth.ParseScope(raw)
		if err != nil {
			if s != (auth.Scope{}) {
				t.Fatalf("error %v with a non-zero scope %+v", err, s)
			}
			return
		}
		if s.Perms == 0 || s.Perms > auth.PermAll {
			t.Fatalf("ParseScope(%q) perms %d", raw, s.Perms)
		}
		again, err := auth.ParseScope(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseScope(%q) = %+v; its String %q parses to %+v, %v", raw, s, s.String(), again, err)
		}
	})
}
