package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestLoadOrCreateSignerKeepsOneKeyInTheDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	a, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.VerifierKey() != b.VerifierKey() {
		t.Fatal("a second start made a new key")
	}
	info, err := os.Stat(filepath.Join(dir, DevSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	// What one signs the other's verifier accepts.
	msg, err := note.Sign(&note.Note{Text: "x\n"}, a.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(b.Verifier())); err != nil {
		t.Fatalf("the derived verifier rejects the key's signature: %v", err)
	}
	if !strings.HasPrefix(a.VerifierKey(), KeyName+"+") {
		t.Errorf("verifier key %q does not carry the key name", a.VerifierKey())
	}
}

func TestSignerNeverPrintsItsPrivateKey(t *testing.T) {
	t.Parallel()
	s, skey, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.SplitN(skey, "+", 5)[4]
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), s.LogValue().String()} {
		if strings.Contains(out, secret) || strings.Contains(out, "PRIVATE") {
			t.Fatalf("printed the private key: %q", out)
		}
	}
}

func TestReadSignerFileRefusesAKeyOthersCanRead(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes")
	}
	_, skey, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte(skey), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignerFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("ReadSignerFile of a 0644 key = %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignerFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSigner("PRIVATE+KEY+nonsense"); err == nil || strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("ParseSigner of garbage = %v (must fail without echoing it)", err)
	}
}

func TestVerifiersFileCollectsRotatedKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := testSigner(t), testSigner(t)
	for _, s := range []*Signer{a, a, b} {
		if err := ensureVerifier(dir, s.VerifierKey()); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := ReadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != a.VerifierKey() || keys[1] != b.VerifierKey() {
		t.Fatalf("verifiers %v, want the two keys once each, oldest first", keys)
	}
	if err := os.WriteFile(filepath.Join(dir, VerifiersFile), []byte("# none\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadVerifiers(dir); err == nil {
		t.Fatal("an empty verifiers file was accepted")
	}
	if _, err := ParseVerifiers([]byte("not a key\n")); err == nil {
		t.Fatal("a malformed verifier key was accepted")
	}
}
