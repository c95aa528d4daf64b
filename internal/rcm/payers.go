package rcm

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// StatusUnreachable is the status of a payer careflow has a fee schedule
// or settings for but the participant registry does not list: a journey
// to it would be refused.
const StatusUnreachable = "unreachable"

// PayerListing is one payer as GET /api/v1/rcm/payers shows it: what the
// registry says of it joined with what careflow keeps (its currency, its
// schedules' versions and the codes it requires pre-authorization for).
type PayerListing struct {
	Code string `json:"participant_code"`
	Name string `json:"name"`
	// Status is the registry's (active, inactive, blocked...), or
	// unreachable for a payer the registry does not list.
	Status    string `json:"status"`
	Reachable bool   `json:"reachable"`
	Currency  string `json:"currency"`
	// Schedules are the loaded versions, newest first.
	Schedules []ScheduleVersion `json:"fee_schedules"`
	// PreauthRequired are the codes whose pricing row today says the payer
	// requires pre-authorization.
	PreauthRequired []CodeRef `json:"preauth_required"`
}

// Payers lists the payers careflow can reach (dir's, nil: none) and those
// it has settings or schedules for, by code. on is the date the
// pre-authorization codes are read for.
func (f *Fees) Payers(ctx context.Context, dir Directory, on time.Time) ([]PayerListing, error) {
	byCode := map[string]*PayerListing{}
	if dir != nil {
		parts, err := dir.Payers(ctx)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "the participant registry did not answer")
		}
		for _, p := range parts {
			byCode[p.Code] = &PayerListing{Code: p.Code, Name: p.Name, Status: p.Status, Reachable: true, Currency: DefaultCurrency}
		}
	}
	settings, err := f.PayerSettingsAll(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		l, ok := byCode[s.Code]
		if !ok {
			l = &PayerListing{Code: s.Code, Name: s.Name, Status: StatusUnreachable}
			byCode[s.Code] = l
		}
		if l.Name == "" {
			l.Name = s.Name
		}
		l.Currency = s.Currency
	}
	schedules, err := f.Schedules(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, v := range schedules {
		l, ok := byCode[v.Payer]
		if !ok {
			// A schedule's payer always has settings (one transaction
			// writes both); a missing row would be a bug.
			return nil, fmt.Errorf("fee schedule of payer without settings")
		}
		l.Schedules = append(l.Schedules, v)
	}
	out := make([]PayerListing, 0, len(byCode))
	for _, l := range byCode {
		if l.Schedules == nil {
			l.Schedules = []ScheduleVersion{}
		}
		if l.PreauthRequired, err = f.PreauthCodes(ctx, l.Code, on); err != nil {
			return nil, err
		}
		if l.PreauthRequired == nil {
			l.PreauthRequired = []CodeRef{}
		}
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out, nil
}
