package sim

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/store"
)

// The roles of the HCX participant registry.
const (
	roleGateway  = "HIE/HIO.HCX"
	rolePayer    = "payor"
	roleProvider = "provider"
)

// participantRecord is a registry entry as the registry API carries it:
// the payer.Participant fields and the certificates, inline PEM.
type participantRecord struct {
	payer.Participant
	EncryptionCert string `json:"encryption_cert"`
	// SigningCert is signing_cert_path: HCX registries hold a URL there;
	// the simulator's holds (and accepts) the PEM itself.
	SigningCert string `json:"signing_cert_path"`
}

// registered is a participant with its certificates parsed.
type registered struct {
	rec         participantRecord
	encryption  *x509.Certificate
	signing     *x509.Certificate
	isSimulated bool // the gateway or one of its payers
}

// registry is the participant registry: the gateway and its payers (from
// the rules and their keys) and the providers that registered. It keeps a
// copy in memory and in sim_participants, and the outbound client whose
// allow-list is exactly the providers' endpoint hosts.
type registry struct {
	s      *Simulator
	mu     sync.RWMutex
	byCode map[string]*registered
	client atomic.Pointer[outbound.Client]
}

func newRegistry(ctx context.Context, s *Simulator) (*registry, error) {
	r := &registry{s: s, byCode: map[string]*registered{}}
	own := []identity{s.gateway}
	roles := map[string][]string{s.gateway.code: {roleGateway}}
	for _, p := range s.payers {
		own = append(own, p.identity)
		roles[p.code] = []string{rolePayer}
	}
	for _, id := range own {
		pem := string(hcx.EncodeCertificatePEM(id.cert))
		rec := participantRecord{
			Participant:    payer.Participant{Code: id.code, Name: id.name, Roles: roles[id.code], Status: "Active"},
			EncryptionCert: pem, SigningCert: pem,
		}
		if err := r.store(ctx, &registered{rec: rec, encryption: id.cert, signing: id.cert, isSimulated: true}); err != nil {
			return nil, err
		}
	}
	// The providers registered before a restart.
	rows, err := s.db.Reader().Query(ctx, `SELECT code, name, roles, status, endpoint_url, encryption_cert, signing_cert FROM sim_participants`)
	if err != nil {
		return nil, fmt.Errorf("payer-sim: registry: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rec participantRecord
		var rolesJSON string
		if err := rows.Scan(&rec.Code, &rec.Name, &rolesJSON, &rec.Status, &rec.EndpointURL, &rec.EncryptionCert, &rec.SigningCert); err != nil {
			return nil, fmt.Errorf("payer-sim: registry: %w", err)
		}
		if _, ok := r.byCode[rec.Code]; ok {
			continue
		}
		_ = json.Unmarshal([]byte(rolesJSON), &rec.Roles)
		reg, perr := parseRegistration(rec)
		if perr != nil {
			s.logger.Warn("payer-sim: a stored registration no longer reads; it is skipped", "participant", rec.Code, "rule", perr.Message)
			continue
		}
		r.byCode[rec.Code] = reg
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payer-sim: registry: %w", err)
	}
	return r, r.rebuildClient()
}

// store upserts a registration in the database and in memory.
func (r *registry) store(ctx context.Context, reg *registered) error {
	rolesJSON, _ := json.Marshal(reg.rec.Roles)
	err := r.s.db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sim_participants (code, name, roles, status, endpoint_url, encryption_cert, signing_cert, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (code) DO UPDATE SET name = excluded.name, roles = excluded.roles, status = excluded.status,
				endpoint_url = excluded.endpoint_url, encryption_cert = excluded.encryption_cert,
				signing_cert = excluded.signing_cert, updated_at = excluded.updated_at`,
			reg.rec.Code, reg.rec.Name, string(rolesJSON), reg.rec.Status, reg.rec.EndpointURL, reg.rec.EncryptionCert, reg.rec.SigningCert, r.s.now())
		return err
	})
	if err != nil {
		return fmt.Errorf("payer-sim: registry: %w", err)
	}
	r.mu.Lock()
	r.byCode[reg.rec.Code] = reg
	r.mu.Unlock()
	return nil
}

// lookup returns a registered participant.
func (r *registry) lookup(code string) (*registered, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byCode[code]
	return p, ok
}

// rebuildClient makes the outbound client whose allow-list is the
// registered providers' endpoint hosts: the deliverer calls nothing else.
func (r *registry) rebuildClient() error {
	r.mu.RLock()
	var hosts []string
	for _, p := range r.byCode {
		if p.isSimulated || p.rec.EndpointURL == "" {
			continue
		}
		if u, err := url.Parse(p.rec.EndpointURL); err == nil {
			h := u.Host
			if u.Port() == "" {
				h = u.Hostname()
			}
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	r.mu.RUnlock()
	sort.Strings(hosts)
	timeout := r.s.del.timeoutOr(10 * time.Second)
	c, err := outbound.New(outbound.Config{Hosts: hosts, Timeout: timeout, MaxResponse: 64 << 10})
	if err != nil {
		return fmt.Errorf("payer-sim: outbound client: %w", err)
	}
	r.client.Store(c)
	return nil
}

// parseRegistration checks a registration: a participant code, an
// http(s) endpoint without credentials, and RSA certificates of at least
// 2048 bits. The refusal names the field.
func parseRegistration(rec participantRecord) (*registered, *payer.Error) {
	bad := func(field, rule string) *payer.Error {
		return &payer.Error{Code: hcx.ErrInvalidPayload, Message: field + ": " + rule, HTTPStatus: http.StatusBadRequest}
	}
	if !validCode(rec.Code) {
		return nil, bad("participant_code", "1 to 64 letters, digits, '.', '-', '_' or '@'")
	}
	if strings.TrimSpace(rec.Name) == "" {
		return nil, bad("participant_name", "is required")
	}
	u, err := url.Parse(rec.EndpointURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("endpoint_url", "must be an http(s) URL without credentials, query or fragment")
	}
	if err := outbound.ValidHost(u.Host); err != nil && outbound.ValidHost(u.Hostname()) != nil {
		return nil, bad("endpoint_url", "the host is not a valid host")
	}
	if strings.TrimSpace(rec.SigningCert) == "" {
		// One key for both, as small participants do.
		rec.SigningCert = rec.EncryptionCert
	}
	reg := &registered{rec: rec}
	for _, c := range []struct {
		field string
		pem   string
		dst   **x509.Certificate
	}{{"encryption_cert", rec.EncryptionCert, &reg.encryption}, {"signing_cert_path", rec.SigningCert, &reg.signing}} {
		cert, err := hcx.ParseCertificatePEM([]byte(c.pem))
		if err != nil {
			return nil, bad(c.field, "must be a PEM certificate (inline)")
		}
		if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || pub.N.BitLen() < 2048 {
			return nil, bad(c.field, "must certify an RSA key of at least 2048 bits")
		}
		*c.dst = cert
	}
	if len(reg.rec.Roles) == 0 {
		reg.rec.Roles = []string{roleProvider}
	}
	if reg.rec.Status == "" {
		reg.rec.Status = "Active"
	}
	return reg, nil
}

const maxRegistryBody = 64 << 10

// serveCreate answers POST /participant/create: a development
// registration, accepted without review (the simulator is a development
// and test tool). A participant registering again replaces its entry (a
// restarted careflow with new keys); the gateway's and payers' own codes
// cannot be taken.
func (r *registry) serveCreate(w http.ResponseWriter, req *http.Request) {
	now := r.s.now()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxRegistryBody+1))
	if err != nil || len(body) > maxRegistryBody {
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrInvalidPayload, Message: "the body is unreadable or too large", HTTPStatus: 400}, now)
		return
	}
	var rec participantRecord
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&rec); err != nil {
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrInvalidPayload, Message: "the body is not a participant record", HTTPStatus: 400}, now)
		return
	}
	reg, perr := parseRegistration(rec)
	if perr != nil {
		hcx.WriteError(w, hcx.Header{}, perr, now)
		return
	}
	if old, ok := r.lookup(rec.Code); ok && old.isSimulated {
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrAccessDenied, Message: "participant_code: the code is the simulator's own", HTTPStatus: http.StatusConflict}, now)
		return
	}
	err = r.store(req.Context(), reg)
	if err == nil {
		err = r.rebuildClient()
	}
	if err != nil {
		r.s.logger.Error("payer-sim: registration", "participant", rec.Code, "err", err)
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrInternalServerError, Message: "the registration could not be stored", HTTPStatus: 500}, now)
		return
	}
	r.s.logger.Info("payer-sim: participant registered", "participant", rec.Code)
	writeJSON(w, http.StatusOK, map[string]string{"participant_code": rec.Code})
}

// searchRequest is the registry search body: {"filters": {FIELD: {"eq":
// VALUE}}} with FIELD participant_code, roles or status.
type searchRequest struct {
	Filters map[string]struct {
		Eq string `json:"eq"`
	} `json:"filters"`
}

// serveSearch answers POST /participant/search.
func (r *registry) serveSearch(w http.ResponseWriter, req *http.Request) {
	now := r.s.now()
	var sr searchRequest
	dec := json.NewDecoder(io.LimitReader(req.Body, maxRegistryBody))
	if err := dec.Decode(&sr); err != nil && !errors.Is(err, io.EOF) {
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrInvalidPayload, Message: "the body is not a search request", HTTPStatus: 400}, now)
		return
	}
	for k := range sr.Filters {
		if k != "participant_code" && k != "roles" && k != "status" {
			hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrInvalidPayload, Message: "filters: " + k + " is not a filter (participant_code, roles, status)", HTTPStatus: 400}, now)
			return
		}
	}
	r.mu.RLock()
	out := []participantRecord{}
	for _, p := range r.byCode {
		if f, ok := sr.Filters["participant_code"]; ok && f.Eq != p.rec.Code {
			continue
		}
		if f, ok := sr.Filters["roles"]; ok && !slices.Contains(p.rec.Roles, f.Eq) {
			continue
		}
		if f, ok := sr.Filters["status"]; ok && !strings.EqualFold(f.Eq, p.rec.Status) {
			continue
		}
		out = append(out, p.rec)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	writeJSON(w, http.StatusOK, map[string]any{"participants": out})
}
