package phi

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/errs"
)

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name  string
		input []byte
		ok    bool
	}{
		{"32 raw bytes are a key", raw, true},
		{"standard base64 with a newline is a key", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), true},
		{"unpadded URL base64 is a key", []byte(base64.RawURLEncoding.EncodeToString(raw)), true},
		{"31 raw bytes are not a key", raw[:31], false},
		{"base64 of 16 bytes is not a key", []byte(base64.StdEncoding.EncodeToString(raw[:16])), false},
		{"text is not a key", []byte("correct horse battery staple"), false},
		{"nothing is not a key", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseMasterKey(tt.input)
			if !tt.ok {
				if errs.KindOf(err) != errs.Invalid {
					t.Fatalf("err = %v, want invalid", err)
				}
				if strings.Contains(err.Error(), string(tt.input)) && len(tt.input) > 0 {
					t.Errorf("error %q echoes the input", err)
				}
				return
			}
			if err != nil || !bytes.Equal(k.b[:], raw) {
				t.Fatalf("ParseMasterKey = %x, %v", k.b, err)
			}
		})
	}
}

func TestReadMasterKeyFileRefusesLoosePermissions(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	tests := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"owner-only 0600 is accepted", 0o600, true},
		{"owner read-only 0400 is accepted", 0o400, true},
		{"group-readable 0640 is refused", 0o640, false},
		{"world-readable 0644 is refused", 0o644, false},
		{"group-writable 0620 is refused", 0o620, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := ReadMasterKeyFile(path)
			if tt.ok != (err == nil) {
				t.Fatalf("ReadMasterKeyFile = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("error %q does not say how to fix it", err)
			}
		})
	}
}

func TestLoadOrCreateMasterKeyMakesOnePrivateKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	// Several processes starting at once must agree on one key.
	keys := make([]MasterKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateMasterKey(dir)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k.b == nil || *k.b != *keys[0].b {
			t.Fatal("concurrent starts produced different master keys")
		}
	}
	info, err := os.Stat(filepath.Join(dir, DevMasterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %04o, want 0600", info.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s (temporary files left behind?)", len(entries), DevMasterKeyFile)
	}
	again, err := LoadOrCreateMasterKey(dir)
	if err != nil || *again.b != *keys[0].b {
		t.Fatalf("second start: %v, or another key", err)
	}
}

func TestResolveMasterKeyOrder(t *testing.T) {
	t.Parallel()
	fileKey := bytes.Repeat([]byte{1}, 32)
	envKey := bytes.Repeat([]byte{2}, 32)
	path := filepath.Join(t.TempDir(), "prod.key")
	if err := os.WriteFile(path, fileKey, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == MasterKeyEnv {
				return v
			}
			return ""
		}
	}
	envB64 := base64.StdEncoding.EncodeToString(envKey)
	tests := []struct {
		name    string
		file    string
		env     string
		dataDir string
		want    MasterKeySource
		key     []byte
	}{
		{"the flag wins over the environment", path, envB64, t.TempDir(), MasterKeyFromFile, fileKey},
		{"the environment wins over the data dir", "", envB64, t.TempDir(), MasterKeyFromEnv, envKey},
		{"with neither, the data dir gives a dev key", "", "", t.TempDir(), MasterKeyDev, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, src, err := ResolveMasterKey(tt.file, env(tt.env), tt.dataDir)
			if err != nil || src != tt.want {
				t.Fatalf("ResolveMasterKey = %v, %v; want %v", src, err, tt.want)
			}
			if tt.key != nil && !bytes.Equal(k.b[:], tt.key) {
				t.Errorf("wrong key from %v", src)
			}
		})
	}
	if _, _, err := ResolveMasterKey("", env("not base64!"), ""); errs.KindOf(err) != errs.Invalid {
		t.Errorf("bad env value: err = %v, want invalid", err)
	}
	if _, _, err := ResolveMasterKey("", env(""), ""); errs.KindOf(err) != errs.Invalid {
		t.Errorf("no source at all: err = %v, want invalid", err)
	}
}

func TestMasterKeyRedacts(t *testing.T) {
	t.Parallel()
	k, _ := ParseMasterKey(bytes.Repeat([]byte{0x41}, 32)) // "AAAA..."
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out := fmt.Sprintf(verb, k)
		if out != redactedKey {
			t.Errorf("Sprintf(%s) = %q", verb, out)
		}
	}
}

func TestWrappedKeyIsBoundToIDAndPurpose(t *testing.T) {
	t.Parallel()
	mk, _ := ParseMasterKey(bytes.Repeat([]byte{7}, 32))
	w, err := newWrapper(mk)
	if err != nil {
		t.Fatal(err)
	}
	material := bytes.Repeat([]byte{9}, dekSize)
	wrapped, err := w.wrap(3, PurposeData, material)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.unwrap(3, PurposeData, wrapped); err != nil || !bytes.Equal(got, material) {
		t.Fatalf("unwrap = %v", err)
	}
	if _, err := w.unwrap(4, PurposeData, wrapped); err == nil {
		t.Error("a wrapped key opened under another id")
	}
	if _, err := w.unwrap(3, PurposeBlindIndex, wrapped); err == nil {
		t.Error("a wrapped data key opened as a blind-index key")
	}
	other, _ := ParseMasterKey(bytes.Repeat([]byte{8}, 32))
	w2, _ := newWrapper(other)
	if _, err := w2.unwrap(3, PurposeData, wrapped); err == nil {
		t.Error("a wrapped key opened under another master key")
	}
}
