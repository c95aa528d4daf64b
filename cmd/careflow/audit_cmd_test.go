package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestAuditVerifyExitCodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		dir := filepath.Join(t.TempDir(), "checkpoints")
		signer, err := audit.LoadOrCreateSigner(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		l, err := audit.New(ctx, db, audit.Options{Signer: signer, CheckpointDir: dir, CheckpointEvery: 5})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			_, err := l.Append(ctx, audit.Entry{Actor: "u1", Role: "auditor", Action: audit.ActionRead,
				ResourceType: "Patient", ResourceID: fmt.Sprintf("p%d", i), PatientID: fmt.Sprintf("p%d", i), Outcome: audit.OutcomeSuccess})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		run := func(dir string) (int, string, string) {
			var out, errOut bytes.Buffer
			code := runAuditVerify(ctx, db, dir, &out, &errOut)
			return code, out.String(), errOut.String()
		}

		code, out, _ := run(dir)
		if code != 0 || !strings.Contains(out, "12 entries") || !strings.Contains(out, "intact") {
			t.Fatalf("intact log: exit %d, output:\n%s", code, out)
		}

		if code, _, errOut := run(""); code != 2 || !strings.Contains(errOut, "--audit-checkpoint-dir") {
			t.Fatalf("no directory: exit %d, stderr %q", code, errOut)
		}
		if code, _, _ := run(filepath.Join(t.TempDir(), "absent")); code != 2 {
			t.Fatalf("a directory without verifier keys: exit %d, want 2", code)
		}

		// Someone with database access drops the trigger and edits entry 7.
		drop := `DROP TRIGGER IF EXISTS audit_entries_no_update`
		if db.Dialect() == store.Postgres {
			drop = `ALTER TABLE audit_entries DISABLE TRIGGER USER`
		}
		for _, s := range []string{drop, `UPDATE audit_entries SET outcome = 'denied' WHERE seq = 7`} {
			if _, err := db.Writer().Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		code, out, _ = run(dir)
		if code != 1 || !strings.Contains(out, "entry_modified entry 7:") || !strings.Contains(out, "TAMPERING FOUND") {
			t.Fatalf("edited entry: exit %d, output:\n%s", code, out)
		}
		if lines := strings.Count(out, "\n"); lines != 2 {
			t.Fatalf("want one finding line and the summary, got:\n%s", out)
		}

		// A forged checkpoint file is reported by its size.
		if err := os.WriteFile(filepath.Join(dir, "99.checkpoint"), []byte("go.sum database tree\n99\nAAAA\n\n— careflow-audit AAAA\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out, _ = run(dir); code != 1 || !strings.Contains(out, "checkpoint_forged checkpoint 99") {
			t.Fatalf("forged file: exit %d, output:\n%s", code, out)
		}
		t.Logf("careflow audit verify output:\n%s", out)
	})
}
