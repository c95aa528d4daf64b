// Command careflow runs a provider's clinical workflows and revenue cycle:
// `careflow serve` is the API and the workflow workers in one process,
// on an embedded SQLite file by default or on PostgreSQL for many nodes.
//
// main is thin: it parses configuration, wires the packages together in
// explicit code, and waits for a signal.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string // arguments after the command name
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int
	// help, when set, prints what the settings table does not: the
	// command's own flags and how it reads its arguments.
	help func(w io.Writer)
}

func commands() []command {
	return []command{
		{name: "serve", summary: "run the API, the workflow workers and event delivery (webhooks, NATS JetStream)", run: runServe},
		{name: "migrate", summary: "apply pending database migrations and exit", run: runMigrate},
		{name: "codes", summary: "load code system releases (ICD-10-CM, CPT, HCPCS, LOINC, SNOMED CT) and list them", usage: codesUsage, run: runCodes, help: printCodesHelp},
		{name: "user", summary: "add, list, disable local accounts, change their role or clear their failed-login lock-outs", usage: userUsage, run: runUser},
		{name: "client", summary: "add, list or disable machine clients (OAuth2 client credentials)", usage: clientUsage, run: runClient},
		{name: "fees", summary: "load payers' fee schedules from CSV (versions kept, currency per payer) and list them", usage: feesUsage, run: runFees, help: printFeesHelp},
		{name: "claims", summary: "submit a file of claims as one batch to a running careflow and follow it with a progress bar", usage: claimsUsage, run: runClaims, help: printClaimsHelp},
		{name: "import", summary: "load FHIR Bundles and NDJSON files into the record, audited, with a progress bar", usage: importUsage, run: runImport, help: printImportHelp},
		{name: "keys", summary: "show the PHI key ring or rotate the data key (re-encrypting every row)", usage: keysUsage, run: runKeys},
		{name: "hcx", summary: "decrypt or encrypt an HCX message (compact JWE with the x-hcx-* headers) by hand", usage: hcxUsage, run: runHcx, help: printHcxHelp},
		{name: "audit", summary: "verify the audit log against its signed checkpoints", usage: auditUsage, run: runAudit},
		{name: "payer-sim", summary: "run an HCX gateway with simulated payers (development and tests)", run: runPayerSim, help: printPayerSimHelp},
		{name: "version", summary: "print the version", run: runVersion},
		{name: "help", summary: "show help for careflow or a command", usage: "[COMMAND]", run: nil},
	}
}

// run is main with its dependencies passed in; it returns the exit code:
// 0 success, 1 failure, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			return helpFor(args[1], stdout, stderr)
		}
		printHelp(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(ctx, args[1:], stdout, stderr, getenv)
		}
	}
	fmt.Fprintf(stderr, "careflow: unknown command %q; run 'careflow help' for the list.\n", name)
	return 2
}

// configOrExit parses a command's settings and reports a mistake with one
// sentence and exit code 2 (or the help and 0).
func configOrExit(command string, args []string, stdout, stderr io.Writer, getenv func(string) string) (Config, []string, int, bool) {
	cfg, rest, err := parseConfig(command, args, getenv)
	if err == errHelp {
		helpFor(command, stdout, stderr)
		return cfg, nil, 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "careflow %s: %v.\n", command, strings.TrimSuffix(err.Error(), "."))
		return cfg, nil, 2, false
	}
	return cfg, rest, 0, true
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `careflow runs a hospital's or clinic's clinical workflows and revenue cycle:
admissions, consultations, procedures and discharges as steps done by the
care team's roles; patients, encounters, eligibility, pre-authorization,
claims and payments; de-identified exports for research with consent. On an
embedded SQLite file by default or PostgreSQL for many nodes.

Usage:
  careflow COMMAND [FLAGS]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every flag can also be set with an environment variable: --data-dir is
CAREFLOW_DATA_DIR. A flag beats the environment, which beats the default.
Run 'careflow help COMMAND' for a command's flags.
`)
}

func helpFor(name string, stdout, stderr io.Writer) int {
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fmt.Fprintf(stdout, "careflow %s: %s\n\nUsage:\n  careflow %s [FLAGS] %s\n", c.name, c.summary, c.name, c.usage)
		opts := optionsFor(name)
		if len(opts) > 0 {
			fmt.Fprint(stdout, "\nFlags:\n")
			def := defaultConfig()
			for _, o := range opts {
				d := o.def(def)
				if d == "" {
					d = "(none)"
				}
				fmt.Fprintf(stdout, "  --%s %s\n      %s\n      env %s, default %s\n", o.name, o.arg, o.usage, envName(o.name), d)
			}
		}
		if c.help != nil {
			c.help(stdout)
		}
		return 0
	}
	fmt.Fprintf(stderr, "careflow help: unknown command %q; run 'careflow help' for the list.\n", name)
	return 2
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "careflow version: takes no arguments.")
		return 2
	}
	fmt.Fprintf(stdout, "careflow %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// buildVersion is the -ldflags version, else the module version or VCS
// revision recorded by the Go toolchain.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return version
}
