package record

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Two passes re-index stored resources at start, both on one walker
// (reindexWalk): BlindLegacyCodes (blindcodes.go) rewrites the token rows
// of a database from before clinical codes were blind, and
// ReindexChangedParams rewrites every index row of the types whose search
// parameters changed since the database was last indexed. Both recompute
// the rows from the sealed resource with extract, exactly as a write
// would, so a pass is idempotent and safe beside writers, and both keep a
// (type, id) cursor in record_reindex that commits with each batch, so a
// stopped pass resumes where it was.

// reindexBatch is how many resources one transaction of a pass re-indexes.
const reindexBatch = 200

// reindexWalk re-indexes the current versions of types after the cursor
// (afterType, afterID) in (type, id) order, reindexBatch resources per
// transaction. tokensOnly rewrites the token rows alone (the blind-code
// pass); otherwise all five index tables are rewritten. After each batch
// it stores the cursor in task's record_reindex row (which must exist);
// in the transaction of the last batch it calls done instead. It returns
// the number of resources re-indexed.
func (s *Service) reindexWalk(ctx context.Context, task string, types []string, afterType, afterID string, tokensOnly bool, done func(store.Tx) error) (int, error) {
	marks := make([]string, len(types))
	args := make([]any, 0, len(types)+2)
	args = append(args, "", "")
	for i, t := range types {
		args = append(args, t)
		marks[i] = fmt.Sprintf("$%d", i+3)
	}
	total := 0
	for {
		args[0], args[1] = afterType, afterID
		n := 0
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			q := `SELECT rid, type, id, version, ciphertext FROM resources
WHERE (type > $1 OR (type = $1 AND id > $2)) AND type IN (` + strings.Join(marks, ", ") + `) AND deleted = FALSE
ORDER BY type, id LIMIT ` + fmt.Sprint(reindexBatch) + tx.Dialect().ForUpdate()
			type version struct {
				rid     int64
				typ, id string
				version int
				ct      []byte
			}
			var batch []version
			rows, err := tx.Query(ctx, q, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var v version
				if err := rows.Scan(&v.rid, &v.typ, &v.id, &v.version, &v.ct); err != nil {
					rows.Close()
					return err
				}
				batch = append(batch, v)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, v := range batch {
				raw, err := s.ring.Open(ctx, versionAAD(v.typ, v.id, v.version), v.ct)
				if err != nil {
					return fmt.Errorf("open %s/%s: %w", v.typ, v.id, err)
				}
				doc, err := decodeDoc(raw)
				if err != nil {
					return errs.Wrap(errs.Internal, err, "%s/%s does not decode", v.typ, v.id)
				}
				// A stored resource is re-indexed whatever today's
				// limits are: it was accepted when it was written.
				idx, err := extract(s.ring, v.typ, doc, math.MaxInt)
				if err != nil {
					return err
				}
				if tokensOnly {
					if _, err := tx.Exec(ctx, `DELETE FROM resource_tokens WHERE rid = $1`, v.rid); err != nil {
						return fmt.Errorf("clear the tokens of %s/%s: %w", v.typ, v.id, err)
					}
					idx = indexRows{tokens: idx.tokens}
				} else if err := deleteIndexes(ctx, tx, v.rid); err != nil {
					return err
				}
				if err := insertIndexes(ctx, tx, v.typ, v.rid, idx); err != nil {
					return err
				}
			}
			n = len(batch)
			if n < reindexBatch {
				return done(tx)
			}
			last := batch[n-1]
			afterType, afterID = last.typ, last.id
			_, err = tx.Exec(ctx, `UPDATE record_reindex SET after_type = $2, after_id = $3 WHERE task = $1`, task, afterType, afterID)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < reindexBatch {
			return total, nil
		}
	}
}

// paramsTask is the record_reindex row of the pass over the types whose
// parameters changed; its cursor's type is the one being walked.
const paramsTask = "params"

// ParamFingerprint is a digest of what a type's search index holds: every
// parameter's name, kind, paths, targets, how its values are stored
// (PHI, whole, code, also) and the keys its rows carry (paramKey). Two versions of careflow with equal
// fingerprints for a type write the same index rows for its resources.
func ParamFingerprint(typ string) string {
	h := sha256.New()
	for _, p := range ParamsOf(typ) {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%t%t%t\x00%s\x00%s\x00%d,%d\n", p.Name, p.Kind, strings.Join(p.Paths, ","), strings.Join(p.Targets, ","),
			p.PHI, p.Whole, p.Code, strings.Join(p.Also, ","), p.Spec, paramKey(typ, p.Name), paramKey(typ, p.Name+":exact"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReindexChangedParams brings the search index of every stored type up to
// this version's parameters. record_param_sets (migration 0013) holds, per
// type, the fingerprint of the parameters its rows were written with; a
// type whose fingerprint differs (or is absent, as for every type of a
// database from before 0013) has all its current resources re-indexed,
// one type after the other in name order, and its fingerprint is stored in
// the transaction of its last batch. A type with no resource just gets its
// fingerprint. serve and import run it at start, after BlindLegacyCodes
// and before they take requests: until a type is done, a search by one of
// its new parameters misses the resources not yet re-indexed, and one by a
// changed parameter may miss or find by the old rows. A stopped pass
// resumes from record_reindex's cursor. Nodes of an older version keep
// writing rows for their own parameters: stop them before the first new
// node starts. It returns the number of resources re-indexed.
func (s *Service) ReindexChangedParams(ctx context.Context) (int, error) {
	stored := map[string]string{}
	rows, err := s.db.Reader().Query(ctx, `SELECT type, fingerprint FROM record_param_sets`)
	if err != nil {
		return 0, fmt.Errorf("record: read the parameter sets: %w", err)
	}
	for rows.Next() {
		var t, f string
		if err := rows.Scan(&t, &f); err != nil {
			rows.Close()
			return 0, fmt.Errorf("record: read the parameter sets: %w", err)
		}
		stored[t] = f
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("record: read the parameter sets: %w", err)
	}
	present := map[string]bool{}
	rows, err = s.db.Reader().Query(ctx, `SELECT DISTINCT type FROM resources`)
	if err != nil {
		return 0, fmt.Errorf("record: list the stored types: %w", err)
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return 0, fmt.Errorf("record: list the stored types: %w", err)
		}
		present[t] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("record: list the stored types: %w", err)
	}
	var walk, empty []string
	for _, typ := range ModelledTypes() {
		if stored[typ] == ParamFingerprint(typ) {
			continue
		}
		if present[typ] {
			walk = append(walk, typ)
		} else {
			empty = append(empty, typ)
		}
	}
	if len(empty) > 0 {
		err := s.db.Tx(ctx, func(tx store.Tx) error {
			for _, typ := range empty {
				if err := storeFingerprint(ctx, tx, typ); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("record: store the parameter sets: %w", err)
		}
	}
	total := 0
	for _, typ := range walk {
		afterID := ""
		var curType string
		err := s.db.Reader().QueryRow(ctx, `SELECT after_type, after_id FROM record_reindex WHERE task = $1`, paramsTask).Scan(&curType, &afterID)
		switch {
		case errors.Is(err, store.ErrNoRows):
			if _, err := s.db.Writer().Exec(ctx, `INSERT INTO record_reindex (task, after_type) VALUES ($1, $2)`, paramsTask, typ); err != nil {
				return total, fmt.Errorf("record: start the parameter re-index: %w", err)
			}
		case err != nil:
			return total, fmt.Errorf("record: read the parameter re-index: %w", err)
		case curType != typ:
			// The cursor is another type's (a pass of another
			// version stopped there): this type starts from its first id.
			afterID = ""
		}
		n, err := s.reindexWalk(ctx, paramsTask, []string{typ}, typ, afterID, false, func(tx store.Tx) error {
			if err := storeFingerprint(ctx, tx, typ); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM record_reindex WHERE task = $1`, paramsTask)
			return err
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("record: re-index %s for its search parameters: %w", typ, err)
		}
	}
	return total, nil
}

func storeFingerprint(ctx context.Context, tx store.Tx, typ string) error {
	_, err := tx.Exec(ctx, `INSERT INTO record_param_sets (type, fingerprint) VALUES ($1, $2)
ON CONFLICT (type) DO UPDATE SET fingerprint = excluded.fingerprint`, typ, ParamFingerprint(typ))
	return err
}
