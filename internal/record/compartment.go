package record

import (
	"context"
	"errors"
	"fmt"

	"github.com/careflow/careflow/internal/store"
)

// PatientOf returns the patient compartment of the current version of
// typ/id: the plain patient_id of its row, so nothing is decrypted and no
// Guard is consulted (the caller decides what the answer may reveal; the
// workflow engine uses it to keep a run's referenced records in the run's
// patient's compartment). exists is false for a record that was never
// stored or is deleted; patientID is "" for a record in no compartment. q
// is the caller's transaction, so a record written in it counts; nil reads
// through the reader pool.
func (s *Service) PatientOf(ctx context.Context, q store.Querier, typ, id string) (patientID string, exists bool, err error) {
	if q == nil {
		q = s.db.Reader()
	}
	var (
		pid     *string
		deleted bool
	)
	err = q.QueryRow(ctx, `SELECT deleted, patient_id FROM resources WHERE type = $1 AND id = $2`, typ, id).Scan(&deleted, &pid)
	if errors.Is(err, store.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("patient of %s/%s: %w", typ, safeID(id), err)
	}
	if deleted {
		return "", false, nil
	}
	if pid != nil {
		patientID = *pid
	}
	return patientID, true, nil
}
