package hcx

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/payer"
)

// A gateway reads the headers it routes by without the recipient's key,
// and refuses what is not a well-formed message with the protocol's code.
func TestPeekHeaderReadsTheHeadersWithoutTheKey(t *testing.T) {
	t.Parallel()
	h := sampleHeader()
	compact, err := Encrypt(h, []byte(`{"resourceType":"Bundle"}`), &testKeys()[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PeekHeader(compact)
	if err != nil {
		t.Fatal(err)
	}
	if got.SenderCode != h.SenderCode || got.RecipientCode != h.RecipientCode || got.APICallID != h.APICallID ||
		got.CorrelationID != h.CorrelationID || got.WorkflowID != h.WorkflowID || !got.Timestamp.Equal(h.Timestamp) {
		t.Fatalf("peeked %+v, sent %+v", got, h)
	}
	noSender := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RSA-OAEP-256","enc":"A256GCM","x-hcx-recipient_code":"p"}`))
	for name, c := range map[string]struct{ compact, code string }{
		"not five parts":             {"a.b.c", ErrInvalidPayload},
		"a header that is not JSON":  {"bm90IGpzb24.b.c.d.e", ErrInvalidPayload},
		"a missing mandatory header": {noSender + ".b.c.d.e", ErrMandatoryHeaderMissing},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := PeekHeader(c.compact)
			var pe *payer.Error
			if !errors.As(err, &pe) || pe.Code != c.code || strings.Contains(pe.Message, c.compact) {
				t.Fatalf("got %v, want %s", err, c.code)
			}
		})
	}
}
