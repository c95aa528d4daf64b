package hcx

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/careflow/careflow/internal/payer"
)

// What careflow writes, and what it reads. RSA-OAEP (SHA-1) is what the
// HCX specification names and what older participants send; RSA-OAEP-256
// is what the SDKs and national exchanges use, and all careflow writes.
// Nothing else is read: no "none", no "dir", no key wrapping by a shared
// secret, no content encryption but A256GCM.
var (
	readKeyAlgorithms = []jose.KeyAlgorithm{jose.RSA_OAEP_256, jose.RSA_OAEP}
	readEncryptions   = []jose.ContentEncryption{jose.A256GCM}
)

// maxCompact bounds a compact JWE careflow parses (the handler limits the
// body before; this guards the codec's other callers).
const maxCompact = 8 << 20

// Encrypt seals payload for the recipient as a compact JWE: RSA-OAEP-256
// key encryption, A256GCM content encryption, the x-hcx-* headers in the
// protected header. recipient is the recipient's *rsa.PublicKey or its
// *x509.Certificate (whose validity the caller has checked: see
// RecipientKey). The header is validated first: careflow never sends a
// message its recipient must refuse.
func Encrypt(h Header, payload []byte, recipient crypto.PublicKey) (string, error) {
	if err := h.Validate(); err != nil {
		return "", err
	}
	if c, ok := recipient.(*x509.Certificate); ok {
		recipient = c.PublicKey
	}
	pub, ok := recipient.(*rsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("hcx: encrypt: the recipient's key is not RSA")
	}
	if pub.N.BitLen() < 2048 {
		return "", fmt.Errorf("hcx: encrypt: the recipient's RSA key is shorter than 2048 bits")
	}
	opts := &jose.EncrypterOptions{}
	for k, v := range h.Fields() {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: pub}, opts)
	if err != nil {
		return "", fmt.Errorf("hcx: encrypt: %w", err)
	}
	obj, err := enc.Encrypt(payload)
	if err != nil {
		return "", fmt.Errorf("hcx: encrypt: %w", err)
	}
	return obj.CompactSerialize()
}

// Decrypt opens a compact JWE with the first of keys that fits (careflow's
// own keys; during a rotation the newest and the ones before it) and
// returns its validated headers and its plaintext. Every refusal is a
// *payer.Error with the protocol's code: ERR_INVALID_PAYLOAD for what is
// not a well-formed JWE of the accepted algorithms, ERR_INVALID_ENCRYPTION
// for a ciphertext none of the keys opens (a wrong key, or tampering), a
// header code for a header the protocol refuses.
func Decrypt(compact string, keys []*rsa.PrivateKey) (Header, []byte, error) {
	compact = strings.TrimSpace(compact)
	if len(compact) > maxCompact {
		return Header{}, nil, invalidPayload("the JWE is too large")
	}
	if strings.Count(compact, ".") != 4 {
		return Header{}, nil, invalidPayload("not a compact JWE (five parts)")
	}
	protected, err := protectedHeader(compact)
	if err != nil {
		return Header{}, nil, err
	}
	obj, err := jose.ParseEncryptedCompact(compact, readKeyAlgorithms, readEncryptions)
	if err != nil {
		return Header{}, nil, invalidPayload("the JWE's algorithms are not RSA-OAEP-256 or RSA-OAEP with A256GCM, or it is malformed")
	}
	if len(keys) == 0 {
		return Header{}, nil, errors.New("hcx: decrypt: no private key")
	}
	var plaintext []byte
	opened := false
	for _, k := range keys {
		if k == nil {
			continue
		}
		if p, err := obj.Decrypt(k); err == nil {
			plaintext, opened = p, true
			break
		}
	}
	if !opened {
		return Header{}, nil, &payer.Error{Code: ErrInvalidEncryption, Message: "the payload does not decrypt with the recipient's keys", HTTPStatus: 400}
	}
	// The protected header is the AEAD's associated data: now that the
	// ciphertext opened, it is authenticated.
	h, err := ParseHeaderFields(protected)
	if err != nil {
		return Header{}, nil, err
	}
	if err := h.Validate(); err != nil {
		return Header{}, nil, err
	}
	return h, plaintext, nil
}

// protectedHeader decodes the first part of a compact JWE. go-jose keeps
// the raw header to itself and turns numbers into floats; reading it as raw
// JSON keeps x-hcx-error_details and an epoch-millisecond timestamp exact.
func protectedHeader(compact string) (map[string]json.RawMessage, error) {
	first, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(first)
	if err != nil {
		return nil, invalidPayload("the protected header is not base64url")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalidPayload("the protected header is not a JSON object")
	}
	// Compression would let a small message expand without bound; the
	// protocol does not use it.
	if _, ok := m["zip"]; ok {
		return nil, invalidPayload("compressed payloads are not accepted")
	}
	return m, nil
}

func invalidPayload(rule string) *payer.Error {
	return &payer.Error{Code: ErrInvalidPayload, Message: rule, HTTPStatus: 400}
}

// Body is the HTTP body of every HCX call: {"payload": "<compact JWE>"}.
type Body struct {
	Payload string `json:"payload"`
}

// MarshalBody wraps a compact JWE as an HCX call's body.
func MarshalBody(compact string) []byte {
	b, _ := json.Marshal(Body{Payload: compact})
	return b
}

// ParseBody reads an HCX call's body and returns its compact JWE. Fields
// other than payload are ignored (recorded exchanges keep the answer next
// to it); a body that is not a JSON object with a string payload is
// ERR_INVALID_PAYLOAD.
func ParseBody(raw []byte) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", invalidPayload("the body is not a JSON object")
	}
	p, ok := m["payload"]
	if !ok {
		return "", invalidPayload("the body has no payload")
	}
	var s string
	if err := json.Unmarshal(p, &s); err != nil || s == "" {
		return "", invalidPayload("the body's payload is not a compact JWE string")
	}
	return s, nil
}
