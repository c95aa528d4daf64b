package hcx

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// Reading is what careflow understood of a Bundle a payer sent: the main
// resource (the exchange's subject: a ClaimResponse, a
// CoverageEligibilityResponse, a PaymentNotice...), every entry by type,
// and what strict R4 would have refused but careflow tolerates.
type Reading struct {
	// BundleType is Bundle.type (document, collection, message), or "" when
	// the payload was a bare resource.
	BundleType string
	MainType   string
	Main       json.RawMessage
	// Entries holds every entry's resource by resourceType, in the Bundle's
	// order (the main resource included).
	Entries map[string][]json.RawMessage
	// Warnings name paths and rules, never values.
	Warnings []string
}

// exchangeTypes are the resources an HCX (or NPHIES) exchange is about;
// the others (Patient, Organization, Coverage, Practitioner...) are its
// context.
var exchangeTypes = map[string]bool{
	"Claim": true, "ClaimResponse": true,
	"CoverageEligibilityRequest": true, "CoverageEligibilityResponse": true,
	"Communication": true, "CommunicationRequest": true,
	"PaymentNotice": true, "PaymentReconciliation": true,
	"Task": true, "InsurancePlan": true,
}

// required lists the elements R4 requires (min 1) of the resources whose
// absence payers are known to skip; a missing one is a warning.
var required = map[string][]string{
	"Composition":                 {"status", "type", "date", "author", "title"},
	"Claim":                       {"status", "type", "use", "patient", "created", "provider", "priority", "insurance"},
	"ClaimResponse":               {"status", "type", "use", "patient", "created", "insurer", "outcome"},
	"CoverageEligibilityRequest":  {"status", "purpose", "patient", "created", "insurer"},
	"CoverageEligibilityResponse": {"status", "purpose", "patient", "created", "request", "outcome", "insurer"},
	"PaymentNotice":               {"status", "created", "payment", "recipient", "amount"},
	"PaymentReconciliation":       {"status", "created", "paymentDate", "paymentAmount"},
	"CommunicationRequest":        {"status"},
	"Communication":               {"status"},
	"Task":                        {"status", "intent"},
}

type entry struct {
	index   int
	fullURL string
	typ     string
	id      string
	raw     json.RawMessage
}

// ReadBundle reads a payer's payload leniently: a FHIR document Bundle
// (HCX v0.7: a Composition first, whose sections point at the main
// resource), a collection Bundle (HCX v0.7.1: the main resource first), a
// message Bundle (NPHIES: a MessageHeader whose focus is the main
// resource), or a bare resource. It refuses only what it cannot read: not
// JSON, not a FHIR resource, a Bundle without entries or without a main
// resource. What strict R4 would refuse is kept as a warning.
func ReadBundle(raw []byte) (Reading, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return Reading{}, errs.E(errs.Invalid, "the payload is not a JSON object").InField("payload")
	}
	rt := jsonString(top["resourceType"])
	if rt == "" || !fhir.IsResourceType(rt) {
		return Reading{}, errs.E(errs.Invalid, "the payload is not a FHIR resource").InField("payload.resourceType")
	}
	if rt != "Bundle" {
		r := Reading{MainType: rt, Main: json.RawMessage(raw), Entries: map[string][]json.RawMessage{rt: {json.RawMessage(raw)}}}
		r.Warnings = append(r.Warnings, "payload: a bare "+rt+", not a Bundle")
		r.Warnings = append(r.Warnings, missingRequired(rt, top, rt)...)
		return r, nil
	}
	r := Reading{BundleType: jsonString(top["type"]), Entries: map[string][]json.RawMessage{}}
	if r.BundleType == "" {
		r.Warn("Bundle.type: absent (required)")
	}
	if _, ok := top["identifier"]; !ok {
		r.Warn("Bundle.identifier: absent")
	}
	if _, ok := top["timestamp"]; !ok && r.BundleType == "document" {
		r.Warn("Bundle.timestamp: absent (required of a document)")
	}
	var rawEntries []json.RawMessage
	if err := json.Unmarshal(top["entry"], &rawEntries); err != nil || len(rawEntries) == 0 {
		return Reading{}, errs.E(errs.Invalid, "the Bundle has no entries").InField("payload.entry")
	}
	var entries []entry
	for i, re := range rawEntries {
		path := "Bundle.entry[" + strconv.Itoa(i) + "]"
		var e struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		}
		if err := json.Unmarshal(re, &e); err != nil {
			r.Warn(path + ": not an object; skipped")
			continue
		}
		var res map[string]json.RawMessage
		if err := json.Unmarshal(e.Resource, &res); err != nil {
			r.Warn(path + ".resource: absent or not an object; skipped")
			continue
		}
		typ := jsonString(res["resourceType"])
		if typ == "" || !fhir.IsResourceType(typ) {
			r.Warn(path + ".resource.resourceType: absent or unknown; skipped")
			continue
		}
		if e.FullURL == "" {
			r.Warn(path + ".fullUrl: absent")
		}
		r.Warnings = append(r.Warnings, missingRequired(typ, res, path+".resource("+typ+")")...)
		entries = append(entries, entry{index: i, fullURL: e.FullURL, typ: typ, id: jsonString(res["id"]), raw: e.Resource})
		r.Entries[typ] = append(r.Entries[typ], e.Resource)
	}
	if len(entries) == 0 {
		return Reading{}, errs.E(errs.Invalid, "the Bundle has no readable entry").InField("payload.entry")
	}
	main, ok := r.findMain(entries)
	if !ok {
		return Reading{}, errs.E(errs.Invalid, "the Bundle has no main resource").InField("payload.entry")
	}
	r.MainType, r.Main = main.typ, main.raw
	return r, nil
}

// Warn records a deviation from strict R4 (a path and a rule).
func (r *Reading) Warn(w string) { r.Warnings = append(r.Warnings, w) }

// findMain picks the exchange's subject by the Bundle's own pointers (the
// Composition's sections, the MessageHeader's focus), then by position.
func (r *Reading) findMain(entries []entry) (entry, bool) {
	first := entries[0]
	switch {
	case first.typ == "Composition":
		if r.BundleType != "document" {
			r.Warn("Bundle.type: a Composition first, but the Bundle is not a document")
		}
		var comp struct {
			Section []struct {
				Entry []struct {
					Reference string `json:"reference"`
				} `json:"entry"`
			} `json:"section"`
		}
		_ = json.Unmarshal(first.raw, &comp)
		for _, s := range comp.Section {
			for _, ref := range s.Entry {
				if e, ok := resolve(entries, ref.Reference); ok && exchangeTypes[e.typ] {
					return e, true
				}
			}
		}
		r.Warn("Bundle.entry[0].resource(Composition).section: names no exchange resource of the Bundle")
	case first.typ == "MessageHeader":
		var mh struct {
			Focus []struct {
				Reference string `json:"reference"`
			} `json:"focus"`
		}
		_ = json.Unmarshal(first.raw, &mh)
		for _, f := range mh.Focus {
			if e, ok := resolve(entries, f.Reference); ok {
				return e, true
			}
		}
		r.Warn("Bundle.entry[0].resource(MessageHeader).focus: names no resource of the Bundle")
	case exchangeTypes[first.typ]:
		if r.BundleType == "document" {
			r.Warn("Bundle.entry[0]: a document Bundle must start with a Composition")
		}
		return first, true
	}
	for _, e := range entries {
		if exchangeTypes[e.typ] {
			if e.index != first.index {
				r.Warn("Bundle.entry[" + strconv.Itoa(e.index) + "]: the main resource is not first")
			}
			return e, true
		}
	}
	if first.typ != "Composition" && first.typ != "MessageHeader" {
		return first, true
	}
	if len(entries) > 1 {
		return entries[1], true
	}
	return entry{}, false
}

// resolve finds the entry a reference points at: by fullUrl, by
// "Type/id", or by an absolute URL ending in "Type/id". Reference case is
// forgiven in the type ("Claimresponse/1" finds ClaimResponse 1): some
// payers write it so.
func resolve(entries []entry, ref string) (entry, bool) {
	if ref == "" {
		return entry{}, false
	}
	for _, e := range entries {
		if e.fullURL != "" && e.fullURL == ref {
			return e, true
		}
	}
	for _, e := range entries {
		if e.id == "" {
			continue
		}
		local := e.typ + "/" + e.id
		if strings.EqualFold(ref, local) || strings.HasSuffix(strings.ToLower(ref), "/"+strings.ToLower(local)) {
			return e, true
		}
	}
	return entry{}, false
}

func missingRequired(typ string, res map[string]json.RawMessage, path string) []string {
	var w []string
	for _, el := range required[typ] {
		v, ok := res[el]
		if !ok || isEmptyJSON(v) {
			w = append(w, path+"."+el+": absent (required in R4)")
		}
	}
	return w
}

func isEmptyJSON(v json.RawMessage) bool {
	switch string(bytes.TrimSpace(v)) {
	case "", "null", `""`, "[]", "{}":
		return true
	}
	return false
}

func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// NewBundle builds the Bundle careflow sends: a collection (HCX v0.7.1)
// with the main resource first, an identifier (a urn:uuid), a timestamp,
// and a fullUrl for every entry, valid R4 or refused. A resource without
// an id is given one (a UUID); an entry's fullUrl is urn:uuid:<id> when
// the id is a UUID (careflow's are), else a name-based UUID of Type/id, so
// the same resource has the same fullUrl in every message.
func NewBundle(main []byte, others ...[]byte) ([]byte, error) {
	return newBundle(time.Now(), main, others...)
}

var fullURLSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("careflow.hcx.bundle.fullUrl"))

func newBundle(now time.Time, main []byte, others ...[]byte) ([]byte, error) {
	type bundleEntry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	var entries []bundleEntry
	for i, raw := range append([][]byte{main}, others...) {
		field := "bundle.entry[" + strconv.Itoa(i) + "]"
		var res map[string]json.RawMessage
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, errs.E(errs.Invalid, "not a JSON object").InField(field)
		}
		typ := jsonString(res["resourceType"])
		if !fhir.IsResourceType(typ) || typ == "Bundle" {
			return nil, errs.E(errs.Invalid, "not a FHIR resource that a Bundle entry may hold").InField(field + ".resourceType")
		}
		if i == 0 && !exchangeTypes[typ] {
			return nil, errs.E(errs.Invalid, "the main resource must be an exchange resource (Claim, CoverageEligibilityRequest, ...)").InField(field + ".resourceType")
		}
		id := jsonString(res["id"])
		if id == "" {
			id = uuid.NewString()
			res["id"], _ = json.Marshal(id)
			raw, _ = json.Marshal(res)
		}
		full := "urn:uuid:" + id
		if !isUUID(id) {
			full = "urn:uuid:" + uuid.NewSHA1(fullURLSpace, []byte(typ+"/"+id)).String()
		}
		entries = append(entries, bundleEntry{FullURL: full, Resource: raw})
	}
	b, err := json.Marshal(struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Identifier   struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
		Type      string        `json:"type"`
		Timestamp string        `json:"timestamp"`
		Entry     []bundleEntry `json:"entry"`
	}{
		ResourceType: "Bundle", ID: uuid.NewString(),
		Identifier: struct {
			System string `json:"system"`
			Value  string `json:"value"`
		}{System: "urn:ietf:rfc:3986", Value: "urn:uuid:" + uuid.NewString()},
		Type: "collection", Timestamp: now.Format(time.RFC3339), Entry: entries,
	})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode the Bundle")
	}
	if issues := fhir.Validate(b); issues.HasErrors() {
		for _, is := range issues {
			if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
				field := "bundle"
				if len(is.Expression) > 0 {
					field = is.Expression[0]
				}
				return nil, errs.E(errs.Unprocessable, "the Bundle is not valid R4 (%s)", is.Code).InField(field)
			}
		}
	}
	return b, nil
}
