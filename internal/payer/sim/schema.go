package sim

import (
	"context"
	"fmt"
	"strings"

	"github.com/careflow/careflow/internal/store"
)

// schema is the simulator's own tables, kept apart from careflow's
// migrations (the simulator is a development and test tool whose database
// is its own: a file in its --data-dir, or a test's database). Each
// statement is idempotent, applied by migrate at every start. TS and BYTES
// are the dialect's timestamp and byte-string types.
//
// Nothing here is readable PHI: codes, opaque ids, amounts and states are
// plain; the claims' bundles are sealed with the phi ring (table
// sim_claims, columns request and answer, row = the claim row's id); the
// member's id is a blind index; a pending callback is the compact JWE
// already encrypted for its recipient.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS sim_participants (
	code            TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	roles           TEXT NOT NULL,
	status          TEXT NOT NULL,
	endpoint_url    TEXT NOT NULL,
	encryption_cert TEXT NOT NULL,
	signing_cert    TEXT NOT NULL,
	updated_at      TS NOT NULL
)`,
	// One row per message accepted from a provider, keyed by api_call_id.
	// fingerprint is a hash of what makes a re-send identical (sender,
	// recipient, action, correlation, workflow, status); resends counts the
	// identical re-sends answered 202 without processing.
	`CREATE TABLE IF NOT EXISTS sim_messages (
	api_call_id    TEXT PRIMARY KEY,
	sender         TEXT NOT NULL,
	recipient      TEXT NOT NULL,
	action         TEXT NOT NULL,
	correlation_id TEXT NOT NULL,
	workflow_id    TEXT NOT NULL,
	fingerprint    TEXT NOT NULL,
	received_at    TS NOT NULL,
	resends        INTEGER NOT NULL DEFAULT 0
)`,
	// One row per claim or pre-authorization adjudicated (or waiting for
	// information). identifier is Claim.identifier's value (careflow's
	// opaque claim number), related the original's for an appeal.
	`CREATE TABLE IF NOT EXISTS sim_claims (
	id             TEXT PRIMARY KEY,
	payer          TEXT NOT NULL,
	provider       TEXT NOT NULL,
	claim_use      TEXT NOT NULL,
	identifier     TEXT NOT NULL,
	related        TEXT NOT NULL,
	api_call_id    TEXT NOT NULL,
	correlation_id TEXT NOT NULL,
	workflow_id    TEXT NOT NULL,
	member_index   TEXT NOT NULL,
	state          TEXT NOT NULL,
	outcome        TEXT NOT NULL,
	denial_code    TEXT NOT NULL,
	currency       TEXT NOT NULL,
	submitted      BIGINT NOT NULL,
	benefit        BIGINT NOT NULL,
	preauth_ref    TEXT NOT NULL,
	request        BYTES NOT NULL,
	answer         BYTES,
	received_at    TS NOT NULL,
	adjudicated_at TS,
	paid_at        TS
)`,
	`CREATE INDEX IF NOT EXISTS sim_claims_identifier ON sim_claims (identifier)`,
	`CREATE INDEX IF NOT EXISTS sim_claims_correlation ON sim_claims (correlation_id)`,
	// The benefit a member used this year (usedThisYear) and the approved
	// pre-authorization a claim names (approvedPreauths) are asked at every
	// adjudication: without these each was a scan of every claim, sealed
	// bundles and all, and a batch of 10,000 slowed as it went.
	`CREATE INDEX IF NOT EXISTS sim_claims_member ON sim_claims (payer, member_index, claim_use, adjudicated_at)`,
	`CREATE INDEX IF NOT EXISTS sim_claims_preauth_ref ON sim_claims (preauth_ref)`,
	// hcx/status names the exchange by correlation_id or workflow_id.
	`CREATE INDEX IF NOT EXISTS sim_claims_workflow ON sim_claims (workflow_id)`,
	// Callbacks waiting for delivery (and, once delivered, their record).
	// id is a UUIDv7: callbacks of one correlation are delivered in id
	// order, an undelivered one holding back those after it.
	`CREATE TABLE IF NOT EXISTS sim_callbacks (
	id             TEXT PRIMARY KEY,
	claim_id       TEXT NOT NULL,
	kind           TEXT NOT NULL,
	correlation_id TEXT NOT NULL,
	recipient      TEXT NOT NULL,
	action         TEXT NOT NULL,
	api_call_id    TEXT NOT NULL,
	payload        TEXT NOT NULL,
	due_at         TS NOT NULL,
	attempts       INTEGER NOT NULL DEFAULT 0,
	delivered_at   TS,
	last_status    INTEGER NOT NULL DEFAULT 0
)`,
	`CREATE INDEX IF NOT EXISTS sim_callbacks_pending ON sim_callbacks (delivered_at, due_at)`,
	// A correlation's earlier undelivered callback holds back the later.
	`CREATE INDEX IF NOT EXISTS sim_callbacks_correlation ON sim_callbacks (correlation_id, id)`,
}

// migrate creates the simulator's tables when they are missing.
func migrate(ctx context.Context, db *store.DB) error {
	ts, bytes := "TEXT", "BLOB"
	if db.Dialect() == store.Postgres {
		ts, bytes = "TIMESTAMPTZ", "BYTEA"
	}
	return db.Tx(ctx, func(tx store.Tx) error {
		for _, stmt := range schema {
			stmt = strings.NewReplacer(" TS", " "+ts, " BYTES", " "+bytes).Replace(stmt)
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("payer-sim schema: %w", err)
			}
		}
		return nil
	})
}
