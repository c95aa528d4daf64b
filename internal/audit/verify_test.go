package audit

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// tamperEnv is a closed log of 35 entries with checkpoints at 10, 20, 30
// and 35 (the one Close signs), in the database and in dir.
type tamperEnv struct {
	db     *store.DB
	log    *Log
	signer *Signer
	dir    string
}

func newTamperEnv(t *testing.T, db *store.DB) *tamperEnv {
	t.Helper()
	signer := testSigner(t)
	l, _, dir := openLog(t, db, func(o *Options) { o.Signer = signer; o.CheckpointEvery = 10 })
	appendConcurrently(t, l, 0, 35)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &tamperEnv{db: db, log: l, signer: signer, dir: dir}
}

// attackerNote signs a tree head with a key the verifier does not trust
// but that carries the log's key name.
func attackerNote(t *testing.T, size int64) string {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, KeyName)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := signCheckpoint(s, size, tlog.RecordHash([]byte("never")), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Note
}

func TestVerifyFindsEveryKindOfTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, env *tamperEnv)
		want   []Finding // compared on Kind, Seq, Count, Other, CheckpointSize
	}{
		{
			name:   "an untouched log is intact",
			tamper: func(t *testing.T, env *tamperEnv) {},
		},
		{
			name: "an edited entry is named by its position",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttacker(t, env.db, `UPDATE audit_entries SET patient_id = 'pat-other' WHERE seq = 17`)
			},
			want: []Finding{{Kind: EntryModified, Seq: 17}},
		},
		{
			name: "an edited entry whose stored hash was rewritten too is caught by the next checkpoint",
			tamper: func(t *testing.T, env *tamperEnv) {
				e, err := Get(context.Background(), env.db, 17)
				if err != nil {
					t.Fatal(err)
				}
				e.Outcome = OutcomeSuccess
				e.Actor = "user-innocent"
				leaf := e.LeafHash()
				asAttacker(t, env.db, `UPDATE audit_entries SET actor = 'user-innocent', outcome = 'success' WHERE seq = 17`)
				asAttackerArgs(t, env.db, `UPDATE audit_hashes SET hash = $1 WHERE idx = $2`, leaf[:], tlog.StoredHashIndex(0, 17))
			},
			want: []Finding{{Kind: CheckpointMismatch, Seq: 10, CheckpointSize: 20}},
		},
		{
			name: "a deleted entry",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttacker(t, env.db, `DELETE FROM audit_entries WHERE seq = 12`)
			},
			want: []Finding{{Kind: EntryMissing, Seq: 12, Count: 1}},
		},
		{
			name: "a truncated tail",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttacker(t, env.db, `DELETE FROM audit_entries WHERE seq >= 25`)
			},
			want: []Finding{{Kind: TailTruncated, Seq: 25, Count: 10, CheckpointSize: 35}},
		},
		{
			name: "a truncated tail with the database's checkpoints and bookkeeping removed too",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttacker(t, env.db,
					`DELETE FROM audit_entries WHERE seq >= 25`,
					`DELETE FROM audit_checkpoints WHERE tree_size > 20`,
					`UPDATE audit_head SET tree_size = 25, checkpoint_size = 20`)
				asAttackerArgs(t, env.db, `DELETE FROM audit_hashes WHERE idx >= $1`, tlog.StoredHashCount(25))
			},
			want: []Finding{
				{Kind: CheckpointRowMissing, Seq: -1, CheckpointSize: 30},
				{Kind: CheckpointRowMissing, Seq: -1, CheckpointSize: 35},
				{Kind: TailTruncated, Seq: 25, Count: 10, CheckpointSize: 35},
			},
		},
		{
			name: "a truncated tail appended after the last checkpoint",
			tamper: func(t *testing.T, env *tamperEnv) {
				ctx := context.Background()
				for i := range 3 {
					if err := env.db.Tx(ctx, func(tx store.Tx) error {
						_, err := env.log.AppendTx(ctx, tx, sampleEntry(100+i))
						return err
					}); err != nil {
						t.Fatal(err)
					}
				}
				asAttacker(t, env.db, `DELETE FROM audit_entries WHERE seq >= 36`)
			},
			want: []Finding{{Kind: TailTruncated, Seq: 36, Count: 2}},
		},
		{
			name: "two swapped entries",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttacker(t, env.db,
					`UPDATE audit_entries SET seq = 1000000 WHERE seq = 5`,
					`UPDATE audit_entries SET seq = 5 WHERE seq = 8`,
					`UPDATE audit_entries SET seq = 8 WHERE seq = 1000000`)
			},
			want: []Finding{{Kind: EntryMoved, Seq: 5, Other: 8}, {Kind: EntryMoved, Seq: 8, Other: 5}},
		},
		{
			name: "a forged checkpoint file",
			tamper: func(t *testing.T, env *tamperEnv) {
				writeTestFile(t, filepath.Join(env.dir, "40.checkpoint"), attackerNote(t, 40))
			},
			want: []Finding{{Kind: CheckpointForged, Seq: -1, CheckpointSize: 40}},
		},
		{
			name: "an altered checkpoint file",
			tamper: func(t *testing.T, env *tamperEnv) {
				path := filepath.Join(env.dir, "20.checkpoint")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(string(b), "\n")
				lines[2] = tlog.RecordHash([]byte("other")).String()
				writeTestFile(t, path, strings.Join(lines, "\n"))
			},
			want: []Finding{{Kind: CheckpointForged, Seq: -1, CheckpointSize: 20}},
		},
		{
			name: "a forged database checkpoint",
			tamper: func(t *testing.T, env *tamperEnv) {
				root := tlog.RecordHash([]byte("never"))
				asAttackerArgs(t, env.db, `INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4)`,
					33, root[:], attackerNote(t, 33), time.Now())
			},
			want: []Finding{{Kind: CheckpointForged, Seq: -1, CheckpointSize: 33}},
		},
		{
			name: "an altered database checkpoint",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttackerArgs(t, env.db, `UPDATE audit_checkpoints SET note = $1 WHERE tree_size = 20`, attackerNote(t, 20))
			},
			want: []Finding{{Kind: CheckpointForged, Seq: -1, CheckpointSize: 20}},
		},
		{
			name: "a checkpoint for a root that never existed, signed with a stolen key",
			tamper: func(t *testing.T, env *tamperEnv) {
				cp, err := signCheckpoint(env.signer, 33, tlog.RecordHash([]byte("never")), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				root, _ := tlog.ParseHash(cp.Root)
				asAttackerArgs(t, env.db, `INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4)`,
					cp.Size, root[:], cp.Note, cp.Time)
				writeTestFile(t, filepath.Join(env.dir, "33.checkpoint"), cp.Note)
			},
			want: []Finding{{Kind: CheckpointMismatch, Seq: 30, CheckpointSize: 33}},
		},
		{
			name: "a database checkpoint whose columns disagree with its note",
			tamper: func(t *testing.T, env *tamperEnv) {
				root := tlog.RecordHash([]byte("other"))
				asAttackerArgs(t, env.db, `UPDATE audit_checkpoints SET root_hash = $1 WHERE tree_size = 10`, root[:])
			},
			want: []Finding{{Kind: CheckpointConflict, Seq: -1, CheckpointSize: 10}},
		},
		{
			name: "a stored leaf hash removed",
			tamper: func(t *testing.T, env *tamperEnv) {
				asAttackerArgs(t, env.db, `DELETE FROM audit_hashes WHERE idx = $1`, tlog.StoredHashIndex(0, 3))
			},
			want: []Finding{{Kind: HashMissing, Seq: 3}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				env := newTamperEnv(t, db)
				c.tamper(t, env)
				rep := verifyLog(t, db, env.log, env.dir)
				var got []Finding
				for _, f := range rep.Findings {
					if !f.Warning {
						got = append(got, f)
					}
				}
				if !sameFindings(got, c.want) {
					t.Fatalf("findings:\n%s\nwant:\n%s", findingLines(got), findingLines(c.want))
				}
				if rep.Tampered() != (len(c.want) > 0) {
					t.Fatalf("Tampered() = %v with findings %v", rep.Tampered(), rep.Findings)
				}
				for _, f := range rep.Findings {
					if s := f.String(); !strings.Contains(s, string(f.Kind)) {
						t.Errorf("finding line %q does not name its kind", s)
					}
				}
			})
		})
	}
}

func TestVerifyWarnsOfAMissingCheckpointFileOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		env := newTamperEnv(t, db)
		if err := os.Remove(filepath.Join(env.dir, "20.checkpoint")); err != nil {
			t.Fatal(err)
		}
		rep := verifyLog(t, db, env.log, env.dir)
		if rep.Tampered() || len(rep.Findings) != 1 || rep.Findings[0].Kind != CheckpointFileMissing || rep.Findings[0].CheckpointSize != 20 {
			t.Fatalf("findings %v, want one warning about checkpoint 20", rep.Findings)
		}
		if rep.CheckpointsMatched != 4 || rep.TreeSize != 35 || rep.Entries != 35 {
			t.Fatalf("report %+v", rep)
		}
		// A new Log puts the file back from the database.
		l2, err := New(context.Background(), db, Options{Signer: env.signer, CheckpointDir: env.dir})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close(context.Background())
		if rep := verifyLog(t, db, env.log, env.dir); len(rep.Findings) != 0 {
			t.Fatalf("after resync: %v", rep.Findings)
		}
	})
}

func TestVerifyTrustsOnlyTheGivenKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		env := newTamperEnv(t, db)
		vs, err := NewVerifiers(testSigner(t).VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), db, VerifyOptions{Verifiers: vs, CheckpointDir: env.dir})
		if err != nil {
			t.Fatal(err)
		}
		forged := 0
		for _, f := range rep.Findings {
			if f.Kind == CheckpointForged {
				forged++
			}
		}
		if forged != 8 || rep.CheckpointsMatched != 0 {
			t.Fatalf("with a stranger's key: %d forged findings (want 8: 4 rows, 4 files), %d matched", forged, rep.CheckpointsMatched)
		}
	})
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sameFindings(got, want []Finding) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Kind != w.Kind || g.Seq != w.Seq || g.Other != w.Other || g.CheckpointSize != w.CheckpointSize || (w.Count != 0 && g.Count != w.Count) {
			return false
		}
	}
	return true
}

func findingLines(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString("  " + f.String() + "\n")
	}
	if len(fs) == 0 {
		b.WriteString("  (none)\n")
	}
	return b.String()
}
