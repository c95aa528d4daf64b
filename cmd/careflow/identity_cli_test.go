package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// runCmd runs careflow in-process with only the given environment.
func runCmd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			dbURL := filepath.Join(dir, "cf.db")
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			}
			env := map[string]string{"CAREFLOW_DATABASE": dbURL, "CAREFLOW_DATA_DIR": dir}
			pwFile := filepath.Join(dir, "pw")
			if err := os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// Flags after the positional arguments, as people type them.
			code, out, errOut := runCmd(t, env, "user", "add", "Dr.Amal", "--role", "physician", "--password-file", pwFile)
			if code != 0 || !regexp.MustCompile(`added user dr\.amal \(id [0-9a-f-]{36}, role physician\)`).MatchString(out) {
				t.Fatalf("user add = %d %q %q", code, out, errOut)
			}
			if strings.Contains(out+errOut, "correct horse") {
				t.Fatal("the password was printed")
			}
			if code, _, errOut := runCmd(t, env, "user", "--role=nurse", "--password-file", pwFile, "add", "nurse.huda"); code != 0 {
				t.Fatalf("second user = %d %s", code, errOut)
			}
			if code, _, errOut := runCmd(t, env, "user", "add", "dr.amal", "--role", "nurse", "--password-file", pwFile); code != 1 || !strings.Contains(errOut, "already exists") {
				t.Fatalf("duplicate = %d %q", code, errOut)
			}
			if code, _, _ := runCmd(t, env, "user", "set-role", "nurse.huda", "billing"); code != 0 {
				t.Fatal("set-role failed")
			}
			if code, out, _ := runCmd(t, env, "user", "disable", "dr.amal"); code != 0 || !strings.Contains(out, "disabled user dr.amal") {
				t.Fatalf("disable = %d %q", code, out)
			}
			code, out, _ = runCmd(t, env, "user", "list")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
				!regexp.MustCompile(`dr\.amal\s+physician\s+disabled`).MatchString(lines[1]) ||
				!regexp.MustCompile(`nurse\.huda\s+billing\s+active`).MatchString(lines[2]) {
				t.Fatalf("user list = %d\n%s", code, out)
			}
			// The command stores production-strength hashes.
			db, err := store.Open(context.Background(), store.Config{URL: dbURL})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var hash string
			if err := db.Reader().QueryRow(context.Background(), `SELECT password_hash FROM auth_users WHERE username = 'nurse.huda'`).Scan(&hash); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
				t.Fatalf("stored hash %q", hash)
			}
		})
	}
}

func TestUserCommandMistakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"CAREFLOW_DATABASE": filepath.Join(dir, "cf.db"), "CAREFLOW_DATA_DIR": dir}
	short := filepath.Join(dir, "short")
	_ = os.WriteFile(short, []byte("tooshort\n"), 0o600)
	same := filepath.Join(dir, "same")
	_ = os.WriteFile(same, []byte("amal.hassan.md\n"), 0o600)
	common := filepath.Join(dir, "common")
	_ = os.WriteFile(common, []byte("password1234\n"), 0o600)
	ownName := filepath.Join(dir, "own")
	_ = os.WriteFile(ownName, []byte("hassan!Qz7#pLw\n"), 0o600)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"user"}, 2, "name a subcommand"},
		{"unknown subcommand", []string{"user", "delete", "x"}, 2, `unknown subcommand "delete"`},
		{"add without role", []string{"user", "add", "amal"}, 2, "--role is required"},
		{"unknown role", []string{"user", "add", "amal", "--role", "god"}, 2, "must be one of"},
		{"set-role to an unknown role", []string{"user", "set-role", "amal", "god"}, 2, "role must be one of"},
		{"short password", []string{"user", "add", "amal", "--role", "nurse", "--password-file", short}, 1, "at least 12 characters"},
		{"password is the username", []string{"user", "add", "amal.hassan.md", "--role", "nurse", "--password-file", same}, 1, "must not be the username"},
		{"add with a role for machine clients", []string{"user", "add", "feed", "--role", "integration", "--password-file", same}, 1, "role integration is for machine clients only"},
		{"set-role to a role for machine clients", []string{"user", "set-role", "amal", "integration"}, 1, "role integration is for machine clients only"},
		{"client with a role for people", []string{"client", "add", "gw", "--role", "physician", "--scopes", "system/Claim.rs"}, 1, "role physician is for people only"},
		{"a common password", []string{"user", "add", "amal", "--role", "nurse", "--password-file", common}, 1, "commonly used password"},
		{"a password holding part of the username", []string{"user", "add", "amal.hassan.md", "--role", "nurse", "--password-file", ownName}, 1, "must not contain the username"},
		{"no terminal and no file", []string{"user", "add", "amal", "--role", "nurse"}, 1, "not a terminal"},
		{"disable an unknown user", []string{"user", "disable", "ghost"}, 1, "no such user"},
		{"client without scopes", []string{"client", "add", "gw"}, 2, "--scopes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, env, c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.want)
			}
			if strings.Contains(errOut, "tooshort") || strings.Contains(errOut, "password1234") || strings.Contains(errOut, "Qz7") {
				t.Fatal("the password was echoed")
			}
		})
	}
}

func TestClientCommandPrintsTheSecretOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"CAREFLOW_DATABASE": filepath.Join(dir, "cf.db"), "CAREFLOW_DATA_DIR": dir}
	code, out, errOut := runCmd(t, env, "client", "add", "payer-gateway", "--scopes", "system/Claim.cruds system/Coverage.rs", "--role", "integration")
	if code != 0 {
		t.Fatalf("client add = %d %s", code, errOut)
	}
	m := regexp.MustCompile(`client_id: ([0-9a-f-]{36})\nclient_secret: (cfs_[A-Za-z0-9_-]{43})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("client add output %q", out)
	}
	code, out, _ = runCmd(t, env, "client", "list")
	if code != 0 || !strings.Contains(out, m[1]) || !strings.Contains(out, "payer-gateway") || strings.Contains(out, m[2]) {
		t.Fatalf("client list = %d %q (must not show the secret)", code, out)
	}
	if code, _, _ := runCmd(t, env, "client", "disable", "payer-gateway"); code != 0 {
		t.Fatal("client disable failed")
	}
}

// selfSigned writes a certificate and key for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "careflow test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// careflow serve with --tls-cert: TLS 1.2+ only, HSTS, and a full login
// over it with a --jwt-key-file key; the development key is not created.
func TestServeOverTLSWithAKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certPath, keyPath, pool := selfSigned(t, dir)
	_, pemKey, err := auth.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	jwtKey := filepath.Join(dir, "jwt.pem")
	_ = os.WriteFile(jwtKey, pemKey, 0o600)
	dataDir := filepath.Join(dir, "data")
	env := map[string]string{"CAREFLOW_DATA_DIR": dataDir}
	pwFile := filepath.Join(dir, "pw")
	_ = os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600)
	if code, _, errOut := runCmd(t, env, "user", "add", "amal", "--role", "nurse", "--password-file", pwFile); code != 0 {
		t.Fatal(errOut)
	}
	cfg, _, err := parseConfig("serve", []string{"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls-cert", certPath, "--tls-key", keyPath,
		"--jwt-key-file", jwtKey, "--log-level", "error"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan int, 1)
	go func() { done <- serve(ctx, cfg, io.Discard, serveHooks{listening: listening}) }()
	var addr string
	select {
	case addr = <-listening:
	case code := <-done:
		t.Fatalf("serve exited %d", code)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d", code)
		}
	}()
	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}}}
	}
	if _, err := client(tls.VersionTLS11).Get("https://" + addr + "/healthz"); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		resp, err := client(v).Get("https://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("TLS %x: %v", v, err)
		}
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Fatalf("no HSTS over TLS: %v", resp.Header)
		}
	}
	resp, err := client(0).Post("https://"+addr+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"amal","password":"correct horse battery"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != 200 || tr.AccessToken == "" {
		t.Fatalf("login over TLS = %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/auth/me", nil)
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	resp, err = client(0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"username":"amal"`) {
		t.Fatalf("me = %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(dataDir, auth.DevSigningKeyFile)); err == nil {
		t.Fatal("a development key was created although --jwt-key-file was given")
	}
}

func TestServeRefusesHalfAConfiguration(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--tls-cert", "/nonexistent/cert.pem"},
		{"--oidc-issuer", "https://idp.example"},
	} {
		cfg, _, err := parseConfig("serve", append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		if code := serve(context.Background(), cfg, &logs, serveHooks{}); code != 1 || !strings.Contains(logs.String(), "go together") {
			t.Fatalf("%v: exit %d, logs %s", args, code, logs.String())
		}
	}
	if code, _, errOut := runCmd(t, nil, "serve", "--trusted-proxy", "10.0.0.0/33"); code != 2 || !strings.Contains(errOut, "--trusted-proxy") {
		t.Fatalf("bad CIDR = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "serve", "--rate-limit-user", "lots"); code != 2 || !strings.Contains(errOut, "--rate-limit-user") {
		t.Fatalf("bad rate = %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "serve", "--oidc-issuer", "http://idp.example"); code != 2 || !strings.Contains(errOut, "https") {
		t.Fatalf("http issuer = %d %q", code, errOut)
	}
}

// startServe runs serve in-process and returns its address; it stops when
// the test ends.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	cfg, _, err := parseConfig("serve", append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "error"}, args...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan int, 1)
	go func() { done <- serve(ctx, cfg, io.Discard, serveHooks{listening: listening}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case addr := <-listening:
		return addr
	case code := <-done:
		t.Fatalf("serve exited %d", code)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	return ""
}

// Two careflow nodes given the same --redis share the per-address budget.
func TestServeSharesRateLimitsThroughRedis(t *testing.T) {
	t.Parallel()
	u := os.Getenv("CAREFLOW_TEST_REDIS")
	if u == "" {
		t.Skip("CAREFLOW_TEST_REDIS is not set")
	}
	// A unique key prefix keeps runs apart in the shared Redis.
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := fmt.Sprintf("careflow-test:%s:%x:", t.Name(), b)
	client := "198.18.0.1"
	args := []string{"--redis", u, "--redis-prefix", prefix, "--rate-limit-addr", "3/h", "--trusted-proxy", "127.0.0.1"}
	nodes := []string{startServe(t, args...), startServe(t, args...)}
	var statuses []int
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("GET", "http://"+nodes[i%2]+"/api/v1/auth/me", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if fmt.Sprint(statuses) != "[401 401 401 429 429]" {
		t.Fatalf("statuses %v: want three (unauthenticated) requests, then 429 on both nodes", statuses)
	}
}
