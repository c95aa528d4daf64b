package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/payer/hcx"
)

const hcxVector = "../../../shared/data/hcx/jwe-vector"

func runHcxCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestHcxDecryptOpensTheRecordedVector(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile(filepath.Join(hcxVector, "response_incoming.json"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("reference data ../shared/data is absent")
	}
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHcxCmd(t, "hcx", "decrypt", "--key", filepath.Join(hcxVector, "x509-private-key.pem"),
		filepath.Join(hcxVector, "response_outgoing.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var want struct {
		Headers map[string]any `json:"headers"`
		Payload any            `json:"payload"`
	}
	if err := json.Unmarshal(in, &want); err != nil {
		t.Fatal(err)
	}
	var gotPayload, gotHeader any
	if err := json.Unmarshal([]byte(stdout), &gotPayload); err != nil {
		t.Fatalf("stdout is not the JSON payload: %v", err)
	}
	if !reflect.DeepEqual(gotPayload, want.Payload) {
		t.Error("the payload differs from response_incoming.json's")
	}
	if err := json.Unmarshal([]byte(stderr), &gotHeader); err != nil {
		t.Fatalf("stderr is not the JSON header: %v: %s", err, stderr)
	}
	h := gotHeader.(map[string]any)
	for _, k := range []string{hcx.HeaderSenderCode, hcx.HeaderRecipientCode, hcx.HeaderAPICallID, hcx.HeaderCorrelationID} {
		if h[k] != want.Headers[k] {
			t.Errorf("%s = %v, want %v", k, h[k], want.Headers[k])
		}
	}
}

func TestHcxEncryptThenDecryptThroughTheCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := hcx.DevIdentity(dir, "payer.sim@hcx", time.Now()); err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(payload, []byte(`{"resourceType":"Bundle","type":"collection"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body, stderr := runHcxCmd(t, "hcx", "encrypt", "--cert", filepath.Join(dir, hcx.DevCertFile),
		"--header", "sender_code=provider.careflow@hcx", "--header", "x-hcx-recipient_code=payer.sim@hcx",
		"--header", "correlation_id=277fb6d0-a63e-4885-a8d0-67672f6ee6e9", "--header", "status=request.initiated",
		payload)
	if code != 0 {
		t.Fatalf("encrypt: exit %d: %s", code, stderr)
	}
	sealed := filepath.Join(dir, "message.json")
	if err := os.WriteFile(sealed, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, hdr := runHcxCmd(t, "hcx", "decrypt", "--key", filepath.Join(dir, hcx.DevKeyFile), sealed)
	if code != 0 {
		t.Fatalf("decrypt: exit %d: %s", code, hdr)
	}
	if strings.TrimSpace(out) != `{"resourceType":"Bundle","type":"collection"}` {
		t.Errorf("payload %q", out)
	}
	var h map[string]any
	if err := json.Unmarshal([]byte(hdr), &h); err != nil {
		t.Fatal(err)
	}
	if h[hcx.HeaderSenderCode] != "provider.careflow@hcx" || h[hcx.HeaderStatus] != "request.initiated" ||
		h[hcx.HeaderTimestamp] == nil || h[hcx.HeaderAPICallID] == nil {
		t.Errorf("header %v", h)
	}

	// A mandatory header missing: refused with the protocol's code.
	code, _, stderr = runHcxCmd(t, "hcx", "encrypt", "--cert", filepath.Join(dir, hcx.DevCertFile),
		"--header", "sender_code=a", payload)
	if code != 2 || !strings.Contains(stderr, hcx.ErrMandatoryHeaderMissing) {
		t.Errorf("a missing header: exit %d: %s", code, stderr)
	}
	// Another key: refused.
	other := t.TempDir()
	if _, _, err := hcx.DevIdentity(other, "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runHcxCmd(t, "hcx", "decrypt", "--key", filepath.Join(other, hcx.DevKeyFile), sealed)
	if code != 1 || !strings.Contains(stderr, hcx.ErrInvalidEncryption) {
		t.Errorf("a wrong key: exit %d: %s", code, stderr)
	}
	if code, _, _ := runHcxCmd(t, "hcx", "sign"); code != 2 {
		t.Errorf("an unknown subcommand: exit %d", code)
	}
}
