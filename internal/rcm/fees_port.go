package rcm

import (
	"context"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// FeeSchedule is what a journey needs of the payers' fee schedules: the
// price of a code on a date of service, whether the payer requires
// pre-authorization for it, and the payer's currency. It takes the
// caller's Querier so a step reads in its own transaction. Fees
// implements it.
type FeeSchedule interface {
	Price(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (Price, bool, error)
	PreauthRequired(ctx context.Context, q store.Querier, payer, system, code string, on time.Time) (bool, error)
	Currency(ctx context.Context, q store.Querier, payer string) (string, error)
}

// Price is one code's price in a payer's schedule.
type Price struct {
	Amount          int64 // minor units of Currency (piastres for EGP)
	Currency        string
	ScheduleVersion string
}
