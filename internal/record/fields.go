package record

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// Field rules of writes. A role may be allowed to write a type but see only
// some of its top-level elements (clinical_admin and Patient: demographics,
// no narrative, no extensions). Its write must respect those fields both
// ways, inside the write's transaction and against the stored current
// version (never a read in one request and a write in another):
//
//   - The guard is told the elements the body sets (TxGuard.AllowTx) and
//     answers with a Grant; a body that sets an element outside the
//     grant's fields is refused (403, the element's path in the error, never
//     its value). The record refuses it too, should a guard grant fields
//     without checking them.
//   - Every element of the stored version outside the grant's fields is
//     kept: the stored document is the writer's body plus those elements.
//     A writer cannot erase, by leaving out, what it was never shown. The
//     merged document is validated again (a kept choice element may clash
//     with a written one) before it is stored; a failure is a 422 that
//     names no element, since the issues are about elements the writer may
//     not see.
//   - A primitive's "_name" extension sibling follows its element, as in
//     the read filter (auth.Policy.RedactFields).
//   - resourceType, id and meta are the record's envelope: every stored
//     version gets them from the write (the type and id are the request's,
//     meta.versionId and lastUpdated the server's), so they are never kept
//     from the stored version. Whether a writer may send meta is the
//     policy's (auth: always visible, so writable).
//
// A grant of every element (nil fields) costs nothing: no stored version is
// read and nothing is merged.

// Grant is what a guard allowed a create or update to do.
type Grant struct {
	// Fields are the top-level elements the write may set, replace or
	// remove; every other element of the stored version is kept. Nil means
	// every element.
	Fields []string
}

// envelope reports whether an element is the record's own (see above).
func envelope(name string) bool {
	return name == "resourceType" || name == "id" || name == "meta"
}

// elementNames are the elements a document sets, for the guard: sorted,
// each once, without resourceType and id (the request's own).
func elementNames(doc map[string]any) []string {
	out := make([]string, 0, len(doc))
	for k := range doc {
		name := fhir.ElementName(k)
		if name == "resourceType" || name == "id" || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// writable reports whether a grant lets the write set an element.
func (gr Grant) writable(name string) bool {
	return gr.Fields == nil || envelope(name) || slices.Contains(gr.Fields, name)
}

// refuseUnwritable is the record's own check of a grant: the first element
// the body sets outside it is refused with its path.
func refuseUnwritable(typ string, gr Grant, elements []string) error {
	for _, e := range elements {
		if !gr.writable(e) {
			path := typ + "." + e
			return errs.E(errs.Forbidden, "access denied (field_not_writable): this role may not write %s; leave it out and the stored value is kept", path).InField(path)
		}
	}
	return nil
}

// allowFields decides a create or update of typ/id inside tx and applies
// the field rules: raw and doc are the body with id and meta set; the
// result is the document to store and its patient compartment. cur and
// exists describe the current row (locked on PostgreSQL).
func (s *Service) allowFields(ctx context.Context, tx store.Tx, g Guard, typ, id string, cur Record, exists bool, raw []byte, doc map[string]any) ([]byte, map[string]any, string, error) {
	// Only a TxGuard can grant less than every element; for other guards
	// (and none) the names are not needed.
	var elements []string
	if _, ok := g.(TxGuard); ok {
		elements = elementNames(doc)
	}
	patient := patientOf(typ, id, doc)
	if !exists || cur.Deleted {
		// A create: nothing to keep, only elements to refuse.
		gr, err := allowWrite(ctx, g, tx, Access{Action: ActCreate, Type: typ, ID: id, PatientID: patient}, elements)
		if err != nil {
			return nil, nil, "", err
		}
		return raw, doc, patient, refuseUnwritable(typ, gr, elements)
	}
	// An update is decided first for the compartment the stored version is
	// in: that grant says what the write may touch of it.
	gr, err := allowWrite(ctx, g, tx, Access{Action: ActUpdate, Type: typ, ID: id, PatientID: cur.PatientID}, elements)
	if err != nil {
		return nil, nil, "", err
	}
	if err := refuseUnwritable(typ, gr, elements); err != nil {
		return nil, nil, "", err
	}
	if gr.Fields != nil {
		stored, err := s.storedJSON(ctx, tx, typ, id, cur.Version)
		if err != nil {
			return nil, nil, "", err
		}
		if raw, err = keepUnwritable(raw, stored, gr); err != nil {
			return nil, nil, "", err
		}
		if err := s.validateWrite(ctx, tx, raw, typ); err != nil {
			var ie *IssuesError
			if errors.As(err, &ie) {
				// The body alone was valid, so the issues are about kept
				// elements the writer may not see: they are not named.
				return nil, nil, "", errs.E(errs.Unprocessable, "the %s would not be valid FHIR R4 together with elements of the stored version this role may not write", typ)
			}
			return nil, nil, "", err
		}
		if doc, err = decodeDoc(raw); err != nil {
			return nil, nil, "", errs.Wrap(errs.Invalid, err, "the resource could not be read")
		}
		// A kept element may be the one that names the patient.
		patient = patientOf(typ, id, doc)
	}
	if cur.PatientID != "" && patient == "" {
		// A patient's record never leaves every compartment: records of
		// no patient are reached by rules that no relationship or consent
		// narrows (auth.PatientsNone), so moving one there would hand it
		// to every holder of such a rule, past the patient's consent.
		// Pointing it at another patient stays possible (below).
		return nil, nil, "", errs.E(errs.Forbidden, "access denied (patient_required): this %s is in a patient's compartment and must keep naming a patient; point it at the right patient instead of none", typ)
	}
	if patient != cur.PatientID {
		// Moving a record between compartments needs the right on both,
		// with the same fields: the merge above kept what the first grant
		// hides, and a second grant with other fields would need another.
		moved, err := allowWrite(ctx, g, tx, Access{Action: ActUpdate, Type: typ, ID: id, PatientID: patient}, elements)
		if err != nil {
			return nil, nil, "", err
		}
		if !sameFields(gr.Fields, moved.Fields) {
			return nil, nil, "", errs.E(errs.Forbidden, "access denied (field_not_writable): this role may write other elements of a %s in its new patient compartment than in its old one", typ)
		}
	}
	return raw, doc, patient, nil
}

// storedJSON opens the current version of typ/id inside tx.
func (s *Service) storedJSON(ctx context.Context, tx store.Tx, typ, id string, version int) ([]byte, error) {
	var ct []byte
	err := tx.QueryRow(ctx, `SELECT ciphertext FROM resources WHERE type = $1 AND id = $2 AND version = $3`, typ, id, version).Scan(&ct)
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.Conflict, "%s/%s was changed concurrently; retry", typ, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", typ, id, err)
	}
	doc, err := s.ring.Open(ctx, versionAAD(typ, id, version), ct)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", typ, id, err)
	}
	return doc, nil
}

// keepUnwritable returns raw (a compact JSON object whose elements the
// grant covers) with every top-level member of stored that the grant does
// not cover appended, in the stored order and with the stored bytes.
func keepUnwritable(raw, stored []byte, gr Grant) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, errors.New("record: the resource is not a JSON object")
	}
	out := bytes.NewBuffer(make([]byte, 0, len(raw)+len(stored)))
	out.Write(raw[:len(raw)-1])
	empty := len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
	err := fhir.EachMember(stored, func(key, element string, val json.RawMessage) error {
		if !gr.writable(element) {
			fhir.AppendMember(out, empty, key, val)
			empty = false
		}
		return nil
	})
	if err != nil {
		return nil, errors.New("record: the stored version is not a JSON object")
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// sameFields reports whether two grants' field lists name the same
// elements (nil: every element).
func sameFields(a, b []string) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
