package auth_test

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A care team's name is picked from a list by people, so it may not hold a
// character that makes it read as another name; names in any script, with
// the joiners their spelling needs, are fine.
func TestCareTeamNamesRefuseBidiControlsAndInvisibleCharacters(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		teams := auth.NewCareTeams(db, (&clock{t: policyNow}).Now)
		for _, bad := range []string{
			"Cardiology\u200b ward 3", // looks like "Cardiology ward 3"
			"Ward \u202e3 drawkcab",
			"\u2067Oncology\u2069",
			"Ward\u2060 7",
			"Ward\ufeff 8",
		} {
			_, err := teams.Create(ctx, bad)
			if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != "name" {
				t.Fatalf("name %+q: %v, want invalid name", bad, err)
			}
		}
		for _, good := range []string{"Cardiology ward 3", "جناح القلب", "بخش قلب\u200cوعروق"} {
			if _, err := teams.Create(ctx, good); err != nil {
				t.Fatalf("name %+q: %v", good, err)
			}
		}
	})
}
