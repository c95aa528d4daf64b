package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

const keysUsage = "status | rotate [--wait]"

// phiColumns lists every table column that holds PHI ciphertext, so the
// re-encryptor (in serve and in `keys rotate --wait`) moves them all to the
// primary key. A package that seals PHI registers its columns here: the
// FHIR record's resources, the workflow engine's payloads and the HCX
// exchange log's payloads.
func phiColumns() (*phi.Registry, error) {
	reg := &phi.Registry{}
	if err := record.Register(reg); err != nil {
		return nil, err
	}
	if err := engine.Register(reg); err != nil {
		return nil, err
	}
	if err := hcx.Register(reg); err != nil {
		return nil, err
	}
	if err := webhook.Register(reg); err != nil {
		return nil, err
	}
	if err := clinical.RegisterColumns(reg); err != nil {
		return nil, err
	}
	return reg, nil
}

// researchKey is the key of the research export's pseudonymous patient
// keys: derived from the master key (never stored, kept where the master
// key is), so every node agrees on it and a patient keeps one pseudonym
// across exports, data-key rotations and restores.
func researchKey(cfg Config) ([]byte, error) {
	key, _, err := phi.ResolveMasterKey(cfg.MasterKeyFile, os.Getenv, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return key.Derive("careflow/research-pseudonym/v1")
}

// openKeyRing resolves the master key (--master-key-file, else
// CAREFLOW_MASTER_KEY, else the development key in the data folder, which
// it warns about) and opens the key ring over db.
func openKeyRing(ctx context.Context, cfg Config, db *store.DB, logger *slog.Logger) (*phi.Ring, error) {
	key, source, err := phi.ResolveMasterKey(cfg.MasterKeyFile, os.Getenv, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if source == phi.MasterKeyDev {
		logger.Warn("using the development PHI master key from the data folder: whoever can read the folder can read the PHI; use --master-key-file or CAREFLOW_MASTER_KEY in production",
			"data_dir", cfg.DataDir)
	}
	return phi.OpenRing(ctx, db, key, phi.Options{Logger: logger})
}

// runKeys is `careflow keys status|rotate`.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || (args[0] != "status" && args[0] != "rotate") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return helpFor("keys", stdout, stderr)
		}
		fmt.Fprintf(stderr, "careflow keys: say status or rotate; run 'careflow help keys'.\n")
		return 2
	}
	sub := args[0]
	rest := args[1:]
	wait := false
	var flags []string
	for _, a := range rest {
		if a == "--wait" && sub == "rotate" {
			wait = true
			continue
		}
		flags = append(flags, a)
	}
	cfg, extra, code, ok := configOrExit("keys", flags, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(extra) > 0 {
		fmt.Fprintf(stderr, "careflow keys %s: unexpected argument %q.\n", sub, extra[0])
		return 2
	}
	logger := newLogger(cfg, stderr)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "careflow keys: %v.\n", err)
		return 1
	}
	defer db.Close()
	ring, err := openKeyRing(ctx, cfg, db, logger)
	if err != nil {
		fmt.Fprintf(stderr, "careflow keys: %v.\n", err)
		return 1
	}
	if sub == "status" {
		printKeys(stdout, ring.Keys())
		return 0
	}
	info, err := ring.Rotate(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "careflow keys rotate: %v.\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "key %d is now the primary data key; running servers seal with it within a minute and re-encrypt existing rows in the background.\n", info.ID)
	if !wait {
		return 0
	}
	cols, err := phiColumns()
	if err != nil {
		fmt.Fprintf(stderr, "careflow keys rotate: %v.\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "re-encrypting every row now and waiting until the old keys retire (this waits out the grace period in which other nodes pick up the new key)...")
	started := time.Now()
	// Workflow payloads from before they were sealed (a database no serve
	// of this version has started on yet) are sealed first: the
	// re-encryptor moves ciphertexts and stops at a plain value.
	if _, err := engine.SealLegacyPayloads(ctx, db, ring); err != nil {
		fmt.Fprintf(stderr, "careflow keys rotate: %v.\n", err)
		return 1
	}
	p, err := phi.NewReencryptor(ring, cols, phi.ReencryptOptions{Logger: logger}).RunUntilDone(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "careflow keys rotate: re-encryption stopped: %v; run it again to resume.\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "re-encrypted %d rows (%d changed concurrently by writers and rechecked) in %s; retired keys %v.\n",
		p.Resealed, p.Conflicts, time.Since(started).Round(time.Second), p.Retired)
	printKeys(stdout, ring.Keys())
	return 0
}

func printKeys(w io.Writer, keys []phi.KeyInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPURPOSE\tSTATUS\tCREATED\tDEMOTED\tRETIRED")
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Purpose, k.Status, ts(k.CreatedAt), ts(k.DemotedAt), ts(k.RetiredAt))
	}
	tw.Flush()
}
