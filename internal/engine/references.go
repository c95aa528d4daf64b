package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// RecordInput declares a member of a run's input that references a FHIR
// record. A run is about one patient, so every record its input names must
// be in that patient's compartment: StartRun checks each declared member
// before the run exists (checkRecordInputs), or a run about one patient
// could be made to act on another's encounter.
type RecordInput struct {
	// Member is the top-level member of the input holding the reference,
	// a relative FHIR reference "Type/id". An absent or null member is not
	// checked (the definition's Validate says whether it is required).
	Member string
	// Types lists the resource types the reference may name.
	Types []string
}

// Records reads where a FHIR record lives, without opening it: the engine
// asks it for the patient of each record a run's input references. It is
// declared here and satisfied by the record (wired in cmd/careflow).
type Records interface {
	// PatientOf returns the patient compartment (an opaque patient id) of
	// the current version of resourceType/id, read through q (the start's
	// transaction, so a record created in it counts). exists is false when
	// there is no such record or it is deleted; patientID is "" for a record
	// in no patient's compartment.
	PatientOf(ctx context.Context, q store.Querier, resourceType, id string) (patientID string, exists bool, err error)
}

// recordReference is a relative FHIR reference: a resource type and an id
// (the R4 id rule: 1 to 64 letters, digits, - and .).
var recordReference = regexp.MustCompile(`^([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})$`)

// validateRecordInputs checks the declaration when a definition is
// registered.
func validateRecordInputs(d *Definition) error {
	seen := map[string]bool{}
	for _, ri := range d.RecordInputs {
		if ri.Member == "" || seen[ri.Member] || len(ri.Types) == 0 {
			return fmt.Errorf("definition %s v%d: a record input needs a member (once) and at least one type", d.Name, d.Version)
		}
		seen[ri.Member] = true
	}
	return nil
}

// checkRecordInputs refuses a start whose input references a record that
// is not the run's patient's. Every way of not being the patient's gets
// the same answer, naming the member and never the value: a record of
// another patient, one in no compartment, a deleted one, one that does not
// exist, and one of a type the starter may not read (mayRead) are one
// 422, so a start is no way to probe for records out of the caller's reach.
func (e *Engine) checkRecordInputs(ctx context.Context, q store.Querier, def *Definition, input []byte, patientID string, mayRead func(string) bool) error {
	if len(def.RecordInputs) == 0 {
		return nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(input, &members); err != nil {
		return errs.E(errs.Invalid, "must be a JSON object").InField("input")
	}
	for _, ri := range def.RecordInputs {
		raw, ok := members[ri.Member]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		field := "input." + ri.Member
		var ref string
		m := []string(nil)
		if json.Unmarshal(raw, &ref) == nil {
			m = recordReference.FindStringSubmatch(ref)
		}
		if m == nil || !slices.Contains(ri.Types, m[1]) {
			return errs.E(errs.Invalid, "must be a reference %s/<id>", strings.Join(ri.Types, "/<id> or ")).InField(field)
		}
		notTheirs := errs.E(errs.Unprocessable, "must reference an existing %s record of the run's patient", m[1]).InField(field)
		if patientID == "" {
			// A record can only be checked against a patient.
			return notTheirs
		}
		if e.records == nil {
			return errs.E(errs.Unavailable, "this server cannot check record references, so this workflow cannot start")
		}
		owner, exists, err := e.records.PatientOf(ctx, q, m[1], m[2])
		if err != nil {
			return err
		}
		if !exists || owner != patientID || (mayRead != nil && !mayRead(m[1])) {
			return notTheirs
		}
	}
	return nil
}
