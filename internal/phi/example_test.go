package phi_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Example shows the wiring `careflow serve` does: find the master key, open
// the ring, register the encrypted columns, keep the ring fresh and run the
// re-encryptor in the background. (Compiled, not run: it needs a database.)
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logger := slog.Default()
	dataDir := "/var/lib/careflow"
	masterKeyFile := "" // the --master-key-file flag

	master, source, err := phi.ResolveMasterKey(masterKeyFile, os.Getenv, dataDir)
	if err != nil {
		logger.Error("master key", "err", err)
		return
	}
	if source == phi.MasterKeyDev {
		logger.Warn("development master key in the data directory: anyone who can read it can read the PHI")
	}
	db, err := store.Open(ctx, store.Config{DataDir: dataDir})
	if err != nil {
		return
	}
	ring, err := phi.OpenRing(ctx, db, master, phi.Options{Logger: logger})
	if err != nil {
		return
	}

	// Each package that stores ciphertext declares its columns; main
	// registers them all.
	reg := &phi.Registry{}
	_ = reg.Register(phi.EncryptedColumns{
		Table:   "resources",
		Key:     []phi.KeyColumn{{Name: "type"}, {Name: "id"}},
		Columns: []string{"ciphertext"},
		AAD: func(key []any, column string) phi.AAD {
			return phi.AAD{Table: "resources", Field: column, Record: key[0].(string) + "/" + key[1].(string)}
		},
	})

	go ring.RefreshEvery(ctx, time.Minute)
	re := phi.NewReencryptor(ring, reg, phi.ReencryptOptions{RetireGrace: 5 * time.Minute, Logger: logger})
	go re.Run(ctx, time.Minute)

	// A write: seal the field and store its blind indexes.
	aad := phi.AAD{Table: "resources", Field: "ciphertext", Record: "Patient/0192f1d2-7c1e-7a00-8000-000000000001"}
	ct, _ := ring.Seal(aad, []byte(`{"resourceType":"Patient","name":[{"given":["Mohamed"]}]}`))
	nameTokens, _ := ring.NamePrefixIndexes("patient.name", "Mohamed Ali")
	_, _ = ct, nameTokens

	// A search for what the front desk typed.
	lookFor, _ := ring.NameQueryIndexes("patient.name", "moh")
	_ = lookFor
}
