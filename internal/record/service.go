package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Action is what an interaction does, as the access policy sees it. The
// values are the policy's action names.
type Action string

// The actions.
const (
	ActRead   Action = "read"
	ActSearch Action = "search"
	ActCreate Action = "create"
	ActUpdate Action = "update"
	ActDelete Action = "delete"
)

// Access is one record an interaction touches. PatientID is the record's
// patient compartment ("" when it belongs to none), known without
// decrypting anything.
type Access struct {
	Action    Action
	Type      string
	ID        string
	PatientID string
}

// Guard is where the access policy plugs in: every record an interaction
// reads or writes is passed to Allow before its ciphertext is opened or its
// row is written. A nil Guard allows everything (tests of this package).
type Guard interface {
	Allow(ctx context.Context, a Access) error
}

func allow(ctx context.Context, g Guard, a Access) error {
	if g == nil {
		return nil
	}
	return g.Allow(ctx, a)
}

// InTxGuard is a Guard that can decide inside the caller's transaction:
// what the decision reads (a patient's relationships and consent) goes
// through tx. A decision that took a second pooled connection while tx
// holds one would wait on the pool with a connection in hand, and enough
// concurrent transactions exhaust it (see access.Guard.AllowIn).
type InTxGuard interface {
	Guard
	AllowIn(ctx context.Context, tx store.Tx, a Access) error
}

// allowOn is allow for an access read through q: inside a transaction
// (q is a store.Tx) an InTxGuard decides through it.
func allowOn(ctx context.Context, g Guard, q store.Querier, a Access) error {
	if tx, ok := q.(store.Tx); ok {
		if tg, ok := g.(InTxGuard); ok {
			return tg.AllowIn(ctx, tx, a)
		}
	}
	return allow(ctx, g, a)
}

// TxGuard is a Guard that can record an allowed decision inside the
// record's write transaction, so that a write and its audit entry commit
// or roll back together. elements are, for a create or update, the
// top-level elements the body sets (nil for a delete); the Grant says
// which elements the write may set (fields.go).
type TxGuard interface {
	Guard
	AllowTx(ctx context.Context, tx store.Tx, a Access, elements []string) (Grant, error)
}

// allowWrite decides a write inside tx, through AllowTx when the guard
// offers it. A plain Guard (or none) grants every element.
func allowWrite(ctx context.Context, g Guard, tx store.Tx, a Access, elements []string) (Grant, error) {
	if tg, ok := g.(TxGuard); ok {
		return tg.AllowTx(ctx, tx, a, elements)
	}
	return Grant{}, allow(ctx, g, a)
}

// ErrDeleted marks a read of a resource whose current version is a delete
// (HTTP 410 Gone).
var ErrDeleted = errors.New("record: resource deleted")

// IssuesError carries a validation result; the HTTP layer answers it with
// an OperationOutcome holding every issue.
type IssuesError struct {
	Issues fhir.Issues
}

func (e *IssuesError) Error() string { return fmt.Sprintf("%d validation issue(s)", len(e.Issues)) }

// Options tune a Service.
type Options struct {
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// NewID returns a new logical id; nil means a UUIDv7.
	NewID func() string
	// Hooks see every write and delete inside its transaction (after the
	// record's rows); an error rolls the write back. The consent store
	// uses one to enforce FHIR Consent resources.
	Hooks []WriteHook
	// Changes see every create, update and delete by ids alone, inside
	// its transaction after Hooks (changes.go); EventHook writes them as
	// events.
	Changes []ChangeHook
	// Codes checks the codes of every resource written (the terminology
	// service: ICD-10-CM, CPT, HCPCS, LOINC, SNOMED CT on Claim and
	// Condition); nil checks structure only.
	Codes CodeChecker
	// Limits bound what one resource may cost (limits.go); zero fields
	// take their defaults.
	Limits Limits
}

// WriteHook is told of each write of a resource inside the write's
// transaction: raw is the stored JSON (with id and meta), nil for a delete.
type WriteHook interface {
	Written(ctx context.Context, tx store.Tx, typ, id string, raw []byte) error
}

// CodeChecker checks a resource's codes against the code systems careflow
// knows. An issue of severity error rejects the write; warnings do not.
// Expressions start with the resource type (Claim.diagnosis[0]...). An
// error return means the check could not run (the database failed). q is
// the transaction of the write when there is one (the checker reads
// through it, never through a second connection while the write holds
// one); nil outside a transaction.
type CodeChecker interface {
	CheckResource(ctx context.Context, q store.Querier, typ string, raw []byte) ([]fhir.OutcomeIssue, error)
}

// Service is the FHIR record.
type Service struct {
	db    *store.DB
	ring  *phi.Ring
	now   func() time.Time
	newID func() string
	codes CodeChecker
	hooks []WriteHook
	group committer
	// limits has every field set (Limits.WithDefaults).
	limits Limits

	// changes are told of each write after hooks (changes.go).
	changes []ChangeHook
}

// New returns the record over a migrated database and an open key ring.
func New(db *store.DB, ring *phi.Ring, opts Options) *Service {
	s := &Service{db: db, ring: ring, now: opts.Clock, newID: opts.NewID, codes: opts.Codes, hooks: opts.Hooks, changes: opts.Changes, limits: opts.Limits.WithDefaults()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = func() string {
			u, err := uuid.NewV7()
			if err != nil {
				return uuid.NewString()
			}
			return u.String()
		}
	}
	return s
}

// aadTable and aadField name where a resource version's ciphertext lives in
// its associated data. Both tables use the same binding: the ciphertext of
// a version is the same bytes in resources and, once it is replaced, in
// resource_history (keepReplaced copies it), bound to
// Type/id/_history/version, which no other row can claim.
const (
	aadTable = "resources"
	aadField = "resource"
)

func versionAAD(typ, id string, version int) phi.AAD {
	return phi.AAD{Table: aadTable, Field: aadField, Record: aadRecord(typ, id, version)}
}

// Register tells the re-encryptor about the record's ciphertext columns.
func Register(reg *phi.Registry) error {
	aad := func(key []any, _ string) phi.AAD {
		typ, _ := key[0].(string)
		id, _ := key[1].(string)
		v, _ := key[2].(int64)
		return versionAAD(typ, id, int(v))
	}
	key := []phi.KeyColumn{{Name: "type", Kind: phi.KeyText}, {Name: "id", Kind: phi.KeyText}, {Name: "version", Kind: phi.KeyInteger}}
	if err := reg.Register(phi.EncryptedColumns{Table: "resources", Key: key, Columns: []string{"ciphertext"}, AAD: aad}); err != nil {
		return err
	}
	return reg.Register(phi.EncryptedColumns{Table: "resource_history", Key: key, Columns: []string{"ciphertext"}, AAD: aad})
}

// Record is one version of a resource.
type Record struct {
	Type        string
	ID          string
	Version     int
	LastUpdated time.Time
	Deleted     bool
	PatientID   string
	// Method is the interaction that made the version (history only).
	Method string
	// JSON is the resource with id and meta set; nil for a delete.
	JSON []byte

	// rid is the resource's integer key (resources.rid), which its index
	// rows name; set by current and write.
	rid int64
}

// ETag is the weak entity tag of the version.
func (r Record) ETag() string { return `W/"` + strconv.Itoa(r.Version) + `"` }

// Ref is Type/id.
func (r Record) Ref() string { return r.Type + "/" + r.ID }

// Writable reports whether clients may write a type. AuditEvent is a
// read-only view of the audit log; other R4 resource types are stored.
func Writable(typ string) error {
	if !fhir.IsResourceType(typ) {
		return errs.E(errs.NotFound, "%s is not a FHIR R4 resource type this server knows", safeName(typ))
	}
	if typ == "AuditEvent" {
		return errs.E(errs.MethodNotAllowed, "AuditEvent is a read-only view of the audit log")
	}
	return nil
}

// safeName keeps a client-sent type name out of messages unless it looks
// like a type name (which is never PHI).
func safeName(s string) string {
	if isTypeName(s) && len(s) <= 64 {
		return s
	}
	return "the requested type"
}

// validate checks a body against the R4 definitions as a resource of typ.
func validate(body []byte, typ string) error {
	issues := fhir.ValidateType(body, typ)
	if !issues.HasErrors() {
		return nil
	}
	kind := errs.Unprocessable
	if issues.Malformed() {
		kind = errs.Invalid
	}
	return errs.Wrap(kind, &IssuesError{Issues: issues}, "the %s is not valid FHIR R4", safeName(typ))
}

// checkCodes runs the code checker on a resource that passed validation.
// prefix replaces the resource type at the start of each issue's
// expression ("Bundle.entry[2].resource" inside a Bundle; "" keeps it).
// q is the write's transaction, nil when the check runs before one.
func (s *Service) checkCodes(ctx context.Context, q store.Querier, typ string, body []byte, prefix string) error {
	if s.codes == nil {
		return nil
	}
	// The validator accepts a leading byte order mark (RFC 8259 lets a
	// parser ignore it); the checker decodes with encoding/json, which
	// does not.
	found, err := s.codes.CheckResource(ctx, q, typ, bytes.TrimPrefix(body, []byte("\ufeff")))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the codes of the %s could not be checked; try again", safeName(typ))
	}
	issues := fhir.Issues(found)
	if !issues.HasErrors() {
		return nil
	}
	if prefix != "" {
		for i := range issues {
			ex := make([]string, len(issues[i].Expression))
			for j, e := range issues[i].Expression {
				if rest, ok := strings.CutPrefix(e, typ); ok && (rest == "" || rest[0] == '.') {
					e = prefix + rest
				}
				ex[j] = e
			}
			issues[i].Expression = ex
		}
	}
	return errs.Wrap(errs.Unprocessable, &IssuesError{Issues: issues}, "the %s has codes that are not valid", safeName(typ))
}

// validateWrite is the limits check, validate and the code check, cheapest
// first.
func (s *Service) validateWrite(ctx context.Context, q store.Querier, body []byte, typ string) error {
	if err := s.CheckLimits(body, typ); err != nil {
		return err
	}
	if err := validate(body, typ); err != nil {
		return err
	}
	return s.checkCodes(ctx, q, typ, body, "")
}

// Create stores a new resource with a server-assigned id. ifNoneExist is a
// search query (conditional create): a single match is returned instead,
// with created false; several matches fail with 412.
func (s *Service) Create(ctx context.Context, g Guard, typ string, body []byte, ifNoneExist string) (rec Record, created bool, err error) {
	if err := Writable(typ); err != nil {
		return Record{}, false, err
	}
	if err := s.validateWrite(ctx, nil, body, typ); err != nil {
		return Record{}, false, err
	}
	if ifNoneExist == "" {
		rec, err := s.createGrouped(ctx, g, typ, body)
		return rec, err == nil, err
	}
	err = s.db.Tx(ctx, func(tx store.Tx) error {
		rec, created, err = s.createTx(ctx, tx, g, typ, "", body, ifNoneExist)
		return err
	})
	return rec, created, err
}

func (s *Service) createTx(ctx context.Context, tx store.Tx, g Guard, typ, id string, body []byte, ifNoneExist string) (Record, bool, error) {
	if ifNoneExist != "" {
		matches, err := s.matchIDs(ctx, tx, g, typ, ifNoneExist, 2)
		if err != nil {
			return Record{}, false, err
		}
		switch len(matches) {
		case 0:
		case 1:
			rec, err := s.readTx(ctx, tx, g, typ, matches[0])
			return rec, false, err
		default:
			return Record{}, false, errs.E(errs.PreconditionFailed, "the If-None-Exist criteria match more than one %s", typ)
		}
	}
	if id == "" {
		id = s.newID()
	}
	rec, err := s.write(ctx, tx, g, typ, id, body, writeOpts{method: "POST", mustBeNew: true})
	return rec, true, err
}

// Update stores a new version of typ/id, creating it when absent (the id
// is the client's). ifMatch, when set, is the version the client read; a
// mismatch fails with 412.
func (s *Service) Update(ctx context.Context, g Guard, typ, id string, body []byte, ifMatch string) (rec Record, created bool, err error) {
	if err := Writable(typ); err != nil {
		return Record{}, false, err
	}
	if !validID(id) {
		return Record{}, false, errs.E(errs.Invalid, "the id in the URL is not a valid FHIR id")
	}
	if err := s.validateWrite(ctx, nil, body, typ); err != nil {
		return Record{}, false, err
	}
	if err := bodyIDMatches(body, id); err != nil {
		return Record{}, false, err
	}
	want, err := parseIfMatch(ifMatch)
	if err != nil {
		return Record{}, false, err
	}
	err = s.db.Tx(ctx, func(tx store.Tx) error {
		rec, err = s.write(ctx, tx, g, typ, id, body, writeOpts{method: "PUT", ifMatch: want})
		return err
	})
	return rec, err == nil && rec.Version == 1, err
}

// ConditionalUpdate is PUT Type?query: no match creates (with the body's id
// or a new one), one match updates it, several fail with 412.
func (s *Service) ConditionalUpdate(ctx context.Context, g Guard, typ, query string, body []byte, ifMatch string) (rec Record, created bool, err error) {
	if err := Writable(typ); err != nil {
		return Record{}, false, err
	}
	if err := s.validateWrite(ctx, nil, body, typ); err != nil {
		return Record{}, false, err
	}
	want, err := parseIfMatch(ifMatch)
	if err != nil {
		return Record{}, false, err
	}
	err = s.db.Tx(ctx, func(tx store.Tx) error {
		rec, created, err = s.conditionalUpdateTx(ctx, tx, g, typ, query, body, want)
		return err
	})
	return rec, created, err
}

func (s *Service) conditionalUpdateTx(ctx context.Context, tx store.Tx, g Guard, typ, query string, body []byte, want int) (Record, bool, error) {
	// Asked before the criteria are: whether they match must not change
	// the answer of a caller who may not update the type (existence.go).
	if err := allowType(ctx, g, Access{Action: ActUpdate, Type: typ}); err != nil {
		return Record{}, false, err
	}
	matches, err := s.matchIDs(ctx, tx, g, typ, query, 2)
	if err != nil {
		return Record{}, false, err
	}
	env, _ := fhir.ReadEnvelope(body)
	switch len(matches) {
	case 0:
		id := env.ID
		if id == "" {
			id = s.newID()
		}
		rec, err := s.write(ctx, tx, g, typ, id, body, writeOpts{method: "PUT", ifMatch: want})
		return rec, true, err
	case 1:
		if env.ID != "" && env.ID != matches[0] {
			return Record{}, false, errs.E(errs.Invalid, "the resource id does not match the resource the conditional update found").InField(typ + ".id")
		}
		rec, err := s.write(ctx, tx, g, typ, matches[0], body, writeOpts{method: "PUT", ifMatch: want})
		return rec, false, err
	default:
		return Record{}, false, errs.E(errs.PreconditionFailed, "the conditional update criteria match more than one %s", typ)
	}
}

// Delete deletes typ/id. Deleting a record already deleted succeeds (R4
// lets delete be idempotent); an id that does not exist is not known, as
// a record out of the caller's reach is (existence.go).
func (s *Service) Delete(ctx context.Context, g Guard, typ, id string) error {
	if err := Writable(typ); err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx store.Tx) error {
		_, err := s.deleteTx(ctx, tx, g, typ, id)
		return err
	})
}

// ConditionalDelete deletes the single match of a query; several matches
// fail with 412 (this server does not offer multiple deletes).
func (s *Service) ConditionalDelete(ctx context.Context, g Guard, typ, query string) error {
	if err := Writable(typ); err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx store.Tx) error {
		if err := allowType(ctx, g, Access{Action: ActDelete, Type: typ}); err != nil {
			return err
		}
		matches, err := s.matchIDs(ctx, tx, g, typ, query, 2)
		if err != nil {
			return err
		}
		switch len(matches) {
		case 0:
			return nil
		case 1:
			_, err := s.deleteTx(ctx, tx, g, typ, matches[0])
			return err
		default:
			return errs.E(errs.PreconditionFailed, "the conditional delete criteria match more than one %s", typ)
		}
	})
}

func (s *Service) deleteTx(ctx context.Context, tx store.Tx, g Guard, typ, id string) (Record, error) {
	if err := allowType(ctx, g, Access{Action: ActDelete, Type: typ, ID: id}); err != nil {
		return Record{}, err
	}
	cur, exists, err := s.current(ctx, tx, typ, id)
	if err != nil {
		return Record{}, err
	}
	if !exists {
		return Record{}, errNotKnown(typ, id)
	}
	// A deleted row keeps its patient: deleting it again is decided as
	// deleting it was, so a deleted record out of reach is not known
	// either, and one in reach is a success that changes nothing.
	if _, err := allowWrite(ctx, g, tx, Access{Action: ActDelete, Type: typ, ID: id, PatientID: cur.PatientID}, nil); err != nil {
		return Record{}, err
	}
	if cur.Deleted {
		return Record{Type: typ, ID: id, Version: cur.Version, Deleted: true, PatientID: cur.PatientID}, nil
	}
	now := s.stamp()
	v := cur.Version + 1
	if err := keepReplaced(ctx, tx, cur); err != nil {
		return Record{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE resources SET version = $2, last_updated = $3, deleted = TRUE, method = 'DELETE', ciphertext = NULL WHERE rid = $1`, cur.rid, v, now); err != nil {
		return Record{}, fmt.Errorf("delete %s/%s: %w", typ, id, err)
	}
	if err := deleteIndexes(ctx, tx, cur.rid); err != nil {
		return Record{}, err
	}
	if err := s.runHooks(ctx, tx, typ, id, nil); err != nil {
		return Record{}, err
	}
	if err := s.runChanges(ctx, tx, Change{Kind: Deleted, Type: typ, ID: id, Version: v, PatientID: cur.PatientID, At: now}); err != nil {
		return Record{}, err
	}
	return Record{Type: typ, ID: id, Version: v, LastUpdated: now, Deleted: true, PatientID: cur.PatientID}, nil
}

// stamp is the time of a write, at the microsecond precision both
// databases keep.
func (s *Service) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

type writeOpts struct {
	method    string
	mustBeNew bool
	// ifMatch is the expected current version, 0 for none.
	ifMatch int
}

// current reads the current row's metadata, locking it on PostgreSQL.
func (s *Service) current(ctx context.Context, tx store.Tx, typ, id string) (Record, bool, error) {
	rec := Record{Type: typ, ID: id}
	var pid *string
	err := tx.QueryRow(ctx, `SELECT rid, version, deleted, patient_id FROM resources WHERE type = $1 AND id = $2`+tx.Dialect().ForUpdate(), typ, id).
		Scan(&rec.rid, &rec.Version, &rec.Deleted, &pid)
	if errors.Is(err, store.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read %s/%s: %w", typ, id, err)
	}
	if pid != nil {
		rec.PatientID = *pid
	}
	return rec, true, nil
}

// write stores body as the next version of typ/id inside tx: the row, its
// history and its indexes. The body must be valid.
func (s *Service) write(ctx context.Context, tx store.Tx, g Guard, typ, id string, body []byte, o writeOpts) (Record, error) {
	// A create has a fresh server-assigned id: the primary key catches the
	// impossible duplicate (409), so the look-up is skipped.
	var cur Record
	var exists bool
	if !o.mustBeNew {
		// An update by id: the type question before the look-up
		// (existence.go).
		if err := allowType(ctx, g, Access{Action: ActUpdate, Type: typ, ID: id}); err != nil {
			return Record{}, err
		}
		var err error
		if cur, exists, err = s.current(ctx, tx, typ, id); err != nil {
			return Record{}, err
		}
	}
	version := 1
	if exists {
		version = cur.Version + 1
	}
	now := s.stamp()
	raw, err := fhir.SetIDAndMeta(body, id, strconv.Itoa(version), now)
	if err != nil {
		return Record{}, errs.Wrap(errs.Invalid, err, "the resource could not be stored")
	}
	doc, err := decodeDoc(raw)
	if err != nil {
		return Record{}, errs.Wrap(errs.Invalid, err, "the resource could not be read")
	}
	if path, found := conditionalReference(typ, doc); found {
		return Record{}, errConditionalRef(path)
	}
	raw, doc, patient, err := s.allowFields(ctx, tx, g, typ, id, cur, exists, raw, doc)
	if err != nil {
		return Record{}, err
	}
	// If-Match is compared once the write is allowed: a version of a
	// record out of reach is not the caller's to learn, and its refusal
	// must read like that of an id that does not exist.
	if o.ifMatch != 0 && (!exists || cur.Deleted || cur.Version != o.ifMatch) {
		return Record{}, errs.E(errs.PreconditionFailed, "If-Match names version %d, but the current version of %s/%s is not that one", o.ifMatch, typ, id)
	}
	rows, err := extract(s.ring, typ, doc, s.limits.IndexRows)
	if err != nil {
		return Record{}, err
	}
	ct, err := s.ring.Seal(versionAAD(typ, id, version), raw)
	if err != nil {
		return Record{}, err
	}
	rid := cur.rid
	if exists {
		if err := keepReplaced(ctx, tx, cur); err != nil {
			return Record{}, err
		}
		_, err = tx.Exec(ctx, `UPDATE resources SET version = $2, last_updated = $3, deleted = FALSE, method = $4, patient_id = $5, ciphertext = $6 WHERE rid = $1`,
			rid, version, now, o.method, store.NullIfEmpty(patient), ct)
	} else {
		err = tx.QueryRow(ctx, `INSERT INTO resources (type, id, version, last_updated, deleted, method, patient_id, ciphertext) VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7) RETURNING rid`,
			typ, id, version, now, o.method, store.NullIfEmpty(patient), ct).Scan(&rid)
	}
	if err != nil {
		if store.IsUniqueViolation(err) {
			return Record{}, errs.Wrap(errs.Conflict, err, "%s/%s was created concurrently; retry", typ, id)
		}
		return Record{}, fmt.Errorf("store %s/%s: %w", typ, id, err)
	}
	if exists {
		if err := deleteIndexes(ctx, tx, rid); err != nil {
			return Record{}, err
		}
	}
	if err := insertIndexes(ctx, tx, typ, rid, rows); err != nil {
		return Record{}, err
	}
	if err := s.runHooks(ctx, tx, typ, id, raw); err != nil {
		return Record{}, err
	}
	kind := Created
	if exists && !cur.Deleted {
		kind = Updated
	}
	if err := s.runChanges(ctx, tx, Change{Kind: kind, Type: typ, ID: id, Version: version, PatientID: patient, At: now}); err != nil {
		return Record{}, err
	}
	return Record{Type: typ, ID: id, Version: version, LastUpdated: now, PatientID: patient, JSON: raw, Method: o.method}, nil
}

func (s *Service) runHooks(ctx context.Context, tx store.Tx, typ, id string, raw []byte) error {
	for _, h := range s.hooks {
		if err := h.Written(ctx, tx, typ, id, raw); err != nil {
			return err
		}
	}
	return nil
}

var indexTables = []string{"resource_tokens", "resource_strings", "resource_dates", "resource_refs", "resource_numbers"}

// keepReplaced copies cur, the current version about to be replaced (a
// delete too), from resources into resource_history, which holds the
// replaced versions only: the current one is the resources row, so its
// JSON is stored once (migration 0024). It runs in the write's
// transaction, before the row is overwritten, under the row's lock on
// PostgreSQL (current), so no write slips between the copy and the
// overwrite.
func keepReplaced(ctx context.Context, tx store.Tx, cur Record) error {
	_, err := tx.Exec(ctx, `INSERT INTO resource_history (type, id, version, last_updated, deleted, method, patient_id, ciphertext)
SELECT type, id, version, last_updated, deleted, method, patient_id, ciphertext FROM resources WHERE rid = $1`, cur.rid)
	if err != nil {
		if store.IsUniqueViolation(err) {
			return errs.Wrap(errs.Conflict, err, "%s/%s was changed concurrently; retry", cur.Type, cur.ID)
		}
		return fmt.Errorf("keep version %d of %s/%s: %w", cur.Version, cur.Type, cur.ID, err)
	}
	return nil
}

func deleteIndexes(ctx context.Context, tx store.Tx, rid int64) error {
	for _, t := range indexTables {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t+" WHERE rid = $1", rid); err != nil {
			return fmt.Errorf("clear %s of resource %d: %w", t, rid, err)
		}
	}
	return nil
}

// insertIndexes writes the rows of the resource rid (of type typ) with
// multi-row INSERTs, a few statements per resource instead of one per
// value. Equal rows are written once: they would find nothing more, and
// the SQLite tables are keyed by the whole row.
func insertIndexes(ctx context.Context, tx store.Tx, typ string, rid int64, rows indexRows) error {
	d := tx.Dialect()
	var batch [][]any
	seen := map[string]bool{}
	once := func(key ...string) bool {
		k := strings.Join(key, "\x00")
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for _, r := range rows.tokens {
		if !once("t", r.param, r.system, r.code) {
			continue
		}
		var code any = r.code
		if r.blind {
			code = blindValue(d, r.code)
		}
		batch = append(batch, []any{rid, paramKey(typ, r.param), r.system, code})
	}
	if err := insertRows(ctx, tx, "INSERT INTO resource_tokens (rid, param, system, code) VALUES ", batch); err != nil {
		return err
	}
	batch = batch[:0]
	for _, r := range rows.strs {
		var value any = r.value
		raw := ""
		if r.raw != nil {
			raw = *r.raw
		} else {
			value = blindValue(d, r.value)
		}
		if !once("s", r.param, r.value, raw) {
			continue
		}
		batch = append(batch, []any{rid, paramKey(typ, r.param), value, raw})
	}
	if err := insertRows(ctx, tx, "INSERT INTO resource_strings (rid, param, value, raw) VALUES ", batch); err != nil {
		return err
	}
	batch = batch[:0]
	for _, r := range rows.dates {
		if !once("d", r.param, r.low.String(), r.high.String()) {
			continue
		}
		batch = append(batch, []any{rid, paramKey(typ, r.param), r.low, r.high})
	}
	if err := insertRows(ctx, tx, "INSERT INTO resource_dates (rid, param, low, high) VALUES ", batch); err != nil {
		return err
	}
	batch = batch[:0]
	for _, r := range rows.refs {
		if !once("r", r.param, r.targetType, r.targetID) {
			continue
		}
		batch = append(batch, []any{rid, paramKey(typ, r.param), r.targetType, r.targetID})
	}
	if err := insertRows(ctx, tx, "INSERT INTO resource_refs (rid, param, target_type, target_id) VALUES ", batch); err != nil {
		return err
	}
	batch = batch[:0]
	for _, r := range rows.numbers {
		if !once("n", r.param, strconv.FormatFloat(r.value, 'g', -1, 64), r.system, r.code) {
			continue
		}
		batch = append(batch, []any{rid, paramKey(typ, r.param), r.value, r.system, r.code})
	}
	return insertRows(ctx, tx, "INSERT INTO resource_numbers (rid, param, value, system, code) VALUES ", batch)
}

// maxRowsPerInsert keeps a statement's parameters well under SQLite's limit.
const maxRowsPerInsert = 100

func insertRows(ctx context.Context, tx store.Tx, prefix string, rows [][]any) error {
	if tx.Dialect() == store.SQLite {
		// OR FAIL: an error keeps the rows already inserted by this
		// statement, which is what lets SQLite skip the statement journal
		// (a temporary file written for every multi-row INSERT, a quarter
		// of a create's time). Any error fails the whole transaction, so
		// nothing partial is ever committed.
		prefix = strings.Replace(prefix, "INSERT INTO", "INSERT OR FAIL INTO", 1)
	}
	for len(rows) > 0 {
		n := min(len(rows), maxRowsPerInsert)
		var b strings.Builder
		b.WriteString(prefix)
		args := make([]any, 0, n*len(rows[0]))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j, v := range r {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, v)
				b.WriteString("$" + strconv.Itoa(len(args)))
			}
			b.WriteByte(')')
		}
		if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("write search index: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

func bodyIDMatches(body []byte, id string) error {
	env, err := fhir.ReadEnvelope(body)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "the body is not a FHIR resource")
	}
	if env.ID != id {
		return errs.E(errs.Invalid, "the resource id must equal the id in the URL").InField(env.ResourceType + ".id")
	}
	return nil
}

// parseIfMatch reads W/"3" (or "3") into 3; "" is 0.
func parseIfMatch(h string) (int, error) {
	if h == "" {
		return 0, nil
	}
	v := strings.TrimPrefix(strings.TrimSpace(h), "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errs.E(errs.PreconditionFailed, "If-Match must be a version ETag such as W/\"1\"")
	}
	return n, nil
}

// Read returns the current version of typ/id.
func (s *Service) Read(ctx context.Context, g Guard, typ, id string) (Record, error) {
	if !fhir.IsResourceType(typ) {
		return Record{}, errs.E(errs.NotFound, "%s is not a FHIR R4 resource type this server knows", safeName(typ))
	}
	return s.readTx(ctx, s.db.Reader(), g, typ, id)
}

func (s *Service) readTx(ctx context.Context, q store.Querier, g Guard, typ, id string) (Record, error) {
	if err := allowType(ctx, g, Access{Action: ActRead, Type: typ, ID: id}); err != nil {
		return Record{}, err
	}
	rec := Record{Type: typ, ID: id}
	var pid *string
	var ct []byte
	err := q.QueryRow(ctx, `SELECT version, last_updated, deleted, patient_id, ciphertext FROM resources WHERE type = $1 AND id = $2`, typ, id).
		Scan(&rec.Version, &rec.LastUpdated, &rec.Deleted, &pid, &ct)
	if errors.Is(err, store.ErrNoRows) {
		return Record{}, errNotKnown(typ, id)
	}
	if err != nil {
		return Record{}, fmt.Errorf("read %s/%s: %w", typ, safeID(id), err)
	}
	if pid != nil {
		rec.PatientID = *pid
	}
	if err := allowOn(ctx, g, q, Access{Action: ActRead, Type: typ, ID: id, PatientID: rec.PatientID}); err != nil {
		return Record{}, err
	}
	if rec.Deleted {
		return rec, errs.Wrap(errs.NotFound, ErrDeleted, "%s/%s was deleted", typ, id)
	}
	rec.JSON, err = s.ring.Open(ctx, versionAAD(typ, id, rec.Version), ct)
	if err != nil {
		return Record{}, fmt.Errorf("open %s/%s: %w", typ, id, err)
	}
	return rec, nil
}

func safeID(id string) string {
	if validID(id) {
		return id
	}
	return "(invalid id)"
}

// VRead returns one version of typ/id.
func (s *Service) VRead(ctx context.Context, g Guard, typ, id, version string) (Record, error) {
	if err := allowType(ctx, g, Access{Action: ActRead, Type: typ, ID: id}); err != nil {
		return Record{}, err
	}
	v, err := strconv.Atoi(version)
	if err != nil || v < 1 {
		return Record{}, errs.E(errs.NotFound, "%s/%s has no such version", safeName(typ), safeID(id))
	}
	rec := Record{Type: typ, ID: id, Version: v}
	var pid *string
	var ct []byte
	err = s.db.Reader().QueryRow(ctx, `SELECT last_updated, deleted, method, patient_id, ciphertext FROM resource_history WHERE type = $1 AND id = $2 AND version = $3
UNION ALL SELECT last_updated, deleted, method, patient_id, ciphertext FROM resources WHERE type = $1 AND id = $2 AND version = $3`, typ, id, v).
		Scan(&rec.LastUpdated, &rec.Deleted, &rec.Method, &pid, &ct)
	if errors.Is(err, store.ErrNoRows) {
		return Record{}, errs.E(errs.NotFound, "%s/%s has no version %d", safeName(typ), safeID(id), v)
	}
	if err != nil {
		return Record{}, fmt.Errorf("vread %s/%s: %w", typ, safeID(id), err)
	}
	if pid != nil {
		rec.PatientID = *pid
	}
	if err := allow(ctx, g, Access{Action: ActRead, Type: typ, ID: id, PatientID: rec.PatientID}); err != nil {
		return Record{}, err
	}
	if rec.Deleted {
		return rec, errs.Wrap(errs.NotFound, ErrDeleted, "version %d of %s/%s is a delete", v, typ, id)
	}
	rec.JSON, err = s.ring.Open(ctx, versionAAD(typ, id, v), ct)
	if err != nil {
		return Record{}, fmt.Errorf("open %s/%s version %d: %w", typ, id, v, err)
	}
	return rec, nil
}
