package audit

import (
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// FuzzOpenCheckpoint feeds arbitrary files to the checkpoint reader, which
// reads whatever is in the checkpoint directory: it must never panic, and
// must accept only what the trusted key signed.
func FuzzOpenCheckpoint(f *testing.F) {
	s, _, err := GenerateSigner()
	if err != nil {
		f.Fatal(err)
	}
	vs, err := NewVerifiers(s.VerifierKey())
	if err != nil {
		f.Fatal(err)
	}
	good, err := signCheckpoint(s, 12, tlog.RecordHash([]byte("x")), time.Unix(1700000000, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(good.Note))
	f.Add([]byte("go.sum database tree\n1\nAAAA\n\n— careflow-audit AAAA\n"))
	f.Add([]byte(""))
	f.Add([]byte("\n\n— \n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, _, err := openCheckpoint(msg, vs)
		if err == nil && string(msg) != good.Note {
			// The only note the key ever signed is good.Note; anything else
			// that opens must carry the same signed text.
			if cp.Size != good.Size || cp.Root != good.Root {
				t.Fatalf("accepted a checkpoint the key never signed: %+v", cp)
			}
		}
	})
}

// FuzzParseVerifiers: the verifiers file is operator-edited text.
func FuzzParseVerifiers(f *testing.F) {
	s, _, err := GenerateSigner()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(s.VerifierKey() + "\n"))
	f.Add([]byte("# comment\n\n" + s.VerifierKey()))
	f.Add([]byte("careflow-audit+00000000+AQ==\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseVerifiers(b)
		if err != nil {
			return
		}
		if _, err := NewVerifiers(keys...); err != nil {
			t.Fatalf("ParseVerifiers accepted keys NewVerifiers rejects: %v", err)
		}
	})
}
