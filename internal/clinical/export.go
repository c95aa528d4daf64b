package clinical

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/deid"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// The research export (POST /ai-training-data/{id}): one workflow as a
// de-identified record (deid.Record, format careflow.deid.v1), for
// training and research.
//
// Invariants:
//   - Only with the patient's research consent in force. The export is
//     decided as export of a ClinicalWorkflow for purpose research, whose
//     default consent is deny: no permit in force, no export (403,
//     consent_denied), and the refusal is audited like the grant.
//   - Nothing that names the patient leaves (HIPAA Safe Harbor): the
//     record has no member for a name, address, telephone number,
//     identifier or full date; dates become years, ages over 89 "90+";
//     free text is scrubbed of the patient's own names, identifiers,
//     numbers, places and dates, read from their Patient record, and of
//     anything shaped like one.
//   - The patient is known by a keyed hash of their id (the export key,
//     derived from the master key and never stored), the same in every
//     export, unlinkable to the id without the key.
//   - What the export reads to scrub (the Patient, the Encounter) is read
//     as the caller, for research, audited like any read.

// exportPurpose separates the research pseudonyms from any other use of
// the export key.
const exportPurpose = "research-export"

// Export returns the de-identified record of one workflow.
func (s *Service) Export(ctx context.Context, g Guard, id string) (*deid.Record, error) {
	defer s.metrics.time("export")()
	if len(s.cfg.ExportKey) == 0 {
		return nil, errs.E(errs.Unavailable, "the research export has no key on this server")
	}
	ctx = auth.WithPurpose(ctx, auth.PurposeResearch)
	a := access.Action{Req: auth.Request{Action: auth.ActionExport, ResourceType: ResourceType, Purpose: auth.PurposeResearch},
		AuditAction: audit.ActionExport, ResourceID: id}
	w, err := loadWorkflow(ctx, s.cfg.DB.Reader(), id, false)
	if errs.Is(err, errs.NotFound) {
		if d := g.CheckType(ctx, a.Req); !d.Allowed {
			_ = g.AuditDecision(ctx, a, d)
			return nil, access.DenialError(d)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	a.Req.PatientID = w.PatientID
	if d, err := g.AuthorizeRecord(ctx, a); err != nil {
		if d.Reason == auth.ReasonNotRelated {
			return nil, notFound()
		}
		return nil, err
	}
	steps, err := loadSteps(ctx, s.cfg.DB.Reader(), w.ID)
	if err != nil {
		return nil, err
	}
	text, err := s.open(ctx, w)
	if err != nil {
		return nil, err
	}
	known, patient, period, err := s.knownOf(ctx, g, w)
	if err != nil {
		return nil, err
	}
	p, err := deid.NewPseudonymizer(s.cfg.ExportKey, exportPurpose)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	rec := deid.NewRecord(p.PatientKey(w.PatientID))
	if patient.Gender != "" {
		rec.Sex = patient.Gender
	}
	if !known.BirthDate.IsZero() {
		rec.SetAge(known.BirthDate, now)
	}
	rec.SetYear("workflow_created", w.CreatedAt)
	if w.CompletedAt != nil {
		rec.SetYear("workflow_ended", *w.CompletedAt)
		rec.SetFact("hours_to_end", strconv.Itoa(int(w.CompletedAt.Sub(w.CreatedAt).Hours())))
	}
	if t, ok := fhirDate(period.Start); ok {
		rec.SetYear("encounter_start", t)
	}
	if t, ok := fhirDate(period.End); ok {
		rec.SetYear("encounter_end", t)
	}
	rec.SetFact("type", string(w.Type))
	rec.SetFact("priority", string(w.Priority))
	rec.SetFact("status", string(w.Status))
	rec.SetFact("steps", strconv.Itoa(len(steps)))
	for i, st := range steps {
		// A step's code and state are the care given, not the patient.
		rec.SetFact("step_"+strconv.Itoa(i+1), st.Code+":"+string(st.Status))
	}
	scrub := deid.NewScrubber(known)
	for _, f := range []struct{ field, v string }{{"chief_complaint", text.ChiefComplaint}, {"clinical_notes", text.ClinicalNotes},
		{"working_diagnosis", text.WorkingDiagnosis}} {
		if f.v != "" {
			rec.SetText(scrub, f.field, f.v)
		}
	}
	if err := rec.Validate(); err != nil {
		// A record that breaks the format must not leave; the cause is a
		// bug, and the message names a member, never a value.
		return nil, errs.Wrap(errs.Internal, err, "the de-identified record breaks its format")
	}
	return rec, nil
}

// knownOf reads what identifies the workflow's patient, for the scrubber:
// the Patient record's names (and its contacts'), identifiers, telecoms,
// addresses and birth date, the encounter's dates, and the dates of the
// workflow itself. A patient record the caller may not read leaves the
// scrubber to its patterns alone: the export never widens a read.
func (s *Service) knownOf(ctx context.Context, g Guard, w *workflowRow) (deid.Known, fhir.Patient, fhir.Period, error) {
	var (
		k      deid.Known
		pat    fhir.Patient
		period fhir.Period
	)
	rec, err := s.cfg.Record.Read(ctx, g, "Patient", w.PatientID)
	switch {
	case err == nil:
		var extra struct {
			Contact []struct {
				Name    *fhir.HumanName     `json:"name"`
				Telecom []fhir.ContactPoint `json:"telecom"`
				Address *fhir.Address       `json:"address"`
			} `json:"contact"`
		}
		if err := json.Unmarshal(rec.JSON, &pat); err != nil {
			return k, pat, period, errs.Wrap(errs.Internal, err, "the patient record cannot be read")
		}
		_ = json.Unmarshal(rec.JSON, &extra)
		names := pat.Name
		telecoms := pat.Telecom
		addresses := pat.Address
		for _, c := range extra.Contact {
			if c.Name != nil {
				names = append(names, *c.Name)
			}
			telecoms = append(telecoms, c.Telecom...)
			if c.Address != nil {
				addresses = append(addresses, *c.Address)
			}
		}
		for _, n := range names {
			k.Names = append(k.Names, n.Text, n.Family)
			k.Names = append(k.Names, n.Given...)
		}
		for _, id := range pat.Identifier {
			k.IDs = append(k.IDs, id.Value)
		}
		for _, t := range telecoms {
			switch t.System {
			case "email":
				k.Emails = append(k.Emails, t.Value)
			case "url", "other":
				k.IDs = append(k.IDs, t.Value)
			default:
				k.Phones = append(k.Phones, t.Value)
			}
		}
		for _, a := range addresses {
			k.Addresses = append(k.Addresses, a.Text)
			k.Addresses = append(k.Addresses, a.Line...)
			k.Cities = append(k.Cities, a.City, a.District)
			k.PostalCodes = append(k.PostalCodes, a.PostalCode)
		}
		if t, ok := fhirDate(pat.BirthDate); ok {
			k.BirthDate = t
		}
	case errs.Is(err, errs.NotFound), errs.Is(err, errs.Forbidden):
	default:
		return k, pat, period, err
	}
	k.IDs = append(k.IDs, w.PatientID)
	if w.EncounterID != "" {
		rec, err := s.cfg.Record.Read(ctx, g, "Encounter", w.EncounterID)
		switch {
		case err == nil:
			var enc fhir.Encounter
			if json.Unmarshal(rec.JSON, &enc) == nil && enc.Period != nil {
				period = *enc.Period
				if t, ok := fhirDate(enc.Period.Start); ok {
					k.Dates = append(k.Dates, t)
				}
				if t, ok := fhirDate(enc.Period.End); ok {
					k.Dates = append(k.Dates, t)
				}
			}
		case errs.Is(err, errs.NotFound), errs.Is(err, errs.Forbidden):
		default:
			return k, pat, period, err
		}
	}
	k.Dates = append(k.Dates, w.CreatedAt)
	if w.CompletedAt != nil {
		k.Dates = append(k.Dates, *w.CompletedAt)
	}
	return k, pat, period, nil
}

// fhirDate reads a FHIR date or dateTime (a year or year-month counts as
// its first day).
func fhirDate(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly, "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
