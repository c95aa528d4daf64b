package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/careflow/careflow/internal/payer/sim"
)

// PayerSimConfig is `careflow payer-sim`'s own settings: it listens and
// keeps its data apart from `careflow serve`, so both run on one machine.
type PayerSimConfig struct {
	Listen  string
	DataDir string
	// Rules is a YAML or JSON rules file; empty uses the embedded rules.
	Rules string
}

func defaultPayerSimConfig() PayerSimConfig {
	return PayerSimConfig{Listen: "127.0.0.1:8090", DataDir: "./payer-sim-data"}
}

var cmdsPayerSim = []string{"payer-sim"}

// payerSimOptions are payer-sim's flags. --listen and --data-dir are named
// as serve's are, with their own defaults (serve's options do not apply to
// payer-sim).
func payerSimOptions() []option {
	return []option{
		{name: "listen", arg: "ADDR", commands: cmdsPayerSim,
			usage: "host:port the simulated gateway and registry serve HTTP on (port 0 picks a free port)",
			def:   func(c Config) string { return c.PayerSim.Listen },
			set: func(c *Config, v string) error {
				host, port, err := net.SplitHostPort(v)
				if err != nil {
					return errors.New("must be host:port, e.g. 127.0.0.1:8090")
				}
				if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
					return fmt.Errorf("host %q is not an IP address or host name", host)
				}
				if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					return fmt.Errorf("port %q must be a number from 0 to 65535", port)
				}
				c.PayerSim.Listen = v
				return nil
			}},
		{name: "data-dir", arg: "DIR", commands: cmdsPayerSim,
			usage: "folder for the simulator's ledger (SQLite), its master key and the gateway's and payers' development keys (created 0700, keys 0600)",
			def:   func(c Config) string { return c.PayerSim.DataDir },
			set: func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("must not be empty")
				}
				c.PayerSim.DataDir = v
				return nil
			}},
		{name: "rules", arg: "FILE", commands: cmdsPayerSim,
			usage: "the payers' rules, YAML or JSON (docs/payer-sim.md; default: the embedded rules, as in examples/payer-sim/rules.yaml)",
			def:   func(c Config) string { return c.PayerSim.Rules },
			set: func(c *Config, v string) error {
				if _, err := os.Stat(v); err != nil {
					return errors.New("cannot read the file")
				}
				c.PayerSim.Rules = v
				return nil
			}},
	}
}

func printPayerSimHelp(w io.Writer) {
	fmt.Fprint(w, `
The simulator is a development and test tool: it accepts any participant
that registers (POST /participant/create) and serves the ledger without
authentication (GET /sim/ledger). Never expose it beyond the machine or
test network. To make careflow and the simulator find each other:

  careflow payer-sim --listen 127.0.0.1:8090 --data-dir ./payer-sim-data
  careflow serve --hcx-gateway http://127.0.0.1:8090

See docs/payer-sim.md for the rules file and the ledger.
`)
}

// runPayerSim runs the gateway and payer simulator until SIGINT or SIGTERM.
func runPayerSim(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("payer-sim", args, stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintln(stderr, "careflow payer-sim: takes no arguments, only flags.")
		return 2
	}
	logger := newLogger(cfg, stderr)
	rules := sim.DefaultRules()
	if cfg.PayerSim.Rules != "" {
		b, err := os.ReadFile(cfg.PayerSim.Rules)
		if err == nil {
			rules, err = sim.ParseRules(b)
		}
		if err != nil {
			fmt.Fprintf(stderr, "careflow payer-sim: %s: %v.\n", cfg.PayerSim.Rules, err)
			return 2
		}
	}
	if err := ensureDataDir(cfg.PayerSim.DataDir); err != nil {
		fmt.Fprintf(stderr, "careflow payer-sim: %v.\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := sim.New(ctx, sim.Config{Rules: rules, DataDir: cfg.PayerSim.DataDir, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "careflow payer-sim: %v.\n", err)
		return 1
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.PayerSim.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "careflow payer-sim: cannot listen on %s: %v.\n", cfg.PayerSim.Listen, err)
		return 1
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	s.Start(ctx)
	payers := make([]string, 0, len(rules.Payers))
	for _, p := range rules.Payers {
		payers = append(payers, p.Code)
	}
	fmt.Fprintf(stdout, "payer-sim: gateway %s on http://%s (payers: %s); careflow serve --hcx-gateway http://%s\n",
		s.GatewayCode(), ln.Addr(), strings.Join(payers, ", "), ln.Addr())
	logger.Warn("payer-sim is a development and test tool: registrations are accepted without review and the ledger is open")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		fmt.Fprintf(stderr, "careflow payer-sim: %v.\n", err)
		_ = s.Stop(context.Background())
		return 1
	}
	stop()
	logger.Info("payer-sim: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stop first: it lets go of requests held by the timeout fault, which
	// the HTTP server's shutdown would otherwise wait for.
	err = s.Stop(shutdownCtx)
	if serr := srv.Shutdown(shutdownCtx); err == nil {
		err = serr
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow payer-sim: shutdown: %v.\n", err)
		return 1
	}
	return 0
}
