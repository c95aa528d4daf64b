package audit

import (
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/errs"
)

// Action is what was done to the resource. The set is open (a domain package
// may audit an operation of its own), but an action is a short lower-case
// token, never free text.
type Action string

// The actions careflow's own code records.
const (
	ActionRead       Action = "read"   // one record, including vread and history
	ActionSearch     Action = "search" // a query returning records
	ActionCreate     Action = "create"
	ActionUpdate     Action = "update"
	ActionDelete     Action = "delete"
	ActionExport     Action = "export"      // bulk or de-identified export
	ActionBreakGlass Action = "break_glass" // emergency access declared
)

// Outcome says whether the access happened.
type Outcome string

// The outcomes. A denial is audited like an access: who tried what is as
// much evidence as who did it.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeDenied  Outcome = "denied" // authorization refused it
	OutcomeError   Outcome = "error"  // allowed, but it failed
)

// Severity ranks an entry for review.
type Severity string

// The severities. Break-the-glass access is High, so reviewers can list it
// without reading everything else.
const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityHigh    Severity = "high"
)

// Purpose-of-use codes (HL7 v3 PurposeOfUse) careflow records. The field
// accepts any code of the same shape.
const (
	PurposeTreatment          = "TREAT"
	PurposeEmergencyTreatment = "ETREAT" // break-the-glass
	PurposePayment            = "HPAYMT"
	PurposeOperations         = "HOPERAT"
	PurposeAudit              = "HSYSADMIN"
)

// Entry is one audited event: who did what to which record, for which
// patient, why, and how it ended. It holds identifiers and codes only,
// never PHI content: a patient is named by id, never by name.
//
// Seq and Time are set by the log when the entry is appended; the other
// fields by the caller.
type Entry struct {
	// Seq is the entry's 0-based position in the log's Merkle tree.
	Seq int64 `json:"seq"`
	// Time is when the entry was appended, UTC, to the microsecond.
	Time time.Time `json:"time"`
	// Actor is the user (or machine client) id; empty only when the caller
	// could not be identified (a failed authentication).
	Actor string `json:"actor"`
	// Role is the role the actor acted in.
	Role string `json:"role"`
	// Action is what was done.
	Action Action `json:"action"`
	// ResourceType is the FHIR resource type or the careflow record kind.
	ResourceType string `json:"resource_type"`
	// ResourceID is the record's id; empty for a search.
	ResourceID string `json:"resource_id,omitempty"`
	// PatientID is the patient whose data it is, when there is one.
	PatientID string `json:"patient_id,omitempty"`
	// Purpose is the purpose of use (see the Purpose constants).
	Purpose string `json:"purpose,omitempty"`
	// Outcome is how the access ended.
	Outcome Outcome `json:"outcome"`
	// Severity ranks the entry for review; empty means SeverityInfo.
	Severity Severity `json:"severity"`
	// RequestID ties the entry to the request's logs.
	RequestID string `json:"request_id,omitempty"`
	// ClientAddr is the client's IP address (no port).
	ClientAddr string `json:"client_addr,omitempty"`
}

// maxField bounds every text field: ids and codes are short, and a long
// value is more likely a pasted note than an id.
const maxField = 256

// normalize checks e as a caller's entry and returns it in stored form: time
// in UTC truncated to the microsecond (what both databases keep, so the
// canonical encoding survives a round trip), severity defaulted, the address
// in its canonical text form. Seq and Time are left to the caller.
func (e Entry) normalize() (Entry, error) {
	if e.Severity == "" {
		e.Severity = SeverityInfo
	}
	if e.ClientAddr != "" {
		a, err := netip.ParseAddr(e.ClientAddr)
		if err != nil || a.Zone() != "" {
			return Entry{}, errs.E(errs.Invalid, "client address must be an IP address without port or zone").InField("client_addr")
		}
		e.ClientAddr = a.Unmap().String()
	}
	checks := []struct {
		field, value string
		required     bool
		check        func(string) bool
	}{
		{"actor", e.Actor, false, isID},
		{"role", e.Role, true, isToken},
		{"action", string(e.Action), true, isToken},
		{"resource_type", e.ResourceType, true, isID},
		{"resource_id", e.ResourceID, false, isID},
		{"patient_id", e.PatientID, false, isID},
		{"purpose", e.Purpose, false, isID},
		{"request_id", e.RequestID, false, isID},
	}
	for _, c := range checks {
		if c.value == "" {
			if c.required {
				return Entry{}, errs.E(errs.Invalid, "is required").InField(c.field)
			}
			continue
		}
		// The message never quotes the value: a mistaken caller may have put
		// PHI where an id belongs.
		if len(c.value) > maxField || !c.check(c.value) {
			return Entry{}, errs.E(errs.Invalid, "must be an identifier or code (at most %d printable ASCII characters, no spaces)", maxField).InField(c.field)
		}
	}
	switch e.Outcome {
	case OutcomeSuccess, OutcomeDenied, OutcomeError:
	default:
		return Entry{}, errs.E(errs.Invalid, "must be success, denied or error").InField("outcome")
	}
	switch e.Severity {
	case SeverityInfo, SeverityWarning, SeverityHigh:
	default:
		return Entry{}, errs.E(errs.Invalid, "must be info, warning or high").InField("severity")
	}
	return e, nil
}

// isID accepts printable ASCII without spaces: UUIDs, FHIR ids, OIDC
// subjects, codes. Spaces are refused because names and notes have them.
func isID(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// isToken accepts lower-case letters, digits, '_', '-' and '.'.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// stampTime puts t in the form the databases keep.
func stampTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// canonicalPrefix versions the encoding. A new encoding gets a new prefix,
// and verification keeps reading the old one for old entries.
const canonicalPrefix = "careflow.audit.v1\n"

// Canonical returns the entry's canonical encoding, the record whose hash is
// its leaf in the tree: the version prefix, the time as microseconds since
// the Unix epoch (8 bytes, big-endian, two's complement), then each text
// field in a fixed order as a uvarint length and its bytes. Length prefixes
// make the encoding unambiguous without escaping; fixing the order and the
// time's resolution makes it deterministic. Seq is not encoded: an entry's
// position in the tree is its sequence number, so moving an entry changes
// the tree and not the leaf, which is what lets verification tell a moved
// entry from an edited one.
func (e Entry) Canonical() []byte {
	fields := [...]string{
		e.Actor, e.Role, string(e.Action), e.ResourceType, e.ResourceID, e.PatientID,
		e.Purpose, string(e.Outcome), string(e.Severity), e.RequestID, e.ClientAddr,
	}
	n := len(canonicalPrefix) + 8
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, canonicalPrefix...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMicro()))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// LeafHash is the entry's RFC 6962 leaf hash, SHA-256(0x00 || Canonical()).
func (e Entry) LeafHash() tlog.Hash { return tlog.RecordHash(e.Canonical()) }
