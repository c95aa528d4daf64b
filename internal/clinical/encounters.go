package clinical

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/record"
)

// The encounter routes are the FHIR record's Encounters, as the caller:
// the same records /fhir/R4/Encounter serves, decided, audited and
// redacted by the same guard. A workflow names one as its encounter.

// CreateEncounter stores a FHIR R4 Encounter as the caller.
func (s *Service) CreateEncounter(ctx context.Context, g Guard, body []byte) (record.Record, error) {
	defer s.metrics.time("create_encounter")()
	var probe struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return record.Record{}, errs.E(errs.Invalid, "the body is not a JSON object")
	}
	if probe.ResourceType != "Encounter" {
		return record.Record{}, errs.E(errs.Invalid, "must be Encounter").InField("resourceType")
	}
	rec, _, err := s.cfg.Record.Create(ctx, g, "Encounter", body, "")
	return rec, err
}

// Encounter reads a FHIR Encounter as the caller.
func (s *Service) Encounter(ctx context.Context, g Guard, id string) (record.Record, error) {
	defer s.metrics.time("read_encounter")()
	return s.cfg.Record.Read(ctx, g, "Encounter", id)
}

// SearchFilter is GET /search: the workflows filter (its created range is
// From/To) and, for encounters, the patient, the provider (a participant),
// the encounter's own status and its period's dates.
type SearchFilter struct {
	Filter
	// EncounterStatus is an Encounter.status code.
	EncounterStatus string
	// From and To bound both the workflows' creation and the encounters'
	// dates.
	From, To time.Time
}

// SearchResult is the answer of GET /search: a page of workflows and the
// matching encounters (FHIR R4 Encounters, redacted for the caller).
type SearchResult struct {
	Workflows  []json.RawMessage `json:"workflows"`
	NextCursor string            `json:"next_cursor,omitempty"`
	Encounters []json.RawMessage `json:"encounters"`
}

var encounterStatuses = []string{"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}

// Search finds workflows and encounters together. Type and priority are
// the workflows' own: given either, the encounters are those the matching
// workflows name; otherwise they are searched in the record by patient,
// provider, status and dates, confined to the caller's reach like any FHIR
// search.
func (s *Service) Search(ctx context.Context, g Guard, f SearchFilter) (SearchResult, error) {
	defer s.metrics.time("search")()
	if f.EncounterStatus != "" && !slices.Contains(encounterStatuses, f.EncounterStatus) {
		return SearchResult{}, errs.E(errs.Invalid, "must be an Encounter status code").InField("encounter_status")
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return SearchResult{}, errs.E(errs.Invalid, "must be after from").InField("to")
	}
	f.CreatedFrom, f.CreatedTo = f.From, f.To
	// References become ids here too: the encounter query is built from
	// the same filter.
	if err := f.Filter.check(); err != nil {
		return SearchResult{}, err
	}
	page, err := s.List(ctx, g, f.Filter)
	if err != nil {
		return SearchResult{}, err
	}
	out := SearchResult{Workflows: page.Workflows, NextCursor: page.NextCursor, Encounters: []json.RawMessage{}}
	params := url.Values{"_count": {strconv.Itoa(f.Limit)}}
	if f.Type != "" || f.Priority != "" {
		// The encounters the page's workflows name, in one search as the
		// caller (confined and audited like any).
		var ids []string
		seen := map[string]bool{}
		for _, w := range page.Workflows {
			var v struct {
				Encounter string `json:"encounter"`
			}
			if json.Unmarshal(w, &v) != nil || v.Encounter == "" || seen[v.Encounter] {
				continue
			}
			seen[v.Encounter] = true
			ids = append(ids, v.Encounter[len("Encounter/"):])
		}
		if len(ids) == 0 {
			return out, nil
		}
		params.Set("_id", strings.Join(ids, ","))
		return out, s.searchEncounters(ctx, g, &out, params)
	}
	if f.Patient != "" {
		params.Set("patient", "Patient/"+f.Patient)
	}
	if f.Provider != "" {
		params.Set("participant", "Practitioner/"+f.Provider)
	}
	if f.EncounterStatus != "" {
		params.Set("status", f.EncounterStatus)
	}
	if !f.From.IsZero() {
		params.Add("date", "ge"+f.From.UTC().Format(time.RFC3339))
	}
	if !f.To.IsZero() {
		params.Add("date", "lt"+f.To.UTC().Format(time.RFC3339))
	}
	return out, s.searchEncounters(ctx, g, &out, params)
}

// searchEncounters runs a FHIR Encounter search as the caller and adds
// what the caller may see of its matches.
func (s *Service) searchEncounters(ctx context.Context, g Guard, out *SearchResult, params url.Values) error {
	q, err := s.cfg.Record.ParseQuery("Encounter", params)
	if err != nil {
		return err
	}
	res, err := s.cfg.Record.Search(ctx, g, q)
	if err != nil {
		return err
	}
	bodies, _, err := g.Visible(ctx, res.Matches, audit.ActionRead)
	if err != nil {
		return err
	}
	out.Encounters = append(out.Encounters, bodies...)
	return nil
}
