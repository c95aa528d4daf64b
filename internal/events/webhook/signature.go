package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery (README: "Webhooks").
const (
	// HeaderWebhookID names the webhook the delivery is for.
	HeaderWebhookID = "Careflow-Webhook-Id"
	// HeaderEventIDs lists the ids of the events in the body, in order,
	// comma-separated: a receiver that has seen an id has that event.
	HeaderEventIDs = "Careflow-Event-Ids"
	// HeaderTimestamp is when the delivery was signed, in Unix seconds.
	HeaderTimestamp = "Careflow-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, keyed with the
	// webhook's secret, of the timestamp, a dot, and the body's bytes.
	HeaderSignature = "Careflow-Signature"
)

// Sign returns the signature header's value for a body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: no valid signature")
	ErrStale        = errors.New("webhook: the timestamp is outside the tolerance (a replay?)")
	ErrBadTimestamp = errors.New("webhook: the timestamp is missing or not Unix seconds")
)

// Verify is the receiver's check of a delivery: the timestamp is within
// tolerance of now (either way), and one of the signature header's v1=
// values is the body's signature at that timestamp. A receiver keeps the
// event ids it took for at least the tolerance, so a replay inside the
// window is a duplicate it ignores.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := []byte(Sign(secret, ts, body))
	for _, v := range strings.Split(h.Get(HeaderSignature), ",") {
		if hmac.Equal([]byte(strings.TrimSpace(v)), want) {
			return nil
		}
	}
	return ErrNoSignature
}
