package fhir

import (
	"encoding/json"
	"testing"
	"time"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var fixedTime = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
