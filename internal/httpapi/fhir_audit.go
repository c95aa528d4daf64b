package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	careaccess "github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
)

// AuditEvent on the FHIR surface is a read-only view of the audit log:
// every entry is an AuditEvent whose id is its sequence number. Entries
// hold ids and codes only, so the view holds no PHI beyond opaque ids.
// Writes to AuditEvent are refused by the record (405). fhirRead and
// fhirSearch hand AuditEvent over to the handlers here (a route of its own
// would conflict with the generic {type} patterns).

// auditEventOf renders an audit entry as an R4 AuditEvent.
func auditEventOf(e audit.Entry) map[string]any {
	action := map[audit.Action]string{
		audit.ActionRead: "R", audit.ActionSearch: "E", audit.ActionCreate: "C",
		audit.ActionUpdate: "U", audit.ActionDelete: "D", audit.ActionExport: "R", audit.ActionBreakGlass: "E",
	}[e.Action]
	if action == "" {
		action = "E"
	}
	outcome := map[audit.Outcome]string{audit.OutcomeSuccess: "0", audit.OutcomeDenied: "4", audit.OutcomeError: "8"}[e.Outcome]
	if outcome == "" {
		outcome = "8"
	}
	at := fhir.FormatInstant(e.Time)
	agent := map[string]any{
		"type":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser"}}},
		"role":      []any{map[string]any{"text": e.Role}},
		"requestor": true,
	}
	if e.Actor != "" {
		agent["who"] = map[string]any{"identifier": map[string]any{"system": "urn:careflow:principal", "value": e.Actor}}
	}
	if e.ClientAddr != "" {
		agent["network"] = map[string]any{"address": e.ClientAddr, "type": "2"}
	}
	if e.Purpose != "" {
		agent["purposeOfUse"] = []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": e.Purpose}}}}
	}
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"id":           strconv.FormatInt(e.Seq, 10),
		"meta":         map[string]any{"versionId": "1", "lastUpdated": at},
		"type":         map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
		"subtype":      []any{map[string]any{"system": "urn:careflow:audit-action", "code": string(e.Action)}},
		"action":       action,
		"recorded":     at,
		"outcome":      outcome,
		"agent":        []any{agent},
		"source":       map[string]any{"observer": map[string]any{"display": "careflow"}},
	}
	if e.Severity != "" && e.Severity != audit.SeverityInfo {
		ev["outcomeDesc"] = "severity " + string(e.Severity)
	}
	var entities []any
	if e.ResourceType != "" {
		what := map[string]any{"type": e.ResourceType}
		if e.ResourceID != "" {
			what["reference"] = e.ResourceType + "/" + e.ResourceID
		}
		entities = append(entities, map[string]any{"what": what})
	}
	if e.PatientID != "" {
		entities = append(entities, map[string]any{
			"what": map[string]any{"reference": "Patient/" + e.PatientID},
			"role": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
		})
	}
	if e.RequestID != "" {
		entities = append(entities, map[string]any{"what": map[string]any{"identifier": map[string]any{"system": "urn:careflow:request-id", "value": e.RequestID}}})
	}
	if len(entities) > 0 {
		ev["entity"] = entities
	}
	return ev
}

func (s *Server) fhirAuditRead(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	seq, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || seq < 0 {
		s.fhirError(w, r, errs.E(errs.NotFound, "no such AuditEvent"))
		return
	}
	if err := g.Allow(r.Context(), record.Access{Action: record.ActRead, Type: "AuditEvent", ID: r.PathValue("id")}); err != nil {
		s.fhirError(w, r, err)
		return
	}
	e, err := audit.Get(r.Context(), s.opts.DB, seq)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	body, _ := json.Marshal(auditEventOf(e))
	writeFHIR(w, http.StatusOK, body)
}

// fhirAuditSearch supports date (ge, gt, le, lt; repeatable), patient,
// agent (principal id), entity-type, outcome (0, 4, 8), _count, and the
// keyset cursor _after that next links carry.
func (s *Server) fhirAuditSearch(w http.ResponseWriter, r *http.Request, g *careaccess.Guard) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.fhirError(w, r, errs.E(errs.Invalid, "the query string is malformed"))
		return
	}
	f := audit.Filter{Newest: true, Limit: record.DefaultCount}
	for k, vs := range vals {
		for _, v := range vs {
			if err := auditParam(&f, k, v); err != nil {
				s.fhirError(w, r, err)
				return
			}
		}
	}
	if err := g.Allow(r.Context(), record.Access{Action: record.ActSearch, Type: "AuditEvent", PatientID: f.PatientID}); err != nil {
		s.fhirError(w, r, err)
		return
	}
	page, err := audit.List(r.Context(), s.opts.DB, f)
	if err != nil {
		s.fhirError(w, r, err)
		return
	}
	base := baseURL(r)
	b := fhir.NewBundle(fhir.BundleSearchset)
	b.ID = newBundleID()
	vals.Del("_after")
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: base + "/AuditEvent?" + r.URL.RawQuery})
	if page.Next != nil {
		vals.Set("_after", strconv.FormatInt(*page.Next, 10))
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: base + "/AuditEvent?" + vals.Encode()})
	}
	for _, e := range page.Entries {
		body, _ := json.Marshal(auditEventOf(e))
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/AuditEvent/" + strconv.FormatInt(e.Seq, 10), Resource: body, Search: &fhir.BundleEntrySearch{Mode: "match"}})
	}
	writeJSON(w, fhirJSON, http.StatusOK, b)
}

func auditParam(f *audit.Filter, k, v string) error {
	bad := func(msg string) error { return errs.E(errs.Invalid, "%s", msg).InField(k) }
	switch k {
	case "_format":
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxListLimit {
			return bad("_count must be between 1 and 1000")
		}
		f.Limit = n
	case "_after":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return bad("_after must be a sequence number")
		}
		f.After = &n
	case "patient":
		f.PatientID = strings.TrimPrefix(v, "Patient/")
	case "agent":
		f.Actor = v
	case "entity-type":
		f.ResourceType = v
	case "outcome":
		switch v {
		case "0":
			f.Outcome = audit.OutcomeSuccess
		case "4":
			f.Outcome = audit.OutcomeDenied
		case "8":
			f.Outcome = audit.OutcomeError
		default:
			return bad("outcome must be 0, 4 or 8")
		}
	case "date":
		prefix, rest := "eq", v
		if len(v) > 2 && !strings.ContainsAny(v[:1], "0123456789") {
			prefix, rest = v[:2], v[2:]
		}
		t, err := time.Parse(time.RFC3339Nano, rest)
		if err != nil {
			d, derr := time.Parse("2006-01-02", rest)
			if derr != nil {
				return bad("date must be a date or an instant with a prefix ge, gt, le or lt")
			}
			t = d
		}
		switch prefix {
		case "ge", "gt":
			f.Since = t
		case "le", "lt":
			f.Until = t
		default:
			return bad("date takes the prefixes ge, gt, le and lt")
		}
	default:
		return bad("not a search parameter of the AuditEvent view (date, patient, agent, entity-type, outcome, _count)")
	}
	return nil
}
