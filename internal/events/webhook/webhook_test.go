package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events/webhook"
)

func TestEventTypesMatchKindsPrefixesAndAll(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		types []string
		kind  string
		want  bool
	}{
		{[]string{"rcm.claim.status_changed"}, "rcm.claim.status_changed", true},
		{[]string{"rcm.claim.status_changed"}, "rcm.journey.status_changed", false},
		{[]string{"clinical.*"}, "clinical.step.completed", true},
		{[]string{"clinical.*"}, "clinicalx.step", false},
		{[]string{"clinical.*"}, "clinical", false},
		{[]string{"*"}, "record.created", true},
		{[]string{"record.created", "rcm.*"}, "rcm.journey.status_changed", true},
	} {
		if got := webhook.Matches(c.types, c.kind); got != c.want {
			t.Errorf("Matches(%v, %s) = %v, want %v", c.types, c.kind, got, c.want)
		}
	}
}

// A receiver's check takes a delivery signed now and refuses a tampered
// body, another secret, a replay older than its tolerance, a timestamp
// from the future beyond it, and a missing timestamp.
func TestVerifyRefusesTamperingAndReplays(t *testing.T) {
	t.Parallel()
	secret, body := []byte("a secret of at least 24 characters"), []byte(`{"events":[]}`)
	now := time.Unix(1767225600, 0)
	signed := func(ts time.Time, b []byte, key []byte) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(webhook.HeaderSignature, webhook.Sign(key, ts.Unix(), b))
		return h
	}
	if err := webhook.Verify(secret, signed(now, body, secret), body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("a fresh delivery: %v", err)
	}
	for name, c := range map[string]struct {
		h    http.Header
		body []byte
		want error
	}{
		"tampered body":   {signed(now, body, secret), []byte(`{"events":[1]}`), webhook.ErrNoSignature},
		"another secret":  {signed(now, body, []byte("another secret entirely here")), body, webhook.ErrNoSignature},
		"a replay":        {signed(now.Add(-6*time.Minute), body, secret), body, webhook.ErrStale},
		"from the future": {signed(now.Add(6*time.Minute), body, secret), body, webhook.ErrStale},
		"no timestamp":    {http.Header{webhook.HeaderSignature: {webhook.Sign(secret, now.Unix(), body)}}, body, webhook.ErrBadTimestamp},
	} {
		if err := webhook.Verify(secret, c.h, c.body, now, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
