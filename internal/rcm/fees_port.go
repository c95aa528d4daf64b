package rcm

import (
	"context"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// FeeSchedule is what a journey needs of the payers' fee schedules: the
// price of a code on the date of service, whether the payer requires
// pre-authorization for it, and the payer's currency. It is read in the
// step's transaction (q), so a claim is priced from the schedule that was
// in force when its step committed. internal/rcm/fees.go implements it
// over the schedules loaded with `careflow fees load`.
type FeeSchedule interface {
	// Price is the payer's unit price of system/code on the date; false
	// when the schedule has no price for it.
	Price(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (Price, bool, error)
	// PreauthRequired reports whether the payer requires
	// pre-authorization before system/code is performed on the date.
	PreauthRequired(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (bool, error)
	// Currency is the payer's currency (ISO 4217), EGP when the payer has
	// none set.
	Currency(ctx context.Context, q store.Querier, payer string) (string, error)
}

// Price is one unit price of a fee schedule.
type Price struct {
	Amount          int64 // minor units (piastres for EGP)
	Currency        string
	ScheduleVersion string
}
