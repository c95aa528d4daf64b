package phi

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzOpen feeds arbitrary bytes to the ciphertext parser and to Open. The
// properties: no panic; parsing and KeyIDOf agree; anything that is not
// exactly what Seal produced for this AAD fails with ErrMalformed or
// ErrAuth or an unknown key, never with a plaintext. Seeds are in
// testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	ks := testKeyset(f, 2)
	valid, err := ks.seal(patientName, []byte("Mohamed Ali"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{formatV1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, ct []byte) {
		id, kerr := KeyIDOf(ct)
		env, perr := parseCiphertext(ct)
		if (kerr == nil) != (perr == nil) || (perr == nil && env.keyID != id) {
			t.Fatalf("KeyIDOf and parseCiphertext disagree: %v/%v, %v/%v", id, kerr, env.keyID, perr)
		}
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("parse error %v is not ErrMalformed", perr)
		}
		if perr == nil && len(env.header)+len(env.nonce)+len(env.sealed) != len(ct) {
			t.Fatal("parsed parts do not cover the input")
		}
		pt, ok, err := ks.open(patientName, ct)
		switch {
		case err == nil && ok:
			if !bytes.Equal(ct, valid) {
				t.Fatalf("a forged ciphertext opened to %q", pt)
			}
		case err == nil && !ok:
			if _, known := ks.keys[id]; known {
				t.Fatal("a known key reported as unknown")
			}
		case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzNormalize checks the properties every blind index relies on: the
// normal forms are fixed points (normalising twice changes nothing), valid
// UTF-8, trimmed, with single spaces; identifiers have no spaces; and every
// name prefix token is a prefix of a part of the normalised name. Seeds are
// in testdata/fuzz/FuzzNormalize.
func FuzzNormalize(f *testing.F) {
	f.Add("Mohamed Ali")
	f.Fuzz(func(t *testing.T, s string) {
		for _, mode := range []normMode{modeText, modeIdentifier, modeName} {
			n := normalize(s, mode)
			if again := normalize(n, mode); again != n {
				t.Fatalf("mode %d: not a fixed point: %q -> %q -> %q", mode, s, n, again)
			}
			if !utf8.ValidString(n) || strings.TrimSpace(n) != n || strings.Contains(n, "  ") {
				t.Fatalf("mode %d: %q -> %q is not clean", mode, s, n)
			}
			if mode == modeIdentifier && strings.Contains(n, " ") {
				t.Fatalf("identifier %q keeps a space: %q", s, n)
			}
		}
		parts := strings.Fields(NormalizeName(s))
		tokens := NamePrefixes(s)
		for _, tok := range tokens {
			if !slices.ContainsFunc(parts, func(p string) bool { return strings.HasPrefix(p, tok) }) {
				t.Fatalf("token %q is not a prefix of any part of %q", tok, parts)
			}
		}
		// Typing a whole name always finds it.
		for _, q := range NameQueryParts(s) {
			if !slices.Contains(tokens, q) {
				t.Fatalf("query part %q of %q is not among its tokens %q", q, s, tokens)
			}
		}
	})
}
