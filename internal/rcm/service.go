package rcm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/terminology"
)

// JourneyType is the access policy's resource for a journey: decided
// against the journey's patient like any patient's record.
const JourneyType = "Journey"

// Config is what the revenue cycle needs.
type Config struct {
	DB        *store.DB
	Engine    *engine.Engine
	Records   Records
	Terms     Terms
	Payer     Payer
	Directory Directory
	Fees      FeeSchedule
	// Provider is the hospital as payers know it (participant code, name).
	Provider Provider
	// Blind keys the registration lock (*phi.Ring); required.
	Blind Blind
	Clock func() time.Time
	// Waits bounds the waits on payers; zero fields take DefaultWaits.
	Waits Waits
}

// Waits are how long a journey waits on a payer before it acts.
type Waits struct {
	Eligibility time.Duration // for the on_check answer
	Preauth     time.Duration // for the pre-authorization decision
	Claim       time.Duration // for claim/on_submit, before a status check
	StatusPolls int           // status checks before payer_timeout
	Payment     time.Duration // for the payment notice
	Attention   time.Duration // a work item is due in
}

// DefaultWaits are the production waits.
var DefaultWaits = Waits{Eligibility: time.Hour, Preauth: 72 * time.Hour, Claim: 24 * time.Hour, StatusPolls: 3,
	Payment: 45 * 24 * time.Hour, Attention: 72 * time.Hour}

func (w Waits) normalised() Waits {
	d := DefaultWaits
	if w.Eligibility > 0 {
		d.Eligibility = w.Eligibility
	}
	if w.Preauth > 0 {
		d.Preauth = w.Preauth
	}
	if w.Claim > 0 {
		d.Claim = w.Claim
	}
	if w.StatusPolls > 0 {
		d.StatusPolls = w.StatusPolls
	}
	if w.Payment > 0 {
		d.Payment = w.Payment
	}
	if w.Attention > 0 {
		d.Attention = w.Attention
	}
	return d
}

// Service is the revenue cycle's domain operations.
type Service struct {
	cfg   Config
	waits Waits
}

// New checks cfg and builds the service. Register its definitions on the
// engine's registry (Register) before the engine starts.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil, cfg.Engine == nil, cfg.Records == nil, cfg.Terms == nil, cfg.Payer == nil,
		cfg.Directory == nil, cfg.Fees == nil, cfg.Blind == nil:
		return nil, errors.New("rcm: DB, Engine, Records, Terms, Payer, Directory, Fees and Blind are required")
	case cfg.Provider.Code == "":
		return nil, errors.New("rcm: the provider's participant code is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Service{cfg: cfg, waits: cfg.Waits.normalised()}, nil
}

func (s *Service) now() time.Time { return s.cfg.Clock().UTC() }

// StartOptions are how a journey is started.
type StartOptions struct {
	// IdempotencyKey, scoped to the caller: a second start with the same
	// key returns the first journey (created false).
	IdempotencyKey string
	// BatchID names the batch the journey belongs to.
	BatchID string
}

var (
	idemKey    = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,200}$`)
	reasonCode = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// journeyInput is a journey run's input (sealed by the engine).
type journeyInput struct {
	Request JourneyRequest `json:"request"`
	// Reused: registration found the patient rather than creating them.
	Reused bool `json:"reused"`
	// For an appeal: the journey and claim appealed.
	AppealOf      string `json:"appeal_of,omitempty"`
	OriginalClaim string `json:"original_claim,omitempty"`
	Reason        string `json:"reason,omitempty"`
	PreAuthRef    string `json:"pre_auth_ref,omitempty"`
}

// StartJourney registers the patient and starts the journey's run, in one
// transaction, as the caller g (whom the audit log names for the Patient).
// A patient already registered with the same national ID (or, without one,
// the first other identifier) is reused. bool reports a new journey.
func (s *Service) StartJourney(ctx context.Context, g Guard, req JourneyRequest, opts StartOptions) (*Journey, bool, error) {
	// The type question first (may the caller start journeys at all),
	// unaudited; the decision on the patient, audited, once registration
	// has found or created them.
	typeReq := access.Action{Req: auth.Request{Action: auth.ActionCreate, ResourceType: JourneyType}}
	if d := g.CheckType(ctx, typeReq.Req); !d.Allowed {
		_ = g.AuditDecision(ctx, typeReq, d) // the refusal stands whether or not it was recorded
		return nil, false, access.DenialError(d)
	}
	if opts.IdempotencyKey != "" && !idemKey.MatchString(opts.IdempotencyKey) {
		return nil, false, errs.E(errs.Invalid, "must be 1-200 letters, digits, '.', '_', ':' or '-'").InField("Idempotency-Key")
	}
	now := s.now()
	if err := s.checkRequest(ctx, &req, now); err != nil {
		return nil, false, err
	}
	scoped := ""
	if opts.IdempotencyKey != "" {
		// Scoped to the caller: the same key from two callers names two
		// journeys. Kept as a digest, so the column names no user.
		sum := sha256.Sum256([]byte(callerKey(g) + "\x00" + opts.IdempotencyKey))
		scoped = hex.EncodeToString(sum[:])
	}
	if scoped != "" {
		if j, err := s.byIdempotencyKey(ctx, s.cfg.DB.Reader(), scoped); err == nil {
			return j, false, nil
		} else if !errs.Is(err, errs.NotFound) {
			return nil, false, err
		}
	}
	currency, err := s.cfg.Fees.Currency(ctx, s.cfg.DB.Reader(), req.Insurance.Payer)
	if err != nil {
		return nil, false, fmt.Errorf("payer currency: %w", err)
	}
	if currency == "" {
		currency = "EGP"
	}
	var (
		row     *journeyRow
		created = true
	)
	start := func(tx store.Tx) error {
		if scoped != "" {
			if _, err := loadByKey(ctx, tx, scoped); err == nil {
				created = false
				return nil
			} else if !errs.Is(err, errs.NotFound) {
				return err
			}
		}
		patient, reused, err := s.register(ctx, tx, g, req.Patient)
		if err != nil {
			return err
		}
		// The decision on the journey's patient is audited in this
		// transaction, with the Patient's: a start that rolls back leaves
		// no entry claiming it happened.
		if _, err := g.AuthorizeRecordTx(ctx, tx, access.Action{Req: auth.Request{Action: auth.ActionCreate, ResourceType: JourneyType,
			PatientID: patient}}); err != nil {
			return err
		}
		run, _, err := s.cfg.Engine.StartRunTx(ctx, tx, engine.StartOptions{Definition: definitionOf(req.Kind),
			Input: journeyInput{Request: req, Reused: reused}, PatientID: patient})
		if err != nil {
			return err
		}
		row = &journeyRow{ID: run.ID, Kind: req.Kind, PatientID: patient, Payer: req.Insurance.Payer, Status: StatusActive,
			Currency: currency, BatchID: opts.BatchID, Refs: map[string]string{"patient": "Patient/" + patient}, StartedAt: now}
		return insertJourney(ctx, tx, row, scoped)
	}
	// A start that finds the patient's identifier locked by another rolls
	// back, waits a little and tries again, holding no connection while
	// it waits.
	backoff := 5 * time.Millisecond
	for {
		created = true
		err = s.cfg.DB.Tx(ctx, start)
		if !errors.Is(err, errRegistrationBusy) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, false, errs.Wrap(errs.Unavailable, ctx.Err(), "the patient is being registered by another request; try again")
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	if err != nil {
		return nil, false, err
	}
	if !created {
		j, err := s.byIdempotencyKey(ctx, s.cfg.DB.Reader(), scoped)
		return j, false, err
	}
	j, err := s.view(ctx, row)
	return j, true, err
}

func callerKey(g Guard) string {
	c := g.Caller()
	if c.Principal != nil {
		return "p:" + c.Principal.Subject
	}
	if c.System != nil {
		return "s:" + c.System.Actor
	}
	return "anonymous"
}

func loadByKey(ctx context.Context, q store.Querier, key string) (*journeyRow, error) {
	j, err := scanJourney(q.QueryRow(ctx, `SELECT `+journeyColumns+` FROM rcm_journeys WHERE idempotency_key = $1`, key))
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "no such journey")
	}
	return j, err
}

func (s *Service) byIdempotencyKey(ctx context.Context, q store.Querier, key string) (*Journey, error) {
	row, err := loadByKey(ctx, q, key)
	if err != nil {
		return nil, err
	}
	return s.view(ctx, row)
}

// definitionOf names a kind's definition.
func definitionOf(kind string) string { return "rcm.journey." + kind }

var (
	isoDate   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	genders   = []string{"male", "female", "other", "unknown"}
	relations = []string{"", "self", "spouse", "child", "other"}
	payerCode = regexp.MustCompile(`^[A-Za-z0-9@._:\-]{1,100}$`)
)

// serviceDate is the date of service of an encounter start.
func serviceDate(start string) (time.Time, error) {
	if isoDate.MatchString(start) {
		return time.Parse("2006-01-02", start)
	}
	return time.Parse(time.RFC3339, start)
}

// checkRequest refuses a request that could never make a claim, naming the
// field and the rule, never the value.
func (s *Service) checkRequest(ctx context.Context, req *JourneyRequest, now time.Time) error {
	if !slices.Contains([]string{KindStandard, KindEmergency, KindScheduled}, req.Kind) {
		return errs.E(errs.Invalid, "must be standard, emergency or scheduled").InField("kind")
	}
	p := &req.Patient
	if strings.TrimSpace(p.Family) == "" {
		return errs.E(errs.Invalid, "is required").InField("patient.family")
	}
	if p.NationalID == "" && len(p.Identifiers) == 0 {
		return errs.E(errs.Invalid, "a national ID or another identifier is required to find or register the patient").InField("patient.national_id")
	}
	for i, id := range p.Identifiers {
		if u, err := url.Parse(id.System); err != nil || u.Scheme == "" || strings.TrimSpace(id.Value) == "" {
			return errs.E(errs.Invalid, "needs a system URI and a value").InField(fmt.Sprintf("patient.identifiers[%d]", i))
		}
	}
	if p.BirthDate != "" && !isoDate.MatchString(p.BirthDate) {
		return errs.E(errs.Invalid, "must be YYYY-MM-DD").InField("patient.birth_date")
	}
	if p.Gender != "" && !slices.Contains(genders, p.Gender) {
		return errs.E(errs.Invalid, "must be male, female, other or unknown").InField("patient.gender")
	}
	if p.NationalID != "" {
		nid, err := terminology.ParseEgyptianNationalID(p.NationalID, now)
		if err != nil {
			return errs.E(errs.Invalid, "is not an Egyptian national ID: %s", err.Error()).InField("patient.national_id")
		}
		if p.BirthDate != "" && nid.BirthDate.Format("2006-01-02") != p.BirthDate {
			return errs.E(errs.Invalid, "the national ID's birth date and birth_date disagree").InField("patient.national_id")
		}
		if (p.Gender == "male" || p.Gender == "female") && string(nid.Sex) != p.Gender {
			return errs.E(errs.Invalid, "the national ID's sex and gender disagree").InField("patient.national_id")
		}
	}
	if _, err := serviceDate(req.Encounter.Start); err != nil {
		return errs.E(errs.Invalid, "must be a date (YYYY-MM-DD) or an RFC 3339 time").InField("encounter.start")
	}
	if req.Encounter.Class != "" && !slices.Contains([]string{"AMB", "EMER", "IMP", "SS"}, req.Encounter.Class) {
		return errs.E(errs.Invalid, "must be AMB, EMER, IMP or SS").InField("encounter.class")
	}
	if len(req.DiagnosisCodes) == 0 {
		return errs.E(errs.Invalid, "at least one diagnosis is required").InField("diagnosis_codes")
	}
	if len(req.ProcedureCodes) == 0 {
		return errs.E(errs.Invalid, "at least one procedure is required").InField("procedure_codes")
	}
	in := req.Insurance
	if !payerCode.MatchString(in.Payer) {
		return errs.E(errs.Invalid, "is required: the payer's participant code").InField("insurance.payer")
	}
	if strings.TrimSpace(in.MemberID) == "" {
		return errs.E(errs.Invalid, "is required").InField("insurance.member_id")
	}
	if !slices.Contains(relations, in.Relationship) {
		return errs.E(errs.Invalid, "must be self, spouse, child or other").InField("insurance.relationship")
	}
	if _, ok, err := s.cfg.Directory.Lookup(ctx, in.Payer); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the payer registry could not be asked; try again")
	} else if !ok {
		return errs.E(errs.Invalid, "is not a payer careflow can reach (see GET /api/v1/rcm/payers)").InField("insurance.payer")
	}
	return nil
}

// errRegistrationBusy: another start is registering the same identifier;
// StartJourney rolls back and tries again.
var errRegistrationBusy = errors.New("the patient is being registered by another start")

// register finds the patient by identifier or creates them, as the caller.
// Two registrations of the same new patient are serialised by a lock on
// the identifier's keyed index (store.TryLockKeyTx), so the second finds
// what the first created.
func (s *Service) register(ctx context.Context, tx store.Tx, g Guard, p PatientInput) (string, bool, error) {
	system, value := SystemNationalID, p.NationalID
	if value == "" {
		system, value = p.Identifiers[0].System, p.Identifiers[0].Value
	}
	idx, err := s.cfg.Blind.CodeIndex("rcm-registration", system+"|"+value)
	if err != nil {
		return "", false, err
	}
	h := fnv.New64a()
	h.Write([]byte(idx))
	got, err := store.TryLockKeyTx(ctx, tx, int64(binary.BigEndian.Uint64(h.Sum(nil))))
	if err != nil {
		return "", false, fmt.Errorf("registration lock: %w", err)
	}
	if !got {
		return "", false, errRegistrationBusy
	}
	body, err := json.Marshal(patientResource(p))
	if err != nil {
		return "", false, err
	}
	ifNone := "identifier=" + url.QueryEscape(system+"|"+value)
	id, created, err := s.cfg.Records.CreateAsTx(ctx, tx, g, "Patient", body, ifNone)
	if err != nil {
		return "", false, err
	}
	return id, !created, nil
}

// authorizeJourney reads a journey and decides action on it against its
// patient (audited). Ids cannot be probed: a journey out of the caller's
// reach and a journey that does not exist are the same not-found for a
// role that may touch journeys at all; a role that may not gets its own
// refusal either way.
func (s *Service) authorizeJourney(ctx context.Context, g Guard, id string, action auth.Action, auditAction audit.Action) (*journeyRow, error) {
	a := access.Action{Req: auth.Request{Action: action, ResourceType: JourneyType}, AuditAction: auditAction, ResourceID: id}
	row, err := loadJourney(ctx, s.cfg.DB.Reader(), id, "")
	if errs.Is(err, errs.NotFound) {
		if d := g.CheckType(ctx, a.Req); !d.Allowed {
			_ = g.AuditDecision(ctx, a, d) // the refusal stands whether or not it was recorded
			return nil, access.DenialError(d)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	a.Req.PatientID = row.PatientID
	if d, err := g.AuthorizeRecord(ctx, a); err != nil {
		if d.Reason == auth.ReasonNotRelated || d.Reason == auth.ReasonPatientRequired {
			return nil, errs.E(errs.NotFound, "no such journey")
		}
		return nil, err
	}
	return row, nil
}

// Journey returns one journey the caller may read.
func (s *Service) Journey(ctx context.Context, g Guard, id string) (*Journey, error) {
	row, err := s.authorizeJourney(ctx, g, id, auth.ActionRead, "")
	if err != nil {
		return nil, err
	}
	return s.view(ctx, row)
}

// Cancel cancels a journey's run and closes it with outcome cancelled. A
// claim already submitted is not withdrawn from the payer (the HCX
// protocol careflow speaks has no claim cancellation): the journey records
// that it was submitted (reason "cancelled_after_submission"), so billing
// knows a payment may still arrive.
func (s *Service) Cancel(ctx context.Context, g Guard, id string, reason string) (*Journey, error) {
	row, err := s.authorizeJourney(ctx, g, id, auth.ActionUpdate, "")
	if err != nil {
		return nil, err
	}
	if row.Status == StatusCancelled || row.Status == StatusClosed {
		return nil, errs.E(errs.Conflict, "the journey has ended (%s)", row.Status)
	}
	if len(reason) > 500 {
		return nil, errs.E(errs.Invalid, "at most 500 characters").InField("reason")
	}
	// The run moves on its own (a callback, a timer) between the read and
	// the cancel; a few tries with its newest version settle it.
	for try := 0; ; try++ {
		run, err := s.cfg.Engine.GetRun(ctx, id)
		if err != nil {
			return nil, err
		}
		if run.Status.Final() {
			break
		}
		why := "cancelled"
		if reasonCode.MatchString(reason) {
			// A code is kept with the run's history; free text never is.
			why = reason
		}
		_, err = s.cfg.Engine.Cancel(ctx, id, run.RowVersion, why)
		if err == nil {
			break
		}
		if e, ok := errs.As(err); !ok || (e.Kind != errs.PreconditionFailed && e.Kind != errs.Conflict) || try == 4 {
			return nil, err
		}
	}
	err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
		var submitted int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM rcm_exchanges WHERE journey_id = $1 AND action = $2 AND state <> 'recorded'`,
			id, "claim/submit").Scan(&submitted); err != nil {
			return err
		}
		row, err = change(ctx, tx, id, s.now(), func(j *journeyRow) {
			j.Status, j.Outcome, j.Reason = StatusCancelled, OutcomeCancelled, ""
			if submitted > 0 {
				j.Reason = "cancelled_after_submission"
			}
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.view(ctx, row)
}
