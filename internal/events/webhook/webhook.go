package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Limits of a registration.
const (
	// MaxWebhooks bounds the registrations: each is a sink the publisher
	// reads for on every pass.
	MaxWebhooks = 50
	// MaxEventTypes bounds a webhook's event types.
	MaxEventTypes = 50
	// MinSecret and MaxSecret bound a secret's length in bytes.
	MinSecret = 24
	MaxSecret = 256
	// SinkPrefix starts the name of a webhook's sink ("webhook:<id>").
	SinkPrefix = "webhook:"
)

// Sealer seals and opens the webhooks' secrets (a *phi.Ring).
type Sealer interface {
	Seal(aad phi.AAD, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, aad phi.AAD, ciphertext []byte) ([]byte, error)
}

// Caller makes the outbound calls (an *outbound.Client over the hosts the
// operator allowed).
type Caller interface {
	Allowed(raw string) error
	Do(ctx context.Context, req *http.Request) (*outbound.Response, error)
}

// Webhook is a registration as listed: never its secret.
type Webhook struct {
	ID         string    `json:"id"`
	URL        string    `json:"url"`
	EventTypes []string  `json:"event_types"`
	Version    int       `json:"version"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// DeadLetters counts the events dead-lettered and not re-driven.
	DeadLetters int `json:"dead_letters"`
}

// Registered is the answer to a registration: the webhook and its secret,
// shown this once.
type Registered struct {
	Webhook
	Secret string `json:"secret"`
}

// Input registers or changes a webhook. An empty Secret at registration
// has one generated; in an update it keeps the current one. Version is
// an update's: the version the caller read.
type Input struct {
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Secret     string   `json:"secret,omitempty"`
	Version    int      `json:"version,omitempty"`
}

// Options configure a Service.
type Options struct {
	// Clock is the time (nil: time.Now).
	Clock func() time.Time
}

// Service registers webhooks and delivers to them (Source).
type Service struct {
	db     *store.DB
	ring   Sealer
	client Caller
	now    func() time.Time
	cache  secretCache
}

// New returns the webhooks over a migrated database. client makes every
// call; a registration's URL must be one it allows.
func New(db *store.DB, ring Sealer, client Caller, opts Options) *Service {
	s := &Service{db: db, ring: ring, client: client, now: opts.Clock}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func errNotFound() error { return errs.E(errs.NotFound, "webhook not found") }

// secretAAD binds a sealed secret to its webhook's row.
func secretAAD(id string) phi.AAD { return phi.AAD{Table: "webhooks", Field: "secret", Record: id} }

// Register stores a webhook registered by createdBy and returns it with
// its secret, which is never shown again. Its deliveries start with the
// events written after it.
func (s *Service) Register(ctx context.Context, createdBy string, in Input) (Registered, error) {
	types, err := s.check(in)
	if err != nil {
		return Registered{}, err
	}
	secret := in.Secret
	if secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = "whsec_" + base64.RawURLEncoding.EncodeToString(b[:])
	}
	id := uuid.NewString()
	sealed, err := s.ring.Seal(secretAAD(id), []byte(secret))
	if err != nil {
		return Registered{}, err
	}
	now := s.now().UTC()
	typesJSON, _ := json.Marshal(types)
	err = s.db.Tx(ctx, func(tx store.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks`).Scan(&n); err != nil {
			return err
		}
		if n >= MaxWebhooks {
			return errs.E(errs.Conflict, "at most %d webhooks can be registered; delete one first", MaxWebhooks)
		}
		var after int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&after); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO webhooks (id, url, event_types, secret, start_after, version, created_by, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7)`, id, in.URL, string(typesJSON), sealed, after, createdBy, now)
		return err
	})
	if err != nil {
		return Registered{}, err
	}
	return Registered{Webhook: Webhook{ID: id, URL: in.URL, EventTypes: types, Version: 1, CreatedBy: createdBy,
		CreatedAt: now, UpdatedAt: now}, Secret: secret}, nil
}

// Update changes a webhook's URL, event types and (when given) secret, if
// in.Version is its current version; a stale version is a conflict.
func (s *Service) Update(ctx context.Context, id string, in Input) (Webhook, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Webhook{}, errNotFound()
	}
	if in.Version < 1 {
		return Webhook{}, errs.E(errs.Invalid, "the version you read is required").InField("version")
	}
	types, err := s.check(in)
	if err != nil {
		return Webhook{}, err
	}
	var sealed []byte
	if in.Secret != "" {
		if sealed, err = s.ring.Seal(secretAAD(id), []byte(in.Secret)); err != nil {
			return Webhook{}, err
		}
	}
	typesJSON, _ := json.Marshal(types)
	now := s.now().UTC()
	err = s.db.Tx(ctx, func(tx store.Tx) error {
		q, args := `UPDATE webhooks SET url = $2, event_types = $3, version = version + 1, updated_at = $4
			WHERE id = $1 AND version = $5`, []any{id, in.URL, string(typesJSON), now, in.Version}
		if sealed != nil {
			q, args = `UPDATE webhooks SET url = $2, event_types = $3, version = version + 1, updated_at = $4, secret = $6
			WHERE id = $1 AND version = $5`, append(args, sealed)
		}
		n, err := tx.Exec(ctx, q, args...)
		if err != nil || n == 1 {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT version FROM webhooks WHERE id = $1`, id).Scan(&v); errors.Is(err, store.ErrNoRows) {
			return errNotFound()
		} else if err != nil {
			return err
		}
		return errs.E(errs.Conflict, "the webhook is at version %d; read it again", v).InField("version")
	})
	if err != nil {
		return Webhook{}, err
	}
	return s.Get(ctx, id)
}

// Delete removes a webhook, its dead letters and its delivery positions.
func (s *Service) Delete(ctx context.Context, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return errNotFound()
	}
	return s.db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_dead_letters WHERE webhook_id = $1`, id); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return errNotFound()
		}
		_, err = tx.Exec(ctx, `DELETE FROM event_sink_positions WHERE sink = $1`, SinkPrefix+id)
		return err
	})
}

const listColumns = `w.id, w.url, w.event_types, w.version, w.created_by, w.created_at, w.updated_at,
	(SELECT count(*) FROM webhook_dead_letters d WHERE d.webhook_id = w.id)`

// Get returns one webhook.
func (s *Service) Get(ctx context.Context, id string) (Webhook, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Webhook{}, errNotFound()
	}
	ws, err := s.list(ctx, ` WHERE w.id = $1`, id)
	if err != nil {
		return Webhook{}, err
	}
	if len(ws) == 0 {
		return Webhook{}, errNotFound()
	}
	return ws[0], nil
}

// List returns every webhook, oldest first.
func (s *Service) List(ctx context.Context) ([]Webhook, error) {
	return s.list(ctx, ``)
}

func (s *Service) list(ctx context.Context, where string, args ...any) ([]Webhook, error) {
	rows, err := s.db.Reader().Query(ctx, `SELECT `+listColumns+` FROM webhooks w`+where+` ORDER BY w.created_at, w.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Webhook{}
	for rows.Next() {
		var (
			w     Webhook
			types string
		)
		if err := rows.Scan(&w.ID, &w.URL, &types, &w.Version, &w.CreatedBy, &w.CreatedAt, &w.UpdatedAt, &w.DeadLetters); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(types), &w.EventTypes); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// check validates a registration's URL, event types and secret, and
// returns the event types without repeats.
func (s *Service) check(in Input) ([]string, error) {
	if err := s.checkURL(in.URL); err != nil {
		return nil, err
	}
	if len(in.EventTypes) == 0 || len(in.EventTypes) > MaxEventTypes {
		return nil, errs.E(errs.Invalid, "name 1 to %d event types: kinds such as rcm.journey.status_changed, prefixes such as clinical.*, or *", MaxEventTypes).InField("event_types")
	}
	var types []string
	seen := map[string]bool{}
	for _, t := range in.EventTypes {
		if !validType(t) {
			return nil, errs.E(errs.Invalid, "an event type is a kind (lower-case words joined by dots), a prefix ending in .*, or *").InField("event_types")
		}
		if !seen[t] {
			seen[t] = true
			types = append(types, t)
		}
	}
	if in.Secret != "" && (len(in.Secret) < MinSecret || len(in.Secret) > MaxSecret || !printable(in.Secret)) {
		return nil, errs.E(errs.Invalid, "a secret is %d to %d printable ASCII characters (leave it out to have one generated)", MinSecret, MaxSecret).InField("secret")
	}
	return types, nil
}

// checkURL admits an absolute http(s) URL without credentials or fragment
// on a host the client allows; plain http only to a loopback or private
// address (a receiver on the hospital's own network), https elsewhere.
func (s *Service) checkURL(raw string) error {
	bad := func(msg string) error { return errs.E(errs.Invalid, "%s", msg).InField("url") }
	if raw == "" || len(raw) > 2048 {
		return bad("the receiver's URL is required (at most 2048 characters)")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return bad("must be an absolute http(s) URL without credentials or fragment")
	}
	if u.Scheme == "http" && !localHost(u.Hostname()) {
		return bad("plain http is only for a loopback or private address; use https")
	}
	if s.client == nil || s.client.Allowed(raw) != nil {
		return bad("the host is not one this server may call: the operator allows webhook hosts with serve --webhook-allow host:port")
	}
	return nil
}

// localHost reports whether host is localhost or a loopback or private
// (RFC 1918, RFC 4193) address literal.
func localHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate())
}

var kindPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// validType accepts a kind, a prefix pattern ("clinical.*") or "*".
func validType(t string) bool {
	if t == "*" {
		return true
	}
	if len(t) > 100 {
		return false
	}
	return kindPattern.MatchString(strings.TrimSuffix(t, ".*"))
}

// Matches reports whether an event of kind is one of types: the kind
// itself, a prefix pattern ending in ".*" that it extends, or "*".
func Matches(types []string, kind string) bool {
	for _, t := range types {
		if t == "*" || t == kind {
			return true
		}
		if p, ok := strings.CutSuffix(t, "*"); ok && strings.HasPrefix(kind, p) {
			return true
		}
	}
	return false
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// sinkName is the name a webhook's positions are kept under.
func sinkName(id string) string { return SinkPrefix + id }

var _ events.DeadLetterSink = (*sink)(nil)

// Register tells the re-encryptor about the webhooks' sealed secrets, so a
// key rotation moves them to the new key too.
func Register(reg *phi.Registry) error {
	return reg.Register(phi.EncryptedColumns{Table: "webhooks", Key: []phi.KeyColumn{{Name: "id", Kind: phi.KeyText}},
		Columns: []string{"secret"}, AAD: func(key []any, _ string) phi.AAD { return secretAAD(key[0].(string)) }})
}
