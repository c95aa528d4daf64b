package access

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/record"
)

func (g *Guard) logger() *slog.Logger {
	if g.svc.Logger != nil {
		return g.svc.Logger
	}
	return slog.Default()
}

// Visible is the response filter of the record's listings and reads: it
// decides every record once (a read, for the purpose decided), drops those
// the caller may not see (each audited as a denial), and returns the
// others' JSON, redacted, in order (nil for a version that is a delete).
// The reading of every patient's data it lets through is audited as action
// (search for a search's matches, read otherwise): one entry per patient
// and type, with the record's id when there is one record, unless an
// allowed decision of this unit of work (the read, the write, the search
// naming the patient) audited it already. The entries are kept for Flush.
func (g *Guard) Visible(ctx context.Context, recs []record.Record, action audit.Action) ([]json.RawMessage, []record.Record, error) {
	type group struct {
		n     int
		id    string
		entry audit.Entry
	}
	purpose := g.decidedPurpose()
	if g.caller.Principal != nil && g.svc.Authorizer != nil {
		patients := make([]string, 0, len(recs))
		for _, rec := range recs {
			patients = append(patients, rec.PatientID)
		}
		g.svc.Authorizer.Prefetch(g.policyContext(ctx), g.caller.Principal, purpose, patients)
	}
	var bodies []json.RawMessage
	var kept []record.Record
	groups := map[string]*group{}
	var order []string
	dropped := 0
	for _, rec := range recs {
		acc := Action{Req: auth.Request{Action: auth.ActionRead, ResourceType: rec.Type, PatientID: rec.PatientID, Purpose: purpose}, ResourceID: rec.ID}
		d := g.decide(ctx, acc.Req)
		if !d.Allowed {
			dropped++
			g.note(g.Entry(acc, d))
			continue
		}
		var body json.RawMessage
		if rec.JSON != nil {
			var err error
			if body, err = g.redact(d, rec.JSON); err != nil {
				return nil, nil, err
			}
		}
		bodies = append(bodies, body)
		kept = append(kept, rec)
		if rec.PatientID == "" {
			continue
		}
		key := patientKey(action, rec.Type, rec.PatientID)
		g.mu.Lock()
		done := g.shown[recordKey(rec.Ref())] || g.shown[key]
		g.mu.Unlock()
		if done {
			continue
		}
		grp := groups[key]
		if grp == nil {
			acc.AuditAction = action
			grp = &group{entry: g.Entry(acc, d)}
			grp.entry.ResourceID = ""
			groups[key] = grp
			order = append(order, key)
		}
		grp.n++
		grp.id = rec.ID
	}
	for _, key := range order {
		grp := groups[key]
		if grp.n == 1 {
			grp.entry.ResourceID = grp.id
		}
		g.note(grp.entry)
		g.mu.Lock()
		g.shown[key] = true
		g.mu.Unlock()
	}
	if dropped > 0 {
		// The listing's reach or a handler let through records the caller
		// may not see: a bug to fix (or a relationship that ended during
		// the unit of work), caught here. Counts only, no ids.
		g.logger().Warn("response filter dropped records", "request_id", g.caller.RequestID, "dropped", dropped, "kept", len(kept))
	}
	return bodies, kept, nil
}

// Record is one record a JSON API response is about to carry, with the
// patient whose data it is ("" for records that are not patient data).
type Record struct {
	ResourceType string
	ResourceID   string
	PatientID    string
	JSON         []byte
}

// Recheck is the JSON API's response filter: it decides every record again
// (a read, for purpose) and redacts each to the fields its decision
// allows. The result has one element per record, its redacted JSON, or
// nil where the record was dropped. A list built by a handler that got its
// query wrong still cannot leak another patient's record or a hidden
// field. Dropped records are audited as denials, in one append before the
// response; if that append fails the response is refused: a record
// withheld without a trace would hide the query's bug.
func (g *Guard) Recheck(ctx context.Context, purpose auth.Purpose, recs []Record) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(recs))
	var denials []audit.Entry
	for i, rec := range recs {
		a := Action{Req: auth.Request{Action: auth.ActionRead, ResourceType: rec.ResourceType, PatientID: rec.PatientID, Purpose: purpose}, ResourceID: rec.ResourceID}
		d := g.decide(ctx, a.Req)
		if !d.Allowed {
			denials = append(denials, g.Entry(a, d))
			continue
		}
		body, err := g.redact(d, rec.JSON)
		if err != nil {
			return nil, err
		}
		out[i] = body
	}
	if dropped := len(denials); dropped > 0 {
		// A handler's query returned records the caller may not see: a bug
		// to fix, caught here. Counts only, no ids.
		g.logger().Warn("response filter dropped records", "request_id", g.caller.RequestID, "dropped", dropped, "kept", len(recs)-dropped)
		if g.svc.Audit == nil {
			return nil, errNoAudit()
		}
		if _, err := g.svc.Audit.AppendAll(ctx, denials); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "the audit log is unavailable; try again")
		}
	}
	return out, nil
}

// Redact keeps of doc the fields decision d lets the caller see; handlers
// that answer a record they just changed use it with the decision that
// allowed the change.
func (g *Guard) Redact(d auth.Decision, doc []byte) ([]byte, error) {
	return g.redact(d, doc)
}

func (g *Guard) redact(d auth.Decision, doc []byte) ([]byte, error) {
	body, err := g.policy().RedactFields(d.Fields, doc)
	if err != nil {
		// A record we cannot parse cannot be shown safely.
		return nil, errs.Wrap(errs.Internal, err, "response filter")
	}
	return body, nil
}
