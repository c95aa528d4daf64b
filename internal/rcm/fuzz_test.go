package rcm

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
)

// FuzzParseFeeFile: any bytes either load as rows that keep the file's
// rules (a known system, a date window in order, a non-negative amount in
// a currency) or are refused with problems that name lines in the file.
func FuzzParseFeeFile(f *testing.F) {
	if b, err := os.ReadFile("../../examples/fee-schedule.csv"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("system,code,price,preauth,effective_from\nCPT,99213,1.5,yes,2026-01-01\n"))
	f.Add([]byte("\uFEFFcode,system,price,preauth,effective_from,effective_to,currency\n99213,CPT,1.125,no,2026-01-01,2025-01-01,KWD\n"))
	f.Add([]byte("system,code,price,preauth,effective_from\n\"CPT,99213,1,no,2026-01-01\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parsed, err := parseFeeFile(strings.NewReader(string(data)), "EGP")
		if err != nil {
			if !errs.Is(err, errs.Invalid) && !errs.Is(err, errs.TooLarge) {
				t.Fatalf("error of kind %s: %v", errs.KindOf(err), err)
			}
			var fe *FeeFileError
			if errors.As(err, &fe) {
				lines := strings.Count(string(data), "\n") + 2
				for _, p := range fe.Problems {
					if p.Line < 1 || p.Line > lines {
						t.Fatalf("problem on line %d of a %d-line file", p.Line, lines)
					}
				}
			}
			return
		}
		for _, r := range parsed.rows {
			if r.system == "" || r.code == "" || r.amount < 0 || r.currency == "" || !validDate(r.from) || (r.to != "" && r.to < r.from) {
				t.Fatalf("row breaks the rules: %+v", r)
			}
		}
	})
}

// FuzzDecodeBatch: any body is a batch of at most MaxBatchEntries entries,
// each decoded or refused with an errs error, or refused whole as invalid.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`[{"kind":"standard","insurance":{"payer":"p"}}]`), false)
	f.Add([]byte("{\"kind\":\"standard\"}\n{\"kind\":7}\nnot json\n"), true)
	f.Add([]byte(`[{"colour":"blue"}, [1], "x"]`), false)
	f.Fuzz(func(t *testing.T, data []byte, ndjson bool) {
		b, err := DecodeBatch(strings.NewReader(string(data)), ndjson)
		if err != nil {
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("error of kind %s: %v", errs.KindOf(err), err)
			}
			return
		}
		if len(b.Entries) == 0 || len(b.Entries) > MaxBatchEntries || len(b.SourceHash) != 64 {
			t.Fatalf("%d entries, hash %q", len(b.Entries), b.SourceHash)
		}
		for _, e := range b.Entries {
			if e.Err != nil && !errs.Is(e.Err, errs.Invalid) {
				t.Fatalf("entry error of kind %s", errs.KindOf(e.Err))
			}
		}
	})
}
