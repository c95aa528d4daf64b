package audit

import (
	"net/url"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

func TestFilterFromQuery(t *testing.T) {
	t.Parallel()
	f, err := FilterFromQuery(url.Values{
		"since": {"2026-03-01T00:00:00Z"}, "until": {"2026-03-02T00:00:00+01:00"}, "patient": {"pat-1"},
		"actor": {"u1"}, "resource_type": {"Patient"}, "resource_id": {"pat-1"}, "action": {"read"},
		"outcome": {"denied"}, "severity": {"high"}, "request_id": {"r-1"}, "order": {"newest"},
		"after": {"40"}, "limit": {"20"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Filter{
		Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC),
		PatientID: "pat-1", Actor: "u1", ResourceType: "Patient", ResourceID: "pat-1", Action: ActionRead,
		Outcome: OutcomeDenied, Severity: SeverityHigh, RequestID: "r-1", Newest: true, Limit: 20,
	}
	if f.After == nil || *f.After != 40 {
		t.Fatalf("after = %v, want 40", f.After)
	}
	f.After = nil
	if f != want {
		t.Fatalf("filter %+v\nwant   %+v", f, want)
	}
	bad := []struct {
		q     url.Values
		field string
	}{
		{url.Values{"patinet": {"x"}}, "patinet"},
		{url.Values{"patient": {"a", "b"}}, "patient"},
		{url.Values{"since": {"yesterday"}}, "since"},
		{url.Values{"since": {"2026-03-02T00:00:00Z"}, "until": {"2026-03-01T00:00:00Z"}}, "until"},
		{url.Values{"outcome": {"ok"}}, "outcome"},
		{url.Values{"severity": {"critical"}}, "severity"},
		{url.Values{"order": {"random"}}, "order"},
		{url.Values{"after": {"-1"}}, "after"},
		{url.Values{"limit": {"0"}}, "limit"},
		{url.Values{"limit": {"100000"}}, "limit"},
	}
	for _, b := range bad {
		_, err := FilterFromQuery(b.q)
		if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != b.field {
			t.Errorf("FilterFromQuery(%v) = %v, want invalid in %s", b.q, err, b.field)
		}
	}
}

func FuzzFilterFromQuery(f *testing.F) {
	f.Add("patient=pat-1&limit=10&order=newest")
	f.Add("since=2026-03-01T00:00:00Z&until=2026-03-02T00:00:00Z&after=9")
	f.Add("severity=high&severity=info")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, err := FilterFromQuery(q)
		if err != nil {
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("error of kind %s: %v", errs.KindOf(err), err)
			}
			return
		}
		if fl.Limit < 0 || fl.Limit > MaxListLimit {
			t.Fatalf("accepted limit %d", fl.Limit)
		}
	})
}
