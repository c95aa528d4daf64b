package record

import (
	"context"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// ChangeKind says what a write did to a resource.
type ChangeKind string

// A create is the first version of an id or the next version of a
// deleted one; an update follows a live version.
const (
	Created ChangeKind = "created"
	Updated ChangeKind = "updated"
	Deleted ChangeKind = "deleted"
)

// Change describes one stored write by ids alone: type, id, the version
// written and the patient whose record it is (empty for a record of no
// patient). It never holds the content.
type Change struct {
	Kind      ChangeKind
	Type, ID  string
	Version   int
	PatientID string
	// At is the write's lastUpdated.
	At time.Time
}

// ChangeHook is told of each create, update and delete inside the write's
// transaction, after the WriteHooks; an error rolls the write back.
type ChangeHook interface {
	Changed(ctx context.Context, tx store.Tx, c Change) error
}

// EventHook writes each change as an event (internal/events: aggregate
// the resource, kind record.created|updated|deleted, payload type, id,
// version and patient id) in the write's transaction, so the event exists
// exactly when the write committed. cmd/careflow wires it for serve and
// import.
type EventHook struct{}

// Changed implements ChangeHook.
func (EventHook) Changed(ctx context.Context, tx store.Tx, c Change) error {
	_, err := events.Write(ctx, tx, events.Record("record."+string(c.Kind), c.Type, c.ID, c.Version, c.PatientID, c.At))
	return err
}

func (s *Service) runChanges(ctx context.Context, tx store.Tx, c Change) error {
	for _, h := range s.changes {
		if err := h.Changed(ctx, tx, c); err != nil {
			return err
		}
	}
	return nil
}
