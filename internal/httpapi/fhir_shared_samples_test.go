package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/ratelimit"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

// The reference data (../shared/data: HL7's R4 examples, HCX and NPHIES
// payer messages) sent through the real server with the default policy and
// real access tokens of every role (issue #9):
//
//   - every valid resource of a type the CapabilityStatement lists is
//     accepted from some role, and read back unchanged by some role;
//   - every type it does not list answers 404 not-supported to every
//     role, for a create and for a read, valid sample or not;
//   - no record the run stored is unreadable by every role: each row of
//     the resources table is read over HTTP by the roles in turn.
//
// Each accepted sample then goes through sharedSampleChecks, where further
// per-resource properties (found by one of its type's search parameters,
// say) plug in.

// sharedSample is one valid sample the server accepted.
type sharedSample struct {
	path string
	typ  string
	raw  []byte
	// id is the server's id; writer and reader the roles that created it
	// and read it back unchanged.
	id             string
	writer, reader auth.Role
	// stored is the resource as read back.
	stored []byte
}

// sharedSampleChecks run on every accepted sample, after it was read back.
var sharedSampleChecks []func(t *testing.T, f *sharedFixture, s *sharedSample)

// sharedRoles are the roles the test acts as, in the order it tries them.
// integration (the interfaces' client role) comes first: it is the role
// that loads exchanged data.
var sharedRoles = []auth.Role{auth.Integration, auth.Billing, auth.ClinicalAdmin, auth.Physician, auth.Nurse, auth.Admin, auth.Auditor}

type sharedFixture struct {
	db     *store.DB
	fhir   *fhirFixture
	tokens map[auth.Role]string
}

func newSharedFixture(t *testing.T, db *store.DB) *sharedFixture {
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
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ks, err := auth.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(ks, auth.TokenConfig{})
	rec := record.New(db, newTestRing(t, db), record.Options{Codes: terminology.NewService(db, terminology.Options{})})
	unlimited := ratelimit.Rule{Rate: 1e9, Burst: 1e9}
	srv := New(Options{
		DB:     db,
		Record: rec,
		Access: auth.NewAccess(db, nil, nil), // the default policy
		Audit:  log,
		Identity: Identity{Authenticator: auth.NewVerifier(tokens, nil),
			Limits: RateLimits{PerAddr: unlimited, PerUser: unlimited, Credentials: unlimited}},
	})
	f := &sharedFixture{db: db, fhir: &fhirFixture{db: db, log: log, rec: rec}, tokens: map[auth.Role]string{}}
	f.fhir.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.fhir.ts.Close)
	for _, role := range sharedRoles {
		var tok auth.IssuedToken
		if role == auth.Integration {
			tok, err = tokens.IssueClient(auth.Client{ID: "client-" + string(role), Role: role}, []string{"system/*.cruds"})
		} else {
			// A careflow session: the policy's session scopes apply.
			tok, err = tokens.IssueUser(auth.User{ID: "user-" + string(role), Username: string(role), Role: role}, "session-"+string(role))
		}
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[role] = tok.Token
	}
	return f
}

func (f *sharedFixture) do(t *testing.T, role auth.Role, method, path string, body []byte) fhirResp {
	t.Helper()
	return f.fhir.do(t, method, path, body, "Authorization", "Bearer "+f.tokens[role])
}

// served lists the types of the CapabilityStatement.
func (f *sharedFixture) served(t *testing.T) map[string]bool {
	t.Helper()
	r := f.fhir.do(t, "GET", "/fhir/R4/metadata", nil)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type string `json:"type"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &cs) != nil || len(cs.Rest) != 1 {
		t.Fatalf("metadata: %d %s", r.status, r.body)
	}
	out := map[string]bool{}
	for _, res := range cs.Rest[0].Resource {
		out[res.Type] = true
	}
	return out
}

// notSupported reports whether r is FHIR's answer for an unsupported type.
func notSupported(r fhirResp) bool {
	var oo fhir.OperationOutcome
	return r.status == 404 && json.Unmarshal(r.body, &oo) == nil && len(oo.Issue) == 1 && oo.Issue[0].Code == "not-supported"
}

// sharedSampleFiles lists the JSON files of the reference data, or skips.
func sharedSampleFiles(t *testing.T) []string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("reference data not found at %s: %v", dir, err)
	}
	var files []string
	for _, sub := range []string{"fhir-r4", "nphies", "hcx"} {
		_ = filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
			// The JWE vector's envelopes are not FHIR.
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") && !strings.Contains(p, "jwe-vector/response_") {
				files = append(files, p)
			}
			return nil
		})
	}
	sort.Strings(files)
	return files
}

func TestFHIRSharedSamplesWithTheDefaultPolicy(t *testing.T) {
	files := sharedSampleFiles(t)
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newSharedFixture(t, db)
		served := f.served(t)
		// A non-resource and a made-up name are unsupported types too.
		for _, typ := range []string{"Money", "Spaceship"} {
			for _, role := range sharedRoles {
				if r := f.do(t, role, "GET", "/fhir/R4/"+typ+"/x1", nil); !notSupported(r) {
					t.Errorf("%s reading a %s got %d %s", role, typ, r.status, r.body)
				}
				if r := f.do(t, role, "GET", "/fhir/R4/"+typ+"?_id=x1", nil); !notSupported(r) {
					t.Errorf("%s searching %s got %d %s", role, typ, r.status, r.body)
				}
			}
		}
		var accepted []*sharedSample
		unsupported := map[string]bool{}
		for _, p := range files {
			raw, _ := os.ReadFile(p)
			env, err := fhir.ReadEnvelope(raw)
			if err != nil || env.ResourceType == "" {
				continue
			}
			typ := env.ResourceType
			name := filepath.Base(p)
			if !served[typ] {
				// Unsupported for everyone, before anything else is
				// looked at: valid or not, create or read.
				unsupported[typ] = true
				for _, role := range sharedRoles {
					if r := f.do(t, role, "POST", "/fhir/R4/"+url.PathEscape(typ), raw); !notSupported(r) {
						t.Errorf("%s: %s creating a %s, which is not served, got %d %s", name, role, typ, r.status, r.body)
					}
					if r := f.do(t, role, "GET", "/fhir/R4/"+url.PathEscape(typ)+"/x1", nil); !notSupported(r) {
						t.Errorf("%s: %s reading a %s, which is not served, got %d %s", name, role, typ, r.status, r.body)
					}
				}
				continue
			}
			if fhir.Validate(raw).HasErrors() || typ == "AuditEvent" {
				// Invalid samples are TestFHIRSamplesOverHTTP's; AuditEvent
				// is the audit log's read-only view.
				continue
			}
			s := &sharedSample{path: name, typ: typ, raw: raw}
			var refusals []string
			for _, role := range sharedRoles {
				r := f.do(t, role, "POST", "/fhir/R4/"+typ, raw)
				if r.status == 201 {
					created, err := fhir.ReadEnvelope(r.body)
					if err != nil {
						t.Errorf("%s: a %s created by %s (201) but not returned: %s", name, typ, role, r.body)
						break
					}
					s.id, s.writer = created.ID, role
					break
				}
				refusals = append(refusals, string(role)+": "+string(r.body))
			}
			if s.id == "" {
				t.Errorf("%s: a valid %s is refused by every role:\n  %s", name, typ, strings.Join(refusals, "\n  "))
				continue
			}
			for _, role := range sharedRoles {
				g := f.do(t, role, "GET", "/fhir/R4/"+typ+"/"+url.PathEscape(s.id), nil)
				if g.status != 200 {
					continue
				}
				want, _ := fhir.SetIDAndMeta(raw, s.id, "1", mustTime(t, g.body))
				if eq, _ := fhir.JSONEqual(want, g.body); eq {
					s.reader, s.stored = role, g.body
					break
				}
			}
			if s.reader == "" {
				t.Errorf("%s: the %s %s created by %s is read back unchanged by no role", name, typ, s.id, s.writer)
				continue
			}
			for _, check := range sharedSampleChecks {
				check(t, f, s)
			}
			accepted = append(accepted, s)
		}

		// No row of the record is readable by no role.
		rows, err := db.Reader().Query(context.Background(), `SELECT type, id FROM resources WHERE deleted = FALSE ORDER BY type, id`)
		if err != nil {
			t.Fatal(err)
		}
		var refs [][2]string
		for rows.Next() {
			var typ, id string
			if err := rows.Scan(&typ, &id); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, [2]string{typ, id})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ref := range refs {
			readable := slices.ContainsFunc(sharedRoles, func(role auth.Role) bool {
				return f.do(t, role, "GET", "/fhir/R4/"+ref[0]+"/"+url.PathEscape(ref[1]), nil).status == 200
			})
			if !readable {
				t.Errorf("%s/%s is stored and readable by no role", ref[0], ref[1])
			}
		}

		byType := map[string]int{}
		for _, s := range accepted {
			byType[s.typ]++
		}
		var kinds []string
		for k := range unsupported {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		t.Logf("%d samples of %d served types accepted and read back; %d rows checked readable; unsupported types answered 404 not-supported: %s",
			len(accepted), len(byType), len(refs), strings.Join(kinds, ", "))
		if len(accepted) < 80 || len(refs) != len(accepted) {
			t.Fatalf("%d samples accepted, %d rows stored: too few samples exercised, or rows the run did not make", len(accepted), len(refs))
		}
	})
}
