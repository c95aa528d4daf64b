package phi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Options tunes a Ring. The zero value is ready for production.
type Options struct {
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives key-ring events (never key material or PHI); nil
	// discards.
	Logger *slog.Logger
}

// Ring is the process's view of the key table: every key, unwrapped, with
// the primary data key used for Seal and the primary blind-index key used
// for blind indexes. It is safe for concurrent use; Seal and Open take no
// lock.
type Ring struct {
	db     *store.DB
	wrap   *wrapper
	now    func() time.Time
	logger *slog.Logger

	cur atomic.Pointer[keyset]

	// reloadMu serialises reloads, so a burst of requests meeting a new key
	// id triggers one query, not one per request.
	reloadMu sync.Mutex
	// missID and missAt remember the last id a reload did not find, so a
	// stream of ciphertexts naming a key that does not exist cannot turn
	// every request into a database round trip.
	missID KeyID
	missAt time.Time
}

// missBackoff is how long an id not found after a reload is answered as
// unknown without asking the database again.
const missBackoff = time.Second

// OpenRing loads the key ring from db (which must be migrated), creating
// the first data and blind-index keys on a new database. Several nodes may
// call it at once on one database: exactly one creates the keys and the
// others load them.
func OpenRing(ctx context.Context, db *store.DB, master MasterKey, opts Options) (*Ring, error) {
	w, err := newWrapper(master)
	if err != nil {
		return nil, err
	}
	r := &Ring{db: db, wrap: w, now: opts.Clock, logger: opts.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	for attempt := 0; ; attempt++ {
		err := r.bootstrap(ctx)
		if err == nil {
			break
		}
		// Another node created the same key id first: load what it made.
		if !store.IsUniqueViolation(err) || attempt >= 3 {
			return nil, errs.Wrap(errs.Internal, err, "phi: create the first keys")
		}
	}
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// bootstrap creates the primary key of each purpose that has none.
func (r *Ring) bootstrap(ctx context.Context) error {
	return r.db.Tx(ctx, func(tx store.Tx) error {
		for _, p := range []Purpose{PurposeData, PurposeBlindIndex} {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM phi_keys WHERE purpose = $1 AND status = 'primary'`, string(p)).Scan(&n); err != nil {
				return fmt.Errorf("phi: read keys: %w", err)
			}
			if n > 0 {
				continue
			}
			if _, err := r.insertKey(ctx, tx, p); err != nil {
				return err
			}
			r.logger.Info("phi: created the first key", "purpose", string(p))
		}
		return nil
	})
}

// insertKey creates, wraps and stores a new primary key of purpose p. The
// caller has demoted any previous primary in the same transaction.
func (r *Ring) insertKey(ctx context.Context, tx store.Tx, p Purpose) (KeyInfo, error) {
	var maxID int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM phi_keys`).Scan(&maxID); err != nil {
		return KeyInfo{}, fmt.Errorf("phi: read keys: %w", err)
	}
	if maxID >= maxKeyValue {
		return KeyInfo{}, errs.E(errs.Internal, "phi: key ids are exhausted")
	}
	info := KeyInfo{ID: KeyID(maxID + 1), Purpose: p, Status: StatusPrimary, CreatedAt: r.now().UTC()}
	material, err := newKeyMaterial()
	if err != nil {
		return KeyInfo{}, err
	}
	wrapped, err := r.wrap.wrap(info.ID, p, material)
	if err != nil {
		return KeyInfo{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO phi_keys (id, purpose, status, wrapped_key, created_at) VALUES ($1, $2, 'primary', $3, $4)`,
		int64(info.ID), string(p), wrapped, info.CreatedAt); err != nil {
		return KeyInfo{}, fmt.Errorf("phi: store %s: %w", info.ID, err)
	}
	return info, nil
}

// Reload reads the key table again. Keys already unwrapped are reused (key
// material never changes; only status does).
func (r *Ring) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	return r.reloadLocked(ctx)
}

func (r *Ring) reloadLocked(ctx context.Context) error {
	rows, err := r.db.Reader().Query(ctx, `SELECT id, purpose, status, wrapped_key, created_at, demoted_at, retired_at FROM phi_keys ORDER BY id`)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "phi: read keys")
	}
	defer rows.Close()
	old := r.cur.Load()
	var deks []*dek
	for rows.Next() {
		var (
			id                   int64
			purpose, status      string
			wrapped              []byte
			created              time.Time
			demoted, retiredTime *time.Time
		)
		if err := rows.Scan(&id, &purpose, &status, &wrapped, &created, &demoted, &retiredTime); err != nil {
			return errs.Wrap(errs.Internal, err, "phi: read keys")
		}
		info := KeyInfo{ID: KeyID(id), Purpose: Purpose(purpose), Status: Status(status), CreatedAt: created}
		if demoted != nil {
			info.DemotedAt = *demoted
		}
		if retiredTime != nil {
			info.RetiredAt = *retiredTime
		}
		if old != nil {
			if prev := old.keys[info.ID]; prev != nil && prev.info.Purpose == info.Purpose {
				deks = append(deks, &dek{info: info, aead: prev.aead, mac: prev.mac})
				continue
			}
		}
		material, err := r.wrap.unwrap(info.ID, info.Purpose, wrapped)
		if err != nil {
			return err
		}
		d, err := newDEK(info, material)
		clear(material)
		if err != nil {
			return err
		}
		deks = append(deks, d)
	}
	if err := rows.Err(); err != nil {
		return errs.Wrap(errs.Unavailable, err, "phi: read keys")
	}
	ks, err := newKeyset(deks)
	if err != nil {
		return err
	}
	r.cur.Store(ks)
	if old != nil && old.primary.info.ID != ks.primary.info.ID {
		r.logger.Info("phi: primary data key changed", "key_id", uint32(ks.primary.info.ID))
	}
	return nil
}

// RefreshEvery reloads the ring every interval until ctx is done, so that
// a node learns of a rotation made elsewhere and stops sealing with the old
// key. The re-encryptor's RetireGrace must be longer than this interval.
// Reload failures are logged and retried at the next tick: the ring in
// memory stays usable meanwhile.
func (r *Ring) RefreshEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("phi: reload key ring", "err", err)
			}
		}
	}
}

// Seal encrypts plaintext under the primary data key, bound to aad.
func (r *Ring) Seal(aad AAD, plaintext []byte) ([]byte, error) {
	return r.cur.Load().seal(aad, plaintext)
}

// SealText is Seal for a Text value.
func (r *Ring) SealText(aad AAD, t Text) ([]byte, error) {
	return r.Seal(aad, []byte(t.s))
}

// Open decrypts a ciphertext made by Seal with the same aad. A ciphertext
// naming a key newer than the ring holds (another node rotated) makes the
// ring reload once before giving up with ErrUnknownKey.
func (r *Ring) Open(ctx context.Context, aad AAD, ciphertext []byte) ([]byte, error) {
	pt, ok, err := r.cur.Load().open(aad, ciphertext)
	if ok || err != nil {
		return pt, err
	}
	id, _ := KeyIDOf(ciphertext) // parsed successfully above
	ks, err := r.reloadFor(ctx, id)
	if err != nil {
		return nil, err
	}
	pt, ok, err = ks.open(aad, ciphertext)
	if !ok {
		return nil, errs.Wrap(errs.Internal, ErrUnknownKey, "phi: ciphertext names %s, which is not in the key table", id)
	}
	return pt, err
}

// OpenText is Open returning a Text.
func (r *Ring) OpenText(ctx context.Context, aad AAD, ciphertext []byte) (Text, error) {
	pt, err := r.Open(ctx, aad, ciphertext)
	if err != nil {
		return Text{}, err
	}
	return Text{s: string(pt)}, nil
}

// reloadFor reloads the ring if id may be a key created after the last load.
func (r *Ring) reloadFor(ctx context.Context, id KeyID) (*keyset, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	ks := r.cur.Load()
	if ks.keys[id] != nil {
		return ks, nil // another request reloaded while we waited
	}
	// Ids only grow and keys are never deleted, so an id at or below the
	// largest we loaded can never appear by reloading.
	if id <= ks.maxID {
		return ks, nil
	}
	if id <= r.missID && r.now().Sub(r.missAt) < missBackoff {
		return ks, nil
	}
	if err := r.reloadLocked(ctx); err != nil {
		return nil, err
	}
	ks = r.cur.Load()
	if ks.keys[id] == nil {
		r.missID, r.missAt = id, r.now()
	}
	return ks, nil
}

// Primary returns the id of the key that Seal uses now.
func (r *Ring) Primary() KeyID { return r.cur.Load().primary.info.ID }

// Keys lists the keys as the ring last loaded them, by id.
func (r *Ring) Keys() []KeyInfo {
	ks := r.cur.Load()
	out := make([]KeyInfo, 0, len(ks.keys))
	for id := KeyID(1); id <= ks.maxID; id++ {
		if d := ks.keys[id]; d != nil {
			out = append(out, d.info)
		}
	}
	return out
}

// Rotate creates a new data key and makes it primary in one transaction;
// the previous primary becomes active (it still opens, no longer seals).
// Existing rows move to the new key when a Reencryptor runs. Two rotations
// racing on one database: one wins, the other returns a Conflict error.
func (r *Ring) Rotate(ctx context.Context) (KeyInfo, error) {
	var info KeyInfo
	err := r.db.Tx(ctx, func(tx store.Tx) error {
		now := r.now().UTC()
		n, err := tx.Exec(ctx, `UPDATE phi_keys SET status = 'active', demoted_at = $1 WHERE purpose = 'data' AND status = 'primary'`, now)
		if err != nil {
			return fmt.Errorf("phi: demote the primary key: %w", err)
		}
		if n != 1 {
			return errs.E(errs.Conflict, "phi: no primary data key to rotate from (another rotation may be running)")
		}
		info, err = r.insertKey(ctx, tx, PurposeData)
		return err
	})
	if err != nil {
		if store.IsUniqueViolation(err) {
			return KeyInfo{}, errs.Wrap(errs.Conflict, err, "phi: another rotation ran at the same time; try again")
		}
		return KeyInfo{}, errs.Wrap(errs.KindOf(err), err, "phi: rotate")
	}
	r.logger.Info("phi: rotated the data key", "key_id", uint32(info.ID))
	return info, r.Reload(ctx)
}

// BlindIndex returns the blind index of a general text value in a domain
// (for example "patient.birthdate"): HMAC-SHA256 under the blind-index key
// of the Normalize form, as 43 characters of unpadded base64url. Equal
// values in one domain give equal indexes; nothing else can be learnt from
// it without the key. It fails with ErrEmptyValue (kind invalid) when
// nothing is left after normalisation.
func (r *Ring) BlindIndex(domain, value string) (string, error) {
	return r.blind(domain, Normalize(value))
}

// IdentifierIndex is BlindIndex with NormalizeIdentifier, for identifiers
// and phone numbers, where spaces and punctuation are typing habits.
func (r *Ring) IdentifierIndex(domain, value string) (string, error) {
	return r.blind(domain, NormalizeIdentifier(value))
}

// NamePrefixIndexes returns the blind indexes to store for a name so that
// NameQueryIndexes can find it by what a user types: one per NamePrefixes
// token.
func (r *Ring) NamePrefixIndexes(domain, name string) ([]string, error) {
	return r.blindAll(domain, NamePrefixes(name))
}

// NameQueryIndexes returns the blind indexes to look up for a typed name
// query, one per query part; a record matches when it has all of them
// among its NamePrefixIndexes in the same domain.
func (r *Ring) NameQueryIndexes(domain, query string) ([]string, error) {
	return r.blindAll(domain, NameQueryParts(query))
}

func (r *Ring) blindAll(domain string, tokens []string) ([]string, error) {
	if domain == "" {
		return nil, errs.E(errs.Internal, "phi: blind index without a domain")
	}
	if len(tokens) == 0 {
		return nil, errEmptyValue()
	}
	ks := r.cur.Load()
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = ks.blindIndex(domain, t)
	}
	return out, nil
}

func (r *Ring) blind(domain, normalized string) (string, error) {
	if domain == "" {
		return "", errs.E(errs.Internal, "phi: blind index without a domain")
	}
	if normalized == "" {
		return "", errEmptyValue()
	}
	return r.cur.Load().blindIndex(domain, normalized), nil
}

// errEmptyValue: a value with nothing left after normalisation would match
// every other such value; callers skip indexing it and reject such a query.
func errEmptyValue() error {
	return errs.Wrap(errs.Invalid, ErrEmptyValue, "the search value has no letters or digits")
}

// ErrEmptyValue is the cause of the error a blind index of an empty
// (after normalisation) value returns.
var ErrEmptyValue = errors.New("phi: empty value")
