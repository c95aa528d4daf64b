package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/store"
)

// Exit codes of `careflow audit verify`.
const (
	auditVerifyIntact   = 0
	auditVerifyTampered = 1
	auditVerifyError    = 2
)

// runAuditVerify is `careflow audit verify`: it recomputes the audit log's
// Merkle tree from the entries and checks it against every signed
// checkpoint in the database and in checkpointDir, whose verifiers file
// names the trusted keys (the directory, not the database, is the trust
// anchor, so the key cannot be swapped by whoever edits the database). It
// prints one line per finding, then a summary, and returns 0 when the log
// is intact, 1 when tampering was found and 2 when it could not check.
// Warnings (a checkpoint file not yet written) do not make it fail.
func runAuditVerify(ctx context.Context, db *store.DB, checkpointDir string, stdout, stderr io.Writer) int {
	if checkpointDir == "" {
		fmt.Fprintln(stderr, "careflow audit verify: --audit-checkpoint-dir is required: it holds the trusted verifier keys and the checkpoint copies")
		return auditVerifyError
	}
	keys, err := audit.ReadVerifiers(checkpointDir)
	if err != nil {
		fmt.Fprintf(stderr, "careflow audit verify: %v\n", err)
		return auditVerifyError
	}
	vs, err := audit.NewVerifiers(keys...)
	if err != nil {
		fmt.Fprintf(stderr, "careflow audit verify: %v\n", err)
		return auditVerifyError
	}
	rep, err := audit.Verify(ctx, db, audit.VerifyOptions{Verifiers: vs, CheckpointDir: checkpointDir})
	if err != nil {
		fmt.Fprintf(stderr, "careflow audit verify: %v\n", err)
		return auditVerifyError
	}
	for _, f := range rep.Findings {
		fmt.Fprintln(stdout, f.String())
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(stdout, "TAMPERED and %d more findings not listed\n", rep.Omitted)
	}
	verdict := "intact"
	if rep.Tampered() {
		verdict = "TAMPERING FOUND"
	}
	fmt.Fprintf(stdout, "audit log: %d entries (tree size %d), root %s; checkpoints: %d in the database, %d files, %d matched; %s\n",
		rep.Entries, rep.TreeSize, rep.Root, rep.DatabaseCheckpoints, rep.FileCheckpoints, rep.CheckpointsMatched, verdict)
	if rep.Tampered() {
		return auditVerifyTampered
	}
	return auditVerifyIntact
}

const auditUsage = "verify"

// auditCheckpointDir is where checkpoints go: the flag, else a folder in
// the data dir (which is fine for one machine; production should point it
// at storage the database's administrators cannot rewrite).
func auditCheckpointDir(cfg Config) string {
	if cfg.AuditCheckpointDir != "" {
		return cfg.AuditCheckpointDir
	}
	return filepath.Join(cfg.DataDir, "audit-checkpoints")
}

// runAudit is `careflow audit verify`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return helpFor("audit", stdout, stderr)
		}
		fmt.Fprintln(stderr, "careflow audit: say verify; run 'careflow help audit'.")
		return 2
	}
	cfg, extra, code, ok := configOrExit("audit", args[1:], stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(extra) > 0 {
		fmt.Fprintf(stderr, "careflow audit verify: unexpected argument %q.\n", extra[0])
		return 2
	}
	logger := newLogger(cfg, stderr)
	db, err := store.Open(ctx, store.Config{URL: cfg.Database, DataDir: cfg.DataDir, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "careflow audit verify: %v.\n", err)
		return auditVerifyError
	}
	defer db.Close()
	return runAuditVerify(ctx, db, auditCheckpointDir(cfg), stdout, stderr)
}

// openAuditLog opens the audit log for serve, signing checkpoints with the
// configured key (or the development key, which it warns about).
func openAuditLog(ctx context.Context, cfg Config, db *store.DB, logger *slog.Logger) (*audit.Log, error) {
	signer, dev, err := audit.ResolveSigner(cfg.AuditSigningKeyFile, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if dev {
		logger.Warn("signing audit checkpoints with the development key from the data folder; use --audit-signing-key-file in production",
			"verifier_key", signer.VerifierKey())
	}
	return audit.New(ctx, db, audit.Options{Signer: signer, CheckpointDir: auditCheckpointDir(cfg), Logger: logger.With("component", "audit")})
}
