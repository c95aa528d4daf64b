package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startPayerSim runs `careflow payer-sim` on a free port and returns its
// base URL and a function that stops it and returns the exit code.
func startPayerSim(t testing.TB, args ...string) (string, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"payer-sim", "--listen", "127.0.0.1:0", "--log-level", "error"}, args...), outW, io.Discard, func(string) string { return "" })
		outW.Close()
		done <- code
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("payer-sim printed nothing: %v (exit %d)", err, <-done)
	}
	go io.Copy(io.Discard, outR)
	m := regexp.MustCompile(`on (http://[0-9.:]+)`).FindStringSubmatch(line)
	if m == nil {
		cancel()
		t.Fatalf("no address in %q", line)
	}
	return m[1], func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("payer-sim did not stop")
			return -1
		}
	}
}

func registryCerts(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Post(base+"/participant/search", "application/json", strings.NewReader(`{"filters":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Participants []struct {
			Code string `json:"participant_code"`
			Cert string `json:"encryption_cert"`
		} `json:"participants"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range res.Participants {
		out[p.Code] = p.Cert
	}
	return out
}

func TestPayerSimServesItsRegistryAndKeepsItsKeysAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, stop := startPayerSim(t, "--data-dir", dir)
	first := registryCerts(t, base)
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, code := range []string{"hcx-gateway", "payer-nile", "payer-delta"} {
		if !strings.Contains(first[code], "BEGIN CERTIFICATE") {
			t.Fatalf("the registry does not list %s with its certificate: %v", code, first)
		}
		fi, err := os.Stat(filepath.Join(dir, "keys", code, "hcx-key.pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's key: %v %v", code, err, fi)
		}
	}
	base, stop = startPayerSim(t, "--data-dir", dir)
	again := registryCerts(t, base)
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if again["payer-nile"] != first["payer-nile"] {
		t.Fatal("a restart made new keys")
	}
}

func TestPayerSimRefusesABadRulesFileNamingTheLine(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("payers:\n  - code: p\n    nmae: P\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	code := run(context.Background(), []string{"payer-sim", "--data-dir", t.TempDir(), "--rules", path}, io.Discard, &stderr, func(string) string { return "" })
	if code != 2 || !strings.Contains(stderr.String(), "line 3") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
