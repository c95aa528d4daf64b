package hcx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/careflow/careflow/internal/payer"
)

const vectorDir = "../../../../shared/data/hcx/jwe-vector"

func readShared(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("reference data %s is absent (../shared/data not mounted)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testKeys are generated once per test binary: RSA-2048 generation is the
// slow part of these tests.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	var keys []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys = append(keys, k)
	}
	return keys
})

func sampleHeader() Header {
	return Header{
		SenderCode:    "provider.careflow@hcx",
		RecipientCode: "payer.sim@hcx",
		APICallID:     APICallID("run-1/submit/1"),
		CorrelationID: "277fb6d0-a63e-4885-a8d0-67672f6ee6e9",
		WorkflowID:    "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Timestamp:     time.Date(2026, 12, 7, 9, 30, 0, 123e6, time.FixedZone("", 2*3600)),
		Status:        payer.StatusRequestInitiated,
	}
}

func TestTheRecordedVectorDecryptsToItsRecordedHeadersAndPayload(t *testing.T) {
	t.Parallel()
	out := readShared(t, filepath.Join(vectorDir, "response_outgoing.json"))
	in := readShared(t, filepath.Join(vectorDir, "response_incoming.json"))
	key, err := ParsePrivateKeyPEM(readShared(t, filepath.Join(vectorDir, "x509-private-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := ParseBody(out)
	if err != nil {
		t.Fatal(err)
	}
	// The current key is another one: rotation means trying each.
	h, payload, err := Decrypt(compact, []*rsa.PrivateKey{testKeys()[0], key})
	if err != nil {
		t.Fatalf("decrypt the vector: %v", err)
	}
	var want struct {
		Headers map[string]string `json:"headers"`
		Payload json.RawMessage   `json:"payload"`
	}
	if err := json.Unmarshal(in, &want); err != nil {
		t.Fatal(err)
	}
	if h.SenderCode != want.Headers[HeaderSenderCode] || h.RecipientCode != want.Headers[HeaderRecipientCode] ||
		h.APICallID != want.Headers[HeaderAPICallID] || h.CorrelationID != want.Headers[HeaderCorrelationID] {
		t.Errorf("headers = %+v, want %v", h, want.Headers)
	}
	wantTS, _ := time.Parse(time.RFC3339, want.Headers[HeaderTimestamp])
	if !h.Timestamp.Equal(wantTS) {
		t.Errorf("timestamp = %v, want %v", h.Timestamp, wantTS)
	}
	if !jsonEqual(t, payload, want.Payload) {
		t.Errorf("payload differs from response_incoming.json's")
	}

	// The vector's certificate expired in 2022: it certifies the key, but a
	// sender must not encrypt to it now.
	cert, err := ParseCertificatePEM(readShared(t, filepath.Join(vectorDir, "x509-self-signed-certificate.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RecipientKey(cert, time.Now()); err == nil {
		t.Error("RecipientKey accepted an expired certificate")
	}
	if pub, err := RecipientKey(cert, cert.NotBefore.Add(time.Hour)); err != nil || !pub.Equal(&key.PublicKey) {
		t.Errorf("the vector's certificate, within its validity, does not give the vector's key: %v", err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return reflect.DeepEqual(x, y)
}

func TestEncryptThenDecryptKeepsHeadersAndPayload(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	h := sampleHeader()
	h.DebugFlag = "Info"
	h.DebugDetails = json.RawMessage(`{"code":"X","message":"m"}`)
	payload := []byte(`{"resourceType":"Bundle","type":"collection"}`)
	compact, err := Encrypt(h, payload, &keys[1].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	got, plain, err := Decrypt(compact, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, payload) {
		t.Errorf("payload = %s", plain)
	}
	if !got.Timestamp.Equal(h.Timestamp) {
		t.Errorf("timestamp = %v, want %v", got.Timestamp, h.Timestamp)
	}
	got.Timestamp, h.Timestamp = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, h) {
		t.Errorf("header = %+v\nwant %+v", got, h)
	}
	prot := decodeProtected(t, compact)
	if prot["alg"] != "RSA-OAEP-256" || prot["enc"] != "A256GCM" {
		t.Errorf("alg/enc = %v/%v", prot["alg"], prot["enc"])
	}
	if ts, _ := prot[HeaderTimestamp].(string); ts != "2026-12-07T09:30:00.123+02:00" {
		t.Errorf("timestamp written as %q, want ISO-8601 with the zone", ts)
	}
}

func decodeProtected(t *testing.T, compact string) map[string]any {
	t.Helper()
	first, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(first)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTimestampsAreReadAsISOOrEpochMilliseconds(t *testing.T) {
	t.Parallel()
	want := time.Date(2023, 8, 17, 13, 13, 48, 0, time.UTC)
	for _, raw := range []string{
		`"2023-08-17T18:43:48+05:30"`, `"2023-08-17T13:13:48Z"`, `"2023-08-17T18:43:48.000+0530"`,
		`1692278028000`, `"1692278028000"`,
	} {
		got, err := ParseTimestamp(json.RawMessage(raw))
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTimestamp(%s) = %v, %v; want %v", raw, got, err, want)
		}
	}
	for _, raw := range []string{`""`, `"yesterday"`, `"2023-08-17T18:43:48"`, `true`, `null`, `-5`} {
		if _, err := ParseTimestamp(json.RawMessage(raw)); err == nil {
			t.Errorf("ParseTimestamp(%s) accepted", raw)
		}
	}
}

func TestAPICallIDIsADeterministicUUIDOfTheKey(t *testing.T) {
	t.Parallel()
	a, b, c := APICallID("run-1/step/1"), APICallID("run-1/step/1"), APICallID("run-1/step/2")
	if a != b || a == c || !isUUID(a) || a[14] != '5' {
		t.Errorf("APICallID: %s %s %s", a, b, c)
	}
}

func TestHeaderValidationRefusesWithTheProtocolCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(*Header)
		code   string
	}{
		{"a missing sender", func(h *Header) { h.SenderCode = "" }, ErrMandatoryHeaderMissing},
		{"a missing recipient", func(h *Header) { h.RecipientCode = "" }, ErrMandatoryHeaderMissing},
		{"a missing api_call_id", func(h *Header) { h.APICallID = "" }, ErrMandatoryHeaderMissing},
		{"a missing correlation_id", func(h *Header) { h.CorrelationID = "" }, ErrMandatoryHeaderMissing},
		{"a missing timestamp", func(h *Header) { h.Timestamp = time.Time{} }, ErrMandatoryHeaderMissing},
		{"an api_call_id that is not a UUID", func(h *Header) { h.APICallID = "call-1" }, ErrInvalidAPICallID},
		{"a correlation_id that is not a UUID", func(h *Header) { h.CorrelationID = "x" }, ErrInvalidCorrelationID},
		{"a workflow_id that is not a UUID", func(h *Header) { h.WorkflowID = "wf" }, ErrInvalidWorkflowID},
		{"an unknown status", func(h *Header) { h.Status = "response.maybe" }, ErrInvalidStatus},
		{"response.error without details", func(h *Header) { h.Status = payer.StatusResponseError }, ErrInvalidErrorDetails},
		{"error details that are not an object", func(h *Header) { h.ErrorDetails = json.RawMessage(`"x"`) }, ErrInvalidErrorDetails},
		{"an unknown debug flag", func(h *Header) { h.DebugFlag = "Trace" }, ErrInvalidDebugFlag},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sampleHeader()
			tc.change(&h)
			var pe *payer.Error
			if err := h.Validate(); !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("Validate = %v, want %s", err, tc.code)
			}
			if _, err := Encrypt(h, []byte(`{}`), &testKeys()[0].PublicKey); err == nil {
				t.Fatal("Encrypt sent a header the protocol refuses")
			}
		})
	}
}

// craft builds a JWE with go-jose directly, for the algorithms careflow
// refuses to read.
func craft(t *testing.T, alg jose.KeyAlgorithm, enc jose.ContentEncryption, key any, h Header) string {
	t.Helper()
	opts := &jose.EncrypterOptions{}
	for k, v := range h.Fields() {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Encrypt([]byte(`{"resourceType":"Bundle"}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecryptRefusesWhatTheProtocolDoesNotAllow(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	h := sampleHeader()
	good, err := Encrypt(h, []byte(`{"resourceType":"Bundle"}`), &keys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tamper := func(i int) string {
		p := append([]string(nil), parts...)
		b, _ := base64.RawURLEncoding.DecodeString(p[i])
		b[len(b)/2] ^= 0x01
		p[i] = base64.RawURLEncoding.EncodeToString(b)
		return strings.Join(p, ".")
	}
	unsignedNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","enc":"A256GCM"}`)) + ".." + parts[2] + "." + parts[3] + "." + parts[4]
	secret := make([]byte, 32)
	missing := h
	missing.RecipientCode = ""
	oaepMissing := craft(t, jose.RSA_OAEP, jose.A256GCM, &keys[0].PublicKey, missing)

	cases := []struct {
		name    string
		compact string
		code    string
	}{
		{"alg none", unsignedNone, ErrInvalidPayload},
		{"alg dir", craft(t, jose.DIRECT, jose.A256GCM, secret, h), ErrInvalidPayload},
		{"RSA1_5 key encryption", craft(t, jose.RSA1_5, jose.A256GCM, &keys[0].PublicKey, h), ErrInvalidPayload},
		{"A128GCM content encryption", craft(t, jose.RSA_OAEP_256, jose.A128GCM, &keys[0].PublicKey, h), ErrInvalidPayload},
		{"A256CBC-HS512 content encryption", craft(t, jose.RSA_OAEP_256, jose.A256CBC_HS512, &keys[0].PublicKey, h), ErrInvalidPayload},
		{"a tampered ciphertext", tamper(3), ErrInvalidEncryption},
		{"a tampered tag", tamper(4), ErrInvalidEncryption},
		{"a tampered protected header", tamper(0), ErrInvalidEncryption}, // the header is the AEAD's associated data
		{"a key that is not ours", craft(t, jose.RSA_OAEP_256, jose.A256GCM, &keys[2].PublicKey, h), ErrInvalidEncryption},
		{"a missing mandatory header", oaepMissing, ErrMandatoryHeaderMissing},
		{"not a JWE", "hello", ErrInvalidPayload},
		{"a JWS", "a.b.c", ErrInvalidPayload},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, plain, err := Decrypt(tc.compact, keys[:2])
			var pe *payer.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("Decrypt = %v, want %s", err, tc.code)
			}
			if plain != nil {
				t.Fatal("a refusal returned a payload")
			}
		})
	}
	// RSA-OAEP (SHA-1) with A256GCM is read, like RSA-OAEP-256.
	if _, _, err := Decrypt(craft(t, jose.RSA_OAEP, jose.A256GCM, &keys[0].PublicKey, h), keys[:1]); err != nil {
		t.Fatalf("RSA-OAEP refused: %v", err)
	}
}

func TestParseBody(t *testing.T) {
	t.Parallel()
	if s, err := ParseBody(MarshalBody("a.b.c.d.e")); err != nil || s != "a.b.c.d.e" {
		t.Fatalf("ParseBody(MarshalBody) = %q, %v", s, err)
	}
	for _, raw := range []string{``, `[]`, `{}`, `{"payload": 5}`, `{"payload": ""}`, `"a.b.c.d.e"`} {
		var pe *payer.Error
		if _, err := ParseBody([]byte(raw)); !errors.As(err, &pe) || pe.Code != ErrInvalidPayload {
			t.Errorf("ParseBody(%s) = %v, want %s", raw, err, ErrInvalidPayload)
		}
	}
}

// nodeJose returns the folder holding the npm jose package, installing it
// (once, into the .gitignored testdata/node/node_modules) when absent. The
// test skips, saying why, when node, npm or the package are unavailable.
func nodeJose(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the independent JOSE check needs it")
	}
	dir, err := filepath.Abs("testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	nodeInstall.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); err == nil {
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			nodeInstallErr = "npm is not installed"
			return
		}
		// Offline, npm retries for minutes: give it one.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "jose@6")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeInstallErr = "npm install jose failed: " + strings.TrimSpace(string(out))
		}
	})
	if nodeInstallErr != "" {
		t.Skip(nodeInstallErr)
	}
	return dir
}

var (
	nodeInstall    sync.Once
	nodeInstallErr string
)

func runNode(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("node", append([]string{filepath.Join(dir, "interop.mjs")}, args...)...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %v: %v: %s", args, err, stderr.String())
	}
	return out
}

func TestAnIndependentJOSEImplementationReadsAndWritesOurMessages(t *testing.T) {
	t.Parallel()
	dir := nodeJose(t)
	key := testKeys()[0]
	now := time.Now()
	cert, err := selfSign(key, "provider.careflow@hcx", now)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	keyFile, certFile := filepath.Join(tmp, "key.pem"), filepath.Join(tmp, "cert.pem")
	if err := os.WriteFile(keyFile, EncodePrivateKeyPEM(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, EncodeCertificatePEM(cert), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("careflow encrypts, jose decrypts", func(t *testing.T) {
		h := sampleHeader()
		payload := []byte(`{"resourceType":"Bundle","type":"collection","entry":[]}`)
		pub, err := RecipientKey(cert, now)
		if err != nil {
			t.Fatal(err)
		}
		compact, err := Encrypt(h, payload, pub)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Header  map[string]any `json:"header"`
			Payload string         `json:"payload"`
		}
		if err := json.Unmarshal(runNode(t, dir, []byte(compact), "decrypt", keyFile), &got); err != nil {
			t.Fatal(err)
		}
		if got.Payload != string(payload) {
			t.Errorf("jose read payload %q", got.Payload)
		}
		if got.Header[HeaderAPICallID] != h.APICallID || got.Header[HeaderSenderCode] != h.SenderCode ||
			got.Header["alg"] != "RSA-OAEP-256" || got.Header["enc"] != "A256GCM" {
			t.Errorf("jose read header %v", got.Header)
		}
	})

	t.Run("jose encrypts, careflow decrypts", func(t *testing.T) {
		hdr := map[string]any{
			HeaderSenderCode: "payer.sim@hcx", HeaderRecipientCode: "provider.careflow@hcx",
			HeaderAPICallID: "5cbe7122-a1e4-4528-bb4f-b4cefd9d0374", HeaderCorrelationID: "277fb6d0-a63e-4885-a8d0-67672f6ee6e9",
			HeaderTimestamp: 1692278028000, HeaderStatus: payer.StatusResponseComplete,
		}
		hb, _ := json.Marshal(hdr)
		hfile := filepath.Join(tmp, "header.json")
		if err := os.WriteFile(hfile, hb, 0o600); err != nil {
			t.Fatal(err)
		}
		payload := []byte(`{"resourceType":"Bundle","type":"collection"}`)
		compact := runNode(t, dir, payload, "encrypt", certFile, hfile)
		h, plain, err := Decrypt(string(compact), testKeys())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, payload) {
			t.Errorf("payload %s", plain)
		}
		if h.SenderCode != "payer.sim@hcx" || h.Status != payer.StatusResponseComplete || h.Timestamp.UnixMilli() != 1692278028000 {
			t.Errorf("header %+v", h)
		}
	})
}

func TestDevIdentityIsWrittenOwnerOnlyAndReused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	now := time.Now()
	k1, c1, err := DevIdentity(dir, "provider.careflow@hcx", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{DevKeyFile, DevCertFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if c1.Subject.CommonName != "provider.careflow@hcx" || k1.N.BitLen() != 2048 {
		t.Errorf("identity: %s, %d bits", c1.Subject.CommonName, k1.N.BitLen())
	}
	k2, c2, err := DevIdentity(dir, "provider.careflow@hcx", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Equal(k1) || !bytes.Equal(c2.Raw, c1.Raw) {
		t.Error("a second start generated a new identity instead of reusing the first")
	}
	// Near the certificate's end, the same key is certified again.
	k3, c3, err := DevIdentity(dir, "provider.careflow@hcx", c1.NotAfter.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !k3.Equal(k1) || bytes.Equal(c3.Raw, c1.Raw) {
		t.Error("an expiring certificate was not renewed for the same key")
	}
}

func TestAnIdentityFromFilesKeepsItsRotationOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newest, older := testKeys()[0], testKeys()[1]
	cert, err := selfSign(newest, "provider.careflow@hcx", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keysFile, oldFile, certFile := filepath.Join(dir, "new.pem"), filepath.Join(dir, "old.pem"), filepath.Join(dir, "cert.pem")
	_ = os.WriteFile(keysFile, EncodePrivateKeyPEM(newest), 0o600)
	_ = os.WriteFile(oldFile, EncodePrivateKeyPEM(older), 0o600)
	_ = os.WriteFile(certFile, EncodeCertificatePEM(cert), 0o600)
	id, err := LoadIdentity("provider.careflow@hcx", []string{keysFile, oldFile}, certFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Keys) != 2 || !id.Keys[0].Equal(newest) || !id.Keys[1].Equal(older) {
		t.Fatal("the keys are not newest first")
	}
	// A message encrypted for the older key (a sender with a stale
	// certificate) still opens.
	compact, err := Encrypt(sampleHeader(), []byte(`{}`), &older.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Decrypt(compact, id.Keys); err != nil {
		t.Fatalf("a message for the older key: %v", err)
	}
	// The certificate must certify the newest key.
	if _, err := LoadIdentity("provider.careflow@hcx", []string{oldFile, keysFile}, certFile); err == nil {
		t.Error("an identity whose certificate is not the newest key's was accepted")
	}
	dev, err := LoadDevIdentity(filepath.Join(dir, "dev"), "provider.careflow@hcx", time.Now())
	if err != nil || dev.Validate() != nil {
		t.Errorf("development identity: %v", err)
	}
}
