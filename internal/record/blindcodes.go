package record

import (
	"context"
	"errors"
	"fmt"

	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Clinical codes are PHI once they sit next to a patient id: a row
// (Condition, id, code, http://snomed.info/sct, 86406008) beside the
// Condition's patient_id says who has HIV. The code parameters marked
// clinical in params.go are therefore stored like identifiers, as blind
// indexes, with three choices that keep FHIR token search intact:
//
//   - The code is HMACed exactly as sent (phi.CodeIndex), not normalised:
//     token codes are case-sensitive and were matched byte for byte when
//     they were plain, so every search that matched then matches now.
//   - The system stays plain. Knowing that a patient has "some SNOMED CT
//     code" or "some LOINC result" tells nothing a resource type does not
//     already tell, and a plain system keeps system| (any code of a
//     system) and |code (a code without system) searchable.
//   - The HMAC covers the code alone, under the parameter's domain
//     (record:Type.param), not the system|code pair. system|code is matched
//     as (system = $s AND code = H(code)), so equal code strings in two
//     systems never match each other's searches; and a search by code
//     alone, which FHIR defines as "this code in any system", is one index
//     look-up of H(code). Binding the system into the HMAC would need a
//     second row per value holding H(code) to keep that search, which a
//     dump reader can link exactly as they can link the single row kept
//     here: it would double the rows and hide nothing more.
//
// What the index still shows is equality: the rows of one parameter that
// carry the same code carry the same index, so the most frequent values of
// a parameter can be guessed by counting (the commonest Observation.code
// is likely a vital sign). That is the property exact search needs; the
// domain per Type.param keeps Condition.code and Procedure.reason-code
// from being linked, and the key keeps a reader from testing a guess.
// Low-cardinality codes (status, class, gender, Observation.category) stay
// plain for that reason too: a blind index of a handful of values is
// undone by counting, and they say nothing about a diagnosis.

// tokenIndex is what a PHI token row holds for value, and what a search
// for value looks up: clinical codes exactly, birth dates normalised as
// text, identifiers and telecom normalised as identifiers.
func tokenIndex(ring *phi.Ring, typ string, p *Param, value string) (string, error) {
	domain := blindDomain(typ, p.Name)
	switch {
	case p.Code:
		return ring.CodeIndex(domain, value)
	case p.Spec == Date:
		return ring.BlindIndex(domain, value)
	default:
		return ring.IdentifierIndex(domain, value)
	}
}

// refuseBlindCodeModifier refuses the token modifiers that need a code's
// text or its place in a hierarchy or value set, which a blind index
// cannot give.
func refuseBlindCodeModifier(p *Param, modifier string) error {
	switch modifier {
	case "text", "of-type", "in", "not-in", "above", "below":
		return badParam(p.Name, "the :%s modifier is not offered on %s: its codes are PHI, kept only as blind indexes, so it matches exact codes only (system|code, code, system| or |code; :not and :missing work)", modifier, p.Name)
	}
	return nil
}

// codeTypes lists the resource types that have clinical code parameters,
// sorted: the ones whose token rows the blind-code pass rewrites.
func codeTypes() []string {
	var out []string
	for _, typ := range ModelledTypes() {
		for _, p := range typeParams[typ] {
			if p.Code {
				out = append(out, typ)
				break
			}
		}
	}
	return out
}

// blindCodesTask is the record_reindex row of the pass that blinds the
// clinical codes a database from before migration 0011 holds in plain text.
const blindCodesTask = "blind_codes"

// blindCodesBatch is how many resources one transaction of the pass
// re-indexes.
const blindCodesBatch = reindexBatch

// BlindLegacyCodes rewrites, in place, the token rows of resources written
// before clinical codes were blind-indexed (migration 0011 lists the task
// when the database held any resource). It walks the current versions of
// the types with clinical code parameters in (type, id) order, in batches
// of one transaction each: every resource is opened, its token rows are
// computed again by extract, exactly as a write would, and replace the old
// ones; the cursor commits with the batch, so a pass that stopped resumes
// after the last commit, and the task's row is removed when the walk is
// done. Recomputing from the sealed resource rather than hashing the old
// row is what makes it idempotent (a row already blind is rewritten to
// itself) and safe beside writers: the batch reads each resource in its
// own transaction (locked on PostgreSQL), so a concurrent update either
// commits before and is what gets indexed, or waits. Several nodes may run
// it at once. serve and import run it at start, before they take requests;
// until it finishes, a search by code misses the resources not yet
// rewritten. A node of an older version still writes plain codes, which no
// pass rewrites once the task is done: stop the old nodes before the first
// new one starts. It returns the number of resources re-indexed.
//
// The old plain codes can survive in the database's free space (SQLite
// free pages and WAL, PostgreSQL dead tuples) until it is reused; VACUUM
// (SQLite) or VACUUM FULL resource_tokens (PostgreSQL) removes them at once.
func (s *Service) BlindLegacyCodes(ctx context.Context) (int, error) {
	var afterType, afterID string
	err := s.db.Reader().QueryRow(ctx, `SELECT after_type, after_id FROM record_reindex WHERE task = $1`, blindCodesTask).Scan(&afterType, &afterID)
	if errors.Is(err, store.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("record: read the blind-code pass: %w", err)
	}
	n, err := s.reindexWalk(ctx, blindCodesTask, codeTypes(), afterType, afterID, true, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM record_reindex WHERE task = $1`, blindCodesTask)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("record: blind the clinical codes stored before migration 0011: %w", err)
	}
	return n, nil
}
