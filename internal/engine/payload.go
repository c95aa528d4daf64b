package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// Workflow payloads are what people and payers put into runs: the run
// input, step outputs (kept in the run's state and in its step
// executions), signal payloads, and task decisions and results. The
// contract is that they hold references and codes, but nothing enforces
// what a caller sends, so every payload column is sealed with the PHI key
// ring (phi.Ring: AES-256-GCM, associated data = table, column and row) and
// the database never holds one readable. Status, definition, step names,
// patient id (an opaque id), times, start keys and signal ids stay plain:
// queries filter on them and they are identifiers, not content.
//
// The associated data of each column, which the re-encryptor rebuilds from
// the row's key (Register):
//
//	engine_runs.input, .state        run id
//	engine_step_executions.output    run id/step/visit/attempt (the unique key)
//	engine_signals.payload           run id/signal id
//	engine_tasks.decision, .result   task id
//
// Run ids are canonical UUIDs and step names never contain "/", so the
// joined records are unambiguous.
const (
	tableRuns       = "engine_runs"
	tableExecutions = "engine_step_executions"
	tableSignals    = "engine_signals"
	tableTasks      = "engine_tasks"
)

func runAAD(runID, column string) phi.AAD {
	return phi.AAD{Table: tableRuns, Field: column, Record: runID}
}

func executionAAD(runID, step string, visit, attempt int) phi.AAD {
	return phi.AAD{Table: tableExecutions, Field: "output", Record: runID + "/" + step + "/" + strconv.Itoa(visit) + "/" + strconv.Itoa(attempt)}
}

func signalAAD(runID, signalID string) phi.AAD {
	return phi.AAD{Table: tableSignals, Field: "payload", Record: runID + "/" + signalID}
}

func taskAAD(taskID, column string) phi.AAD {
	return phi.AAD{Table: tableTasks, Field: column, Record: taskID}
}

// payloadColumns describes the sealed columns for the re-encryptor and for
// SealLegacyPayloads. Each Key is a unique, indexed key of its table (the
// primary key, except for step executions, whose id is assigned at insert,
// after the output is sealed: their natural key is used instead).
func payloadColumns() []phi.EncryptedColumns {
	str := func(v any) string { s, _ := v.(string); return s }
	num := func(v any) int { n, _ := v.(int64); return int(n) }
	return []phi.EncryptedColumns{
		{Table: tableRuns, Key: []phi.KeyColumn{{Name: "id", Kind: phi.KeyText}}, Columns: []string{"input", "state"},
			AAD: func(key []any, column string) phi.AAD { return runAAD(str(key[0]), column) }},
		{Table: tableExecutions, Key: []phi.KeyColumn{{Name: "run_id", Kind: phi.KeyText}, {Name: "step", Kind: phi.KeyText},
			{Name: "visit", Kind: phi.KeyInteger}, {Name: "attempt", Kind: phi.KeyInteger}}, Columns: []string{"output"},
			AAD: func(key []any, _ string) phi.AAD {
				return executionAAD(str(key[0]), str(key[1]), num(key[2]), num(key[3]))
			}},
		{Table: tableSignals, Key: []phi.KeyColumn{{Name: "run_id", Kind: phi.KeyText}, {Name: "id", Kind: phi.KeyText}}, Columns: []string{"payload"},
			AAD: func(key []any, _ string) phi.AAD { return signalAAD(str(key[0]), str(key[1])) }},
		{Table: tableTasks, Key: []phi.KeyColumn{{Name: "id", Kind: phi.KeyText}}, Columns: []string{"decision", "result"},
			AAD: func(key []any, column string) phi.AAD { return taskAAD(str(key[0]), column) }},
	}
}

// Register tells the re-encryptor about the engine's sealed columns, so a
// key rotation moves workflow payloads to the new key like the record's.
func Register(reg *phi.Registry) error {
	for _, c := range payloadColumns() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// sealed reports whether a stored value is a phi ciphertext. What a
// database from before sealing holds (JSON, decision codes) never is: a
// ciphertext starts with a format byte no text starts with.
func sealed(b []byte) bool {
	_, err := phi.KeyIDOf(b)
	return err == nil
}

// seal encrypts a payload for its column.
func (e *Engine) seal(aad phi.AAD, plaintext []byte) ([]byte, error) {
	ct, err := e.ring.Seal(aad, plaintext)
	if err != nil {
		return nil, fmt.Errorf("seal %s.%s: %w", aad.Table, aad.Field, err)
	}
	return ct, nil
}

// sealNullable seals a value that may be absent (nil stays NULL).
func (e *Engine) sealNullable(aad phi.AAD, plaintext []byte) (any, error) {
	if plaintext == nil {
		return nil, nil
	}
	return e.seal(aad, plaintext)
}

// open decrypts a stored payload; nil (NULL) stays nil. A value that is
// not a ciphertext is a row from before sealing (JSON, or a decision's
// code): it is accepted as it is until this node's start has sealed every
// such row (SealLegacyPayloads), and refused after, so that a value planted
// in the database in plain text is not taken for input. Errors name the
// table, column and row id, never the value.
func (e *Engine) open(ctx context.Context, aad phi.AAD, stored []byte) ([]byte, error) {
	if stored == nil {
		return nil, nil
	}
	if !sealed(stored) {
		if e.acceptPlain.Load() {
			return stored, nil
		}
		return nil, errs.E(errs.Internal, "%s.%s of %s is not sealed", aad.Table, aad.Field, aad.Record)
	}
	pt, err := e.ring.Open(ctx, aad, stored)
	if err != nil {
		return nil, fmt.Errorf("open %s.%s of %s: %w", aad.Table, aad.Field, aad.Record, err)
	}
	return pt, nil
}

// legacyBatch is how many rows SealLegacyPayloads reads and rewrites per
// transaction.
const legacyBatch = 200

// SealLegacyPayloads seals, in place, the workflow payloads that a database
// migrated from before sealing (migration 0009) still holds in plain text:
// the tables listed in engine_unsealed_payloads are walked in key order, in
// batches of one transaction each, every plain value is sealed with a
// compare-and-swap UPDATE (a concurrent writer's newer value wins), and the
// table's entry is removed when the walk is done. It is idempotent and safe
// to run on several nodes at once; the engine runs it at Start, and
// `careflow keys rotate` before re-encrypting (the re-encryptor moves
// ciphertexts between keys and refuses a plain value). It returns the
// number of values sealed.
//
// The old plain bytes can survive in the database's free space (SQLite free
// pages and WAL, PostgreSQL dead tuples) until it is reused; VACUUM (SQLite)
// or VACUUM FULL (PostgreSQL) of the engine tables removes them at once.
func SealLegacyPayloads(ctx context.Context, db *store.DB, ring *phi.Ring) (int, error) {
	rows, err := db.Reader().Query(ctx, `SELECT table_name FROM engine_unsealed_payloads ORDER BY table_name`)
	if err != nil {
		return 0, fmt.Errorf("engine: read unsealed payload tables: %w", err)
	}
	var pending []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, err
		}
		pending = append(pending, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	total := 0
	for _, name := range pending {
		var set *phi.EncryptedColumns
		for _, c := range payloadColumns() {
			if c.Table == name {
				set = &c
				break
			}
		}
		if set == nil {
			return total, fmt.Errorf("engine: engine_unsealed_payloads names an unknown table %q", name)
		}
		n, err := sealLegacyTable(ctx, db, ring, *set)
		total += n
		if err != nil {
			return total, fmt.Errorf("engine: seal plain payloads of %s: %w", name, err)
		}
		if _, err := db.Writer().Exec(ctx, `DELETE FROM engine_unsealed_payloads WHERE table_name = $1`, name); err != nil {
			return total, err
		}
	}
	return total, nil
}

// sealLegacyTable walks one table and seals its plain values.
func sealLegacyTable(ctx context.Context, db *store.DB, ring *phi.Ring, set phi.EncryptedColumns) (int, error) {
	keys := make([]string, len(set.Key))
	params := make([]string, len(set.Key))
	for i, k := range set.Key {
		keys[i] = k.Name
		params[i] = "$" + strconv.Itoa(i+1)
	}
	keyList := strings.Join(keys, ", ")
	tail := " ORDER BY " + keyList + " LIMIT " + strconv.Itoa(legacyBatch)
	first := "SELECT " + keyList + ", " + strings.Join(set.Columns, ", ") + " FROM " + set.Table + tail
	next := "SELECT " + keyList + ", " + strings.Join(set.Columns, ", ") + " FROM " + set.Table +
		" WHERE (" + keyList + ") > (" + strings.Join(params, ", ") + ")" + tail
	if len(keys) == 1 {
		next = "SELECT " + keyList + ", " + strings.Join(set.Columns, ", ") + " FROM " + set.Table + " WHERE " + keyList + " > $1" + tail
	}
	updates := map[string]string{}
	for _, col := range set.Columns {
		conds := make([]string, len(keys))
		for i, k := range keys {
			conds[i] = k + " = $" + strconv.Itoa(i+2)
		}
		// The compare-and-swap compares bytes. On SQLite a plain value is
		// stored as TEXT (the column's declared type, see the migration)
		// and a TEXT never equals a BLOB parameter, so it is cast first.
		current := col
		if db.Dialect() == store.SQLite {
			current = "CAST(" + col + " AS BLOB)"
		}
		updates[col] = "UPDATE " + set.Table + " SET " + col + " = $1 WHERE " + strings.Join(conds, " AND ") +
			" AND " + current + " = $" + strconv.Itoa(len(keys)+2)
	}
	type change struct {
		key      []any
		column   string
		old, new []byte
	}
	sealedCount := 0
	var after []any
	for {
		q, args := first, []any(nil)
		if after != nil {
			q, args = next, after
		}
		rs, err := db.Reader().Query(ctx, q, args...)
		if err != nil {
			return sealedCount, err
		}
		var changes []change
		n := 0
		for rs.Next() {
			n++
			strs := make([]string, len(set.Key))
			ints := make([]int64, len(set.Key))
			vals := make([][]byte, len(set.Columns))
			dest := make([]any, 0, len(set.Key)+len(set.Columns))
			for i, k := range set.Key {
				if k.Kind == phi.KeyInteger {
					dest = append(dest, &ints[i])
				} else {
					dest = append(dest, &strs[i])
				}
			}
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			if err := rs.Scan(dest...); err != nil {
				rs.Close()
				return sealedCount, err
			}
			key := make([]any, len(set.Key))
			for i, k := range set.Key {
				if k.Kind == phi.KeyInteger {
					key[i] = ints[i]
				} else {
					key[i] = strs[i]
				}
			}
			after = key
			for i, v := range vals {
				if v == nil || sealed(v) {
					continue
				}
				col := set.Columns[i]
				ct, err := ring.Seal(set.AAD(key, col), v)
				if err != nil {
					rs.Close()
					return sealedCount, err
				}
				changes = append(changes, change{key: key, column: col, old: v, new: ct})
			}
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return sealedCount, err
		}
		if len(changes) > 0 {
			done := 0
			err := db.Tx(ctx, func(tx store.Tx) error {
				done = 0
				for _, c := range changes {
					args := append([]any{c.new}, c.key...)
					args = append(args, c.old)
					m, err := tx.Exec(ctx, updates[c.column], args...)
					if err != nil {
						return err
					}
					done += int(m)
				}
				return nil
			})
			if err != nil {
				return sealedCount, err
			}
			sealedCount += done
		}
		if n < legacyBatch {
			return sealedCount, nil
		}
	}
}
