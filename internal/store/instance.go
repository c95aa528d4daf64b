package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// InstanceID returns this installation's id, creating it on first call. All
// nodes on one database share it.
func (db *DB) InstanceID(ctx context.Context) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	if _, err := db.Writer().Exec(ctx,
		`INSERT INTO instance (singleton, id, created_at) VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING`,
		id.String(), time.Now()); err != nil {
		return "", err
	}
	var got string
	err = db.Reader().QueryRow(ctx, `SELECT id FROM instance WHERE singleton = 1`).Scan(&got)
	return got, err
}
