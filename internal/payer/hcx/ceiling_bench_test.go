package hcx

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"
	"time"
)

// The protocol's ceiling (BENCHMARKS.md, "Revenue cycle"): every JWE
// received costs its recipient one RSA-2048 OAEP decryption, every bearer
// token signed one RS256 signature. Run on one core (-cpu 1) to read the
// operations per second a core gives.

func BenchmarkRSA2048OAEPDecrypt(b *testing.B) {
	key := testKeys()[0]
	cek := make([]byte, 32) // an A256GCM content key, what the JWE wraps
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, cek, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := rsa.DecryptOAEP(sha256.New(), nil, key, wrapped, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRS256Sign(b *testing.B) {
	key := testKeys()[0]
	digest := sha256.Sum256([]byte("header.claims"))
	for b.Loop() {
		if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecryptClaimMessage is a whole received message: a claim-sized
// Bundle in a compact JWE, opened and its headers checked.
func BenchmarkDecryptClaimMessage(b *testing.B) {
	keys := testKeys()
	payload := []byte(`{"resourceType":"Bundle","type":"collection","entry":[` + strings.Repeat(`{"resource":{"resourceType":"Basic","id":"x"}},`, 40) + `{}]}`)
	compact, err := Encrypt(sampleHeader(), payload, &keys[0].PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := Decrypt(compact, keys[:1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBearerToken compares signing a token per call with the reuse
// Tokens gives.
func BenchmarkBearerToken(b *testing.B) {
	key := testKeys()[0]
	b.Run("signed per call", func(b *testing.B) {
		for b.Loop() {
			if _, err := SignToken(key, "provider@hcx", "gateway@hcx", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		ts := NewTokens("provider@hcx", nil)
		for b.Loop() {
			if _, err := ts.For(key, "gateway@hcx"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
