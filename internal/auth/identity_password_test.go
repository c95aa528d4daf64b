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
		names          []string
		ok             bool
		// want is in the error's message when the password is refused.
		want string
	}{
		{"twelve unpredictable characters pass", "alice", "kx8!mQ2#vLp9", nil, true, ""},
		{"a long passphrase passes", "alice", goodPassword, nil, true, ""},
		{"eleven characters fail", "alice", "kx8!mQ2#vLp", nil, false, "at least 12 characters"},
		{"twelve non-ASCII letters count as twelve", "alice", "كلمةسرطويلةج", nil, true, ""},
		{"the username fails", "alice.longname", "Alice.LongName", nil, false, "must not be the username"},
		{"over the byte limit fails", "alice", strings.Repeat("a", MaxPasswordLen+1), nil, false, "at most"},
		{"invalid UTF-8 fails", "alice", "kx8!mQ2#vLp9\xff", nil, false, "UTF-8"},
		// NIST SP 800-63B's blocklist: common and breached passwords,
		// repeats, sequences, keyboard walks, the account's own names.
		{"one letter twelve times fails", "alice", "aaaaaaaaaaaa", nil, false, "repeats characters"},
		{"a repeated pattern fails", "alice", "abc1abc1abc1abc1", nil, false, "repeats"},
		{"a common password fails", "alice", "password1234", nil, false, "commonly used password"},
		{"a common password with digits appended fails", "alice", "monkey123456", nil, false, "commonly used password"},
		{"an alphabet run fails", "alice", "abcdefghijkl", nil, false, "sequence"},
		{"a digit run fails", "alice", "123456789012", nil, false, "too easy to guess"},
		{"a keyboard walk fails", "alice", "qwertyuiopas", nil, false, "too easy to guess"},
		{"l33t spelling of a common password fails", "alice", "P@ssw0rd2024!", nil, false, "too easy to guess"},
		{"a part of the username fails", "amal.hassan.md", "hassan!Qz7#pLw", nil, false, "must not contain the username"},
		{"the username inside fails", "amal.hassan.md", "xx-amal.hassan.md-99", nil, false, "must not contain the username"},
		{"the display name fails", "dr.x", "Fatima river blue kite", []string{"Fatima Zahra"}, false, "must not contain the username or the account's name"},
		{"the service's name fails", "alice", "careflow2026!", nil, false, "too easy to guess"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckPasswordPolicy(c.user, c.pw, c.names...)
			if (err == nil) != c.ok {
				t.Fatalf("CheckPasswordPolicy = %v, want ok %v", err, c.ok)
			}
			if err != nil && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q; want it to say %q", err, c.want)
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
