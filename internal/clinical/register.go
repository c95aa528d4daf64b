package clinical

import "github.com/careflow/careflow/internal/engine"

// Deps is what the clinical definitions need from the server beyond the
// engine's own Staff and Records (which check task roles and record
// inputs). The discharge sign-off needs nothing more; definitions that
// write to the record in their steps' transactions will take
// engine.StepRecords here.
type Deps struct{}

// Register registers the clinical definitions on reg.
func Register(reg *engine.Registry, _ Deps) error {
	return reg.Register(dischargeSignOff())
}
