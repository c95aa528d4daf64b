package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/httpapi"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

const claimsPayer = "payer-misr@hcx"

// heldPayer acknowledges every message and answers none: the journeys a
// batch starts wait on it until the test ends them.
type heldPayer struct{}

func (heldPayer) Send(_ context.Context, req payer.Request) (payer.Ack, error) {
	return payer.Ack{APICallID: req.IdempotencyKey, CorrelationID: req.CorrelationID, Timestamp: time.Now()}, nil
}

type oneRegistry struct{}

func (oneRegistry) Payers(context.Context) ([]payer.Participant, error) {
	return []payer.Participant{{Code: claimsPayer, Name: "Misr Insurance", Status: "Active", Roles: []string{"payor"}}}, nil
}
func (r oneRegistry) Lookup(ctx context.Context, code string) (payer.Participant, bool, error) {
	ps, _ := r.Payers(ctx)
	if code == ps[0].Code {
		return ps[0], true, nil
	}
	return payer.Participant{}, false, nil
}

// claimsServer is a careflow API over a real database, access policy,
// audit log, engine and revenue cycle, on httptest, accepting one bearer
// token for a billing clerk.
type claimsServer struct {
	url   string
	token string
	svc   *rcm.Service
	guard rcm.Guard
}

func newClaimsServer(t *testing.T, db *store.DB) *claimsServer {
	t.Helper()
	ctx := context.Background()
	mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(ctx, db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := audit.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, db, audit.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	acc := auth.NewAccess(db, nil, nil)
	services := &access.Services{Authorizer: acc.Authorizer, Policy: acc.Policy, Audit: log}
	rec := record.New(db, ring, record.Options{})
	if _, err := engine.MigrateRiver(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	eng, err := engine.New(engine.Config{DB: db, Registry: reg, Ring: ring, HousekeepingInterval: 200 * time.Millisecond, Records: rec})
	if err != nil {
		t.Fatal(err)
	}
	fees := rcm.NewFees(db, nil)
	svc, err := rcm.New(rcm.Config{DB: db, Engine: eng, Records: access.RunRecords{Record: rec, Access: services},
		Terms: terminology.NewService(db, terminology.Options{}), Payer: heldPayer{}, Directory: oneRegistry{}, Fees: fees,
		Provider: rcm.Provider{Code: "provider-1@hcx", Name: "Test Hospital"}, Blind: ring})
	if err != nil {
		t.Fatal(err)
	}
	if err := rcm.Register(reg, svc); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = eng.Stop(sctx)
	})
	clerk := &auth.Principal{Subject: "clerk-1", Kind: auth.KindUser, Role: auth.Billing, Scopes: []string{"user/*.cruds"}}
	const token = "test-token-of-the-billing-clerk"
	srv := httpapi.New(httpapi.Options{DB: db, Access: acc, Audit: log, Engine: eng,
		RCM: svc, Fees: fees, Batches: rcm.NewBatches(db, nil), Payers: oneRegistry{},
		// The test's authenticator: the one token is the clerk.
		TestPrincipal: func(r *http.Request) *auth.Principal {
			if r.Header.Get("Authorization") == "Bearer "+token {
				return clerk
			}
			return nil
		}})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &claimsServer{url: ts.URL, token: token, svc: svc, guard: services.For(access.Caller{Principal: clerk, RequestID: "test"})}
}

func claimEntry(i int, nationalID, payerCode string) string {
	return fmt.Sprintf(`{"kind":"standard","patient":{"national_id":%q,"family":"حسن-%d","given":["Mona"],"gender":"female"},"encounter":{"start":"2026-03-02"},"diagnosis_codes":["E11.9"],"procedure_codes":["99213"],"insurance":{"payer":%q,"member_id":"M-%d"}}`,
		nationalID, i, payerCode, i)
}

// syncBuffer is a strings.Builder the command and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestClaimsBatchSubmitsAndFollowsTheJourneys(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newClaimsServer(t, db)
		dir := t.TempDir()
		file := filepath.Join(dir, "claims.ndjson")
		nids := []string{"29001011234567", "28502151234561", "29911221234568"}
		var lines []string
		for i, nid := range nids {
			lines = append(lines, claimEntry(i, nid, claimsPayer))
		}
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- claimsBatch(ctx, ClientConfig{Server: s.url, Token: s.token}, file, 20*time.Millisecond, &stdout, &stderr, false)
		}()
		// The journeys wait on the payer; billing cancels them one by one
		// and the command follows them to the end.
		var ids []string
		deadline := time.Now().Add(20 * time.Second)
		for len(ids) < 3 {
			page, err := s.svc.Journeys(ctx, s.guard, rcm.JourneyFilter{Payer: claimsPayer})
			if err != nil {
				t.Fatal(err)
			}
			ids = ids[:0]
			for _, j := range page.Journeys {
				ids = append(ids, j.ID)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the batch started %d journeys; stderr %s", len(ids), stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case code := <-done:
			t.Fatalf("the command ended (%d) before the journeys did: %s", code, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		for _, id := range ids {
			// A journey still moving between steps changes under the
			// cancel (a stale version): billing tries again.
			for try := 0; ; try++ {
				_, err := s.svc.Cancel(ctx, s.guard, id, "duplicate_order")
				if err == nil {
					break
				}
				if try == 100 || !(errs.Is(err, errs.PreconditionFailed) || errs.Is(err, errs.Conflict)) {
					t.Fatalf("cancel %s: %v", id, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		var code int
		select {
		case code = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the command never ended: %s", stderr.String())
		}
		out := stdout.String()
		if code != 0 || !strings.Contains(out, "[####################] 3/3 final · cancelled 3") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, stderr.String())
		}
		if !strings.Contains(stderr.String(), ": 3 entries, 3 journeys started, 0 refused\n") {
			t.Errorf("stderr %s", stderr.String())
		}

		// Run again on the same file: the same batch, nothing started twice.
		var out2, err2 syncBuffer
		if code := claimsBatch(ctx, ClientConfig{Server: s.url, Token: s.token}, file, 20*time.Millisecond, &out2, &err2, false); code != 0 {
			t.Fatalf("second run: %d %s", code, err2.String())
		}
		first := strings.Fields(out)[1]
		if second := strings.Fields(out2.String())[1]; first != second {
			t.Errorf("the second run followed batch %s, the first %s", second, first)
		}
		page, _ := s.svc.Journeys(ctx, s.guard, rcm.JourneyFilter{Payer: claimsPayer})
		if len(page.Journeys) != 3 {
			t.Errorf("%d journeys after running the file twice", len(page.Journeys))
		}
	})
}

func TestClaimsBatchListsRefusalsAndExits1(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s := newClaimsServer(t, db)
		file := filepath.Join(t.TempDir(), "claims.json")
		body := "[" + claimEntry(0, "29001011234567", "nobody@hcx") + "," + `{"kind":"standard","colour":"blue"}` + "]"
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr strings.Builder
		code := claimsBatch(context.Background(), ClientConfig{Server: s.url, Token: s.token}, file, 20*time.Millisecond, &stdout, &stderr, false)
		out := stdout.String()
		if code != 1 || !strings.Contains(out, "] 2/2 final · refused 2") ||
			!strings.Contains(out, "entry 0: refused: insurance.payer: ") || !strings.Contains(out, "entry 1: refused: colour: is not a field of a journey request") ||
			strings.Contains(out, "blue") || strings.Contains(out, "nobody") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, stderr.String())
		}
		// A wrong token is the server's refusal, in one sentence.
		stdout.Reset()
		stderr.Reset()
		code = claimsBatch(context.Background(), ClientConfig{Server: s.url, Token: "wrong"}, file, time.Millisecond, &stdout, &stderr, false)
		if code != 1 || !strings.Contains(stderr.String(), "the server answered 401") {
			t.Errorf("wrong token: %d %s", code, stderr.String())
		}
	})
}

func TestClaimsBatchMistakesExit2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{}, nil, "careflow claims: name a subcommand"},
		{[]string{"send", "f"}, nil, `careflow claims: unknown subcommand "send"`},
		{[]string{"batch"}, nil, "careflow claims batch: takes one file"},
		{[]string{"batch", "f"}, nil, "careflow claims batch: --server is required"},
		{[]string{"batch", "f", "--server", "http://127.0.0.1:1"}, nil, "careflow claims batch: --token is required"},
		{[]string{"batch", "f", "--server", "ftp://x"}, nil, "careflow claims: flag --server=ftp://x is invalid"},
		{[]string{"batch", "f"}, map[string]string{"CAREFLOW_SERVER": "http://127.0.0.1:1/api"}, "careflow claims: environment variable CAREFLOW_SERVER"},
	}
	for _, c := range cases {
		var stdout, stderr strings.Builder
		code := run(context.Background(), append([]string{"claims"}, c.args...), &stdout, &stderr, func(k string) string { return c.env[k] })
		if code != 2 || !strings.HasPrefix(stderr.String(), c.want) {
			t.Errorf("claims %v: exit %d, stderr %q, want %q", c.args, code, stderr.String(), c.want)
		}
	}
}

func TestBatchLineShowsTheBarAndTheStates(t *testing.T) {
	t.Parallel()
	st := rcm.BatchStatus{Total: 10_000, Refused: 12, Final: 4988, States: map[string]int{"paid": 4000, "denied": 988, "running": 5000}}
	if got, want := batchLine(&st), "[##########..........] 5,000/10,000 final · denied 988 · paid 4,000 · running 5,000 · refused 12"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
