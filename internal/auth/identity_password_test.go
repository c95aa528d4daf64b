package auth

import (
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/errs"
)

func TestProductionParametersAreTheAgreedMinimum(t *testing.T) {
	t.Parallel()
	p := DefaultArgon2Params()
	if p.MemoryKiB < 19*1024 || p.Time < 2 || p.Threads != 1 || p.SaltLen < 16 {
		t.Fatalf("default parameters %+v are below m=19MiB t=2 p=1 salt=16", p)
	}
	// One real hash with the production parameters.
	h, err := HashPassword(p, goodPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoded hash %q does not carry the parameters", h)
	}
	got, salt, key, err := decodePHC(h)
	if err != nil || got != p || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("decoded %+v salt %d key %d err %v", got, len(salt), len(key), err)
	}
	ok, rehash, err := VerifyPassword(h, goodPassword, p)
	if !ok || rehash || err != nil {
		t.Fatalf("verify = %v %v %v", ok, rehash, err)
	}
}

func TestHashesVerifyAndWeakOnesAskForARehash(t *testing.T) {
	t.Parallel()
	weak := cheapParams()
	h, err := HashPassword(weak, goodPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword(weak, goodPassword, nil)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if ok, _, _ := VerifyPassword(h, goodPassword+"x", weak); ok {
		t.Fatal("a wrong password verified")
	}
	if ok, rehash, _ := VerifyPassword(h, goodPassword, weak); !ok || rehash {
		t.Fatalf("same parameters: ok %v rehash %v", ok, rehash)
	}
	stronger := weak
	stronger.MemoryKiB *= 2
	if ok, rehash, _ := VerifyPassword(h, goodPassword, stronger); !ok || !rehash {
		t.Fatalf("raised parameters: ok %v rehash %v, want a rehash", ok, rehash)
	}
}

func TestMalformedOrHostileHashesAreRefused(t *testing.T) {
	t.Parallel()
	for _, h := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", // 95 GiB
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$c2hvcnQ",
	} {
		if ok, _, err := VerifyPassword(h, "whatever password", cheapParams()); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, user, pw string
		ok             bool
	}{
		{"twelve characters pass", "alice", "abcdefghijkl", true},
		{"a long passphrase passes", "alice", goodPassword, true},
		{"eleven characters fail", "alice", "abcdefghijk", false},
		{"twelve non-ASCII letters count as twelve", "alice", "كلمةسرطويلةج", true},
		{"the username fails", "alice.longname", "Alice.LongName", false},
		{"over the byte limit fails", "alice", strings.Repeat("a", MaxPasswordLen+1), false},
		{"invalid UTF-8 fails", "alice", "abcdefghijkl\xff", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckPasswordPolicy(c.user, c.pw)
			if (err == nil) != c.ok {
				t.Fatalf("CheckPasswordPolicy = %v, want ok %v", err, c.ok)
			}
			if err != nil && (!errs.Is(err, errs.Invalid) || strings.Contains(err.Error(), c.pw)) {
				t.Fatalf("error %v: want Invalid without the password", err)
			}
		})
	}
}

// BenchmarkHashPassword is the cost of one login (or one unknown-user
// login) at production parameters.
func BenchmarkHashPassword(b *testing.B) {
	p := DefaultArgon2Params()
	h, _ := HashPassword(p, goodPassword, nil)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, _ := VerifyPassword(h, goodPassword, p); !ok {
			b.Fatal("no match")
		}
	}
}
