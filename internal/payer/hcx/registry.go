package hcx

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
)

// RolePayer is the registry role of a payer ("payor" in HCX's spelling).
const RolePayer = "payor"

// StatusActive is the registry status of a participant that may exchange.
const StatusActive = "Active"

// RegistryEntry is a participant as the registry's search answers it:
// payer.Participant and where its certificates are.
type RegistryEntry struct {
	payer.Participant
	// EncryptionCert is the certificate messages to the participant are
	// encrypted for: inline PEM, or an http(s) URL to fetch it from.
	EncryptionCert string `json:"encryption_cert"`
	// SigningCertPath is the certificate that verifies the participant's
	// bearer tokens: inline PEM or a URL. When absent, the encryption
	// certificate is used (one key for both, as small participants do).
	SigningCertPath string `json:"signing_cert_path,omitempty"`
}

// Active reports whether the registry lets the participant exchange.
func (e RegistryEntry) Active() bool { return strings.EqualFold(e.Status, StatusActive) }

type cachedParticipant struct {
	entry   RegistryEntry
	enc     *rsa.PublicKey
	sig     *rsa.PublicKey
	fetched time.Time
}

// Registry is the HCX participant registry, seen through a cache: a
// participant and its certificates are kept for the TTL, and fetched again
// sooner when a caller reports that they failed (Invalidate: a decryption
// or verification failure means the participant may have rotated its
// keys). Participants the registry does not know are not cached, so a new
// payer is found as soon as it registers. Registry implements rcm.Directory.
type Registry struct {
	url     string // the registry's base URL
	self    Identity
	gateway string // the gateway's participant code (the tokens' audience)
	http    *outbound.Client
	ttl     time.Duration
	now     func() time.Time

	mu     sync.Mutex
	byCode map[string]*cachedParticipant
	payers []payer.Participant
	listed time.Time
}

// DefaultCacheTTL is how long the registry's answers are kept.
const DefaultCacheTTL = 10 * time.Minute

// NewRegistry returns a registry client for the registry at url (the
// gateway's base URL, whose /participant/search it calls), calling as self
// with tokens for the gateway's participant code.
func NewRegistry(url string, self Identity, gatewayCode string, client *outbound.Client, ttl time.Duration, now func() time.Time) *Registry {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{url: strings.TrimRight(url, "/"), self: self, gateway: gatewayCode, http: client, ttl: ttl, now: now,
		byCode: map[string]*cachedParticipant{}}
}

// Lookup finds one active participant by code; false when the registry has
// none or it is not active. Implements rcm.Directory.
func (r *Registry) Lookup(ctx context.Context, code string) (payer.Participant, bool, error) {
	c, err := r.participant(ctx, code)
	if errs.Is(err, errs.NotFound) {
		return payer.Participant{}, false, nil
	}
	if err != nil {
		return payer.Participant{}, false, err
	}
	return c.entry.Participant, true, nil
}

// Payers lists the active participants with the payer role. Implements
// rcm.Directory.
func (r *Registry) Payers(ctx context.Context) ([]payer.Participant, error) {
	r.mu.Lock()
	if !r.listed.IsZero() && r.now().Sub(r.listed) < r.ttl {
		out := append([]payer.Participant(nil), r.payers...)
		r.mu.Unlock()
		return out, nil
	}
	r.mu.Unlock()
	entries, err := r.search(ctx, map[string]any{"roles": map[string]string{"eq": RolePayer}})
	if err != nil {
		return nil, err
	}
	var out []payer.Participant
	for _, e := range entries {
		if e.Active() && hasRole(e.Roles, RolePayer) {
			out = append(out, e.Participant)
		}
	}
	r.mu.Lock()
	r.payers, r.listed = out, r.now()
	r.mu.Unlock()
	return append([]payer.Participant(nil), out...), nil
}

func hasRole(roles []string, role string) bool {
	for _, x := range roles {
		if strings.EqualFold(x, role) {
			return true
		}
	}
	return false
}

// EncryptionKey returns the key messages to participant code are encrypted
// for, from a certificate valid now.
func (r *Registry) EncryptionKey(ctx context.Context, code string) (*rsa.PublicKey, error) {
	c, err := r.participant(ctx, code)
	if err != nil {
		return nil, err
	}
	return c.enc, nil
}

// SigningKey returns the key that verifies participant code's bearer
// tokens. It has the shape of SigningKeyOf.
func (r *Registry) SigningKey(ctx context.Context, code string) (*rsa.PublicKey, error) {
	c, err := r.participant(ctx, code)
	if err != nil {
		return nil, err
	}
	return c.sig, nil
}

// Invalidate drops what the cache holds of a participant, so the next use
// asks the registry again.
func (r *Registry) Invalidate(code string) {
	r.mu.Lock()
	delete(r.byCode, code)
	r.mu.Unlock()
}

// minRefresh is how old a cached participant must be before a failure may
// drop it: a stream of forged tokens or broken messages cannot turn into a
// stream of registry calls.
const minRefresh = 30 * time.Second

// Refresh drops a participant from the cache after a failure its keys may
// explain (a token that does not verify, a message the recipient could not
// decrypt), unless it was fetched less than minRefresh ago. It reports
// whether it dropped it, i.e. whether trying again may help.
func (r *Registry) Refresh(code string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byCode[code]
	if !ok || r.now().Sub(c.fetched) < minRefresh {
		return false
	}
	delete(r.byCode, code)
	return true
}

// participant returns the cached entry of an active participant, fetching
// it when absent or stale. errs.NotFound: the registry has no such active
// participant.
func (r *Registry) participant(ctx context.Context, code string) (*cachedParticipant, error) {
	if code == "" {
		return nil, errs.E(errs.NotFound, "no participant code").InField("participant_code")
	}
	r.mu.Lock()
	c, ok := r.byCode[code]
	r.mu.Unlock()
	if ok && r.now().Sub(c.fetched) < r.ttl {
		return c, nil
	}
	entries, err := r.search(ctx, map[string]any{"participant_code": map[string]string{"eq": code}})
	if err != nil {
		return nil, err
	}
	var found *RegistryEntry
	for i := range entries {
		if entries[i].Code == code {
			found = &entries[i]
			break
		}
	}
	if found == nil || !found.Active() {
		r.Invalidate(code)
		return nil, errs.E(errs.NotFound, "the registry has no active participant of this code").InField("participant_code")
	}
	now := r.now()
	enc, err := r.certKey(ctx, found.EncryptionCert, now)
	if err != nil {
		return nil, fmt.Errorf("participant %s: encryption certificate: %w", code, err)
	}
	sig := enc
	if found.SigningCertPath != "" {
		if sig, err = r.certKey(ctx, found.SigningCertPath, now); err != nil {
			return nil, fmt.Errorf("participant %s: signing certificate: %w", code, err)
		}
	}
	c = &cachedParticipant{entry: *found, enc: enc, sig: sig, fetched: now}
	r.mu.Lock()
	r.byCode[code] = c
	r.mu.Unlock()
	return c, nil
}

// certKey reads a registry certificate field: inline PEM, or a URL fetched
// through the outbound client (so only allow-listed hosts are reached).
func (r *Registry) certKey(ctx context.Context, v string, now time.Time) (*rsa.PublicKey, error) {
	v = strings.TrimSpace(v)
	var pemBytes []byte
	switch {
	case v == "":
		return nil, errs.E(errs.Unavailable, "the registry lists no certificate")
	case strings.HasPrefix(v, "-----BEGIN"):
		pemBytes = []byte(v)
	case strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://"):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v, nil)
		if err != nil {
			return nil, errs.E(errs.Unavailable, "the certificate URL is not a URL")
		}
		resp, err := r.http.Do(ctx, req)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "fetch the certificate")
		}
		if resp.StatusCode != http.StatusOK {
			return nil, errs.E(errs.Unavailable, "fetch the certificate: answered %d", resp.StatusCode)
		}
		pemBytes = resp.Body
	default:
		return nil, errs.E(errs.Unavailable, "the certificate is neither PEM nor an http(s) URL")
	}
	cert, err := ParseCertificatePEM(pemBytes)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "the certificate")
	}
	pub, err := RecipientKey(cert, now)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "the certificate")
	}
	return pub, nil
}

// search calls POST {registry}/participant/search with filters.
func (r *Registry) search(ctx context.Context, filters map[string]any) ([]RegistryEntry, error) {
	body, _ := json.Marshal(map[string]any{"filters": filters})
	resp, err := r.call(ctx, "/participant/search", body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		if _, perr := ReadAnswer(resp.StatusCode, resp.Body); perr != nil && !errors.Is(perr, ErrNoProtocolError) {
			return nil, errs.Wrap(errs.Unavailable, perr, "registry search")
		}
		return nil, errs.E(errs.Unavailable, "registry search: answered %d", resp.StatusCode)
	}
	var answer struct {
		Participants []RegistryEntry `json:"participants"`
	}
	if err := json.Unmarshal(resp.Body, &answer); err != nil {
		return nil, errs.E(errs.Unavailable, "registry search: the answer is not a participant list")
	}
	return answer.Participants, nil
}

// call POSTs a JSON body to the gateway's registry with this participant's
// bearer token.
func (r *Registry) call(ctx context.Context, path string, body []byte) (*outbound.Response, error) {
	tok, err := SignToken(r.self.Keys[0], r.self.Code, r.gateway, r.now())
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, errs.E(errs.Unavailable, "the registry URL is not a URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := r.http.Do(ctx, req)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "registry %s", path)
	}
	return resp, nil
}

// Register creates (or updates) this participant's registry entry through
// the gateway's POST /participant/create: the development path, which a
// simulator in dev mode accepts so that `careflow serve` and `careflow
// payer-sim` find each other without exchanging keys by hand. Production
// participants are onboarded by the exchange's operator instead.
func (r *Registry) Register(ctx context.Context, self payer.Participant, encCertPEM, sigCertPEM []byte) error {
	body, _ := json.Marshal(RegistryEntry{
		Participant:     self,
		EncryptionCert:  string(encCertPEM),
		SigningCertPath: string(sigCertPEM),
	})
	resp, err := r.call(ctx, "/participant/create", body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		if _, perr := ReadAnswer(resp.StatusCode, resp.Body); perr != nil && !errors.Is(perr, ErrNoProtocolError) {
			return errs.Wrap(errs.Unavailable, perr, "participant create")
		}
		return errs.E(errs.Unavailable, "participant create: answered %d", resp.StatusCode)
	}
	r.Invalidate(self.Code)
	return nil
}
