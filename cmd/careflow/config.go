package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
)

// Config is everything a careflow command reads from flags and CAREFLOW_*
// environment variables, validated once at start. A flag beats the
// environment, which beats the default.
type Config struct {
	DataDir   string
	Database  string
	LogLevel  slog.Level
	LogFormat string

	Listen            string
	DebugListen       string
	MaxBodyBytes      int64
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration

	// Auth is the identity half: tokens, OIDC, rate limits, proxies, TLS
	// and the user/client commands' flags (auth_wiring.go).
	Auth AuthConfig

	// AccessPolicy is a policy document replacing the embedded default
	// (internal/auth/policy/default.json); empty uses the default.
	AccessPolicy string

	// MasterKeyFile holds the PHI master key (32 bytes, raw or base64);
	// empty falls back to CAREFLOW_MASTER_KEY, then the development key in
	// the data folder.
	MasterKeyFile string
	// AuditCheckpointDir receives the audit log's signed checkpoints, a
	// copy outside the database (default: audit-checkpoints in the data dir).
	AuditCheckpointDir string
	// AuditSigningKeyFile holds the Ed25519 key that signs checkpoints;
	// empty generates one in the data folder on first start.
	AuditSigningKeyFile string

	// Limits bound what one resource may cost the record (serve and
	// import; limits_config.go); zero fields take their defaults.
	Limits record.Limits

	// DiagnosticsEffectHosts are the only hosts (host or host:port) the
	// built-in diagnostics workflow's effect step may POST to; empty
	// disables the step.
	DiagnosticsEffectHosts []string

	// Client is how client commands (claims batch) reach a running
	// careflow.
	Client ClientConfig

	// DiagnosticsRecordWrites registers the built-in diagnostics.record
	// workflow, whose step writes two marker Observations to its run's
	// patient's record in the step's transaction.
	DiagnosticsRecordWrites bool

	// PayerSim is `careflow payer-sim`'s settings (payer_sim_cmd.go).
	PayerSim PayerSimConfig

	// HCX is how serve reaches payers (rcm_wiring.go).
	HCX HCXConfig

	// Events is where serve sends the domain events: webhooks and NATS
	// (events_wiring.go).
	Events EventsConfig
}

// ClientConfig is a running careflow as a client command calls it.
type ClientConfig struct {
	// Server is the server's base URL (http or https).
	Server string
	// Token is a bearer access token.
	Token string
}

func defaultConfig() Config {
	return Config{
		DataDir:           "./careflow-data",
		LogLevel:          slog.LevelInfo,
		LogFormat:         "json",
		Listen:            "127.0.0.1:8080",
		MaxBodyBytes:      16 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		Auth:              defaultAuthConfig(),
		PayerSim:          defaultPayerSimConfig(),
		HCX:               defaultHCXConfig(),
		Events:            defaultEventsConfig(),
	}
}

// option is one setting: a flag, its environment variable and its parser.
type option struct {
	name     string
	arg      string // how help names the value (DIR, URL, ...)
	usage    string
	def      func(Config) string
	set      func(*Config, string) error
	commands []string // which commands take it
}

// EnvName is the environment variable for a flag: --data-dir → CAREFLOW_DATA_DIR.
func envName(flagName string) string {
	return "CAREFLOW_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

var (
	cmdsDB    = []string{"serve", "migrate", "user", "client", "codes", "fees", "keys", "audit", "import"}
	cmdsKeys  = []string{"serve", "keys", "import"}
	cmdsAudit = []string{"serve", "audit", "import", "user"}
	// cmdsAuditSign are the commands that append to the audit log and so
	// sign its checkpoints.
	cmdsAuditSign = []string{"serve", "import", "user"}
	cmdsServe     = []string{"serve"}
	// cmdsAPIClient are the commands that call a running careflow's API.
	cmdsAPIClient = []string{"claims"}
	// cmdsLog are the commands that log: the database commands and
	// payer-sim.
	cmdsLog = []string{"serve", "migrate", "user", "client", "codes", "fees", "keys", "audit", "import", "payer-sim"}
)

// options lists every setting. It is a function, not a package variable, so
// nothing global is mutable.
func options() []option {
	return append([]option{
		{name: "data-dir", arg: "DIR", commands: cmdsDB,
			usage: "folder for the SQLite file, dev-mode keys and local state (created 0700)",
			def:   func(c Config) string { return c.DataDir },
			set: func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("must not be empty")
				}
				c.DataDir = v
				return nil
			}},
		{name: "database", arg: "URL", commands: cmdsDB,
			usage: "postgres://user@host:port/db for PostgreSQL, or a SQLite file path (default: careflow.db in the data dir)",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				if _, _, err := store.ParseURL(v, "unused"); err != nil {
					return errors.New(strings.TrimPrefix(err.Error(), "database: "))
				}
				c.Database = v
				return nil
			}},
		{name: "log-level", arg: "LEVEL", commands: cmdsLog,
			usage: "debug, info, warn or error",
			def:   func(c Config) string { return strings.ToLower(c.LogLevel.String()) },
			set: func(c *Config, v string) error {
				switch strings.ToLower(v) {
				case "debug":
					c.LogLevel = slog.LevelDebug
				case "info":
					c.LogLevel = slog.LevelInfo
				case "warn", "warning":
					c.LogLevel = slog.LevelWarn
				case "error":
					c.LogLevel = slog.LevelError
				default:
					return errors.New("must be debug, info, warn or error")
				}
				return nil
			}},
		{name: "log-format", arg: "FORMAT", commands: cmdsLog,
			usage: "json (one object per line) or text",
			def:   func(c Config) string { return c.LogFormat },
			set: func(c *Config, v string) error {
				if v != "json" && v != "text" {
					return errors.New("must be json or text")
				}
				c.LogFormat = v
				return nil
			}},
		{name: "listen", arg: "ADDR", commands: cmdsServe,
			usage: "host:port to serve HTTP on (port 0 picks a free port)",
			def:   func(c Config) string { return c.Listen },
			set: func(c *Config, v string) error {
				host, port, err := net.SplitHostPort(v)
				if err != nil {
					return errors.New("must be host:port, e.g. 127.0.0.1:8080")
				}
				if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
					return fmt.Errorf("host %q is not an IP address or host name", host)
				}
				if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					return fmt.Errorf("port %q must be a number from 0 to 65535", port)
				}
				c.Listen = v
				return nil
			}},
		{name: "debug-listen", arg: "ADDR", commands: cmdsServe,
			usage: "loopback host:port serving Go's runtime profiles (/debug/pprof/) to find where time goes; off when empty",
			def:   func(c Config) string { return c.DebugListen },
			set: func(c *Config, v string) error {
				if v == "" {
					c.DebugListen = ""
					return nil
				}
				host, port, err := net.SplitHostPort(v)
				if err != nil {
					return errors.New("must be host:port on a loopback address, e.g. 127.0.0.1:6060")
				}
				// Profiles name the code and its goroutines, never data; they
				// are still nobody's business off this machine.
				if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
					return fmt.Errorf("host %q is not a loopback address", host)
				}
				if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					return fmt.Errorf("port %q must be a number from 0 to 65535", port)
				}
				c.DebugListen = v
				return nil
			}},
		{name: "max-body-bytes", arg: "N", commands: cmdsServe,
			usage: "largest request body accepted; larger ones get 413",
			def:   func(c Config) string { return strconv.FormatInt(c.MaxBodyBytes, 10) },
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1024 {
					return errors.New("must be a whole number of bytes, at least 1024")
				}
				c.MaxBodyBytes = n
				return nil
			}},
		{name: "master-key-file", arg: "FILE", commands: cmdsKeys,
			usage: "the PHI master key: 32 bytes, raw or base64, readable by the owner only (else CAREFLOW_MASTER_KEY, else a development key in the data dir)",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				if _, err := os.Stat(v); err != nil {
					return errors.New("cannot read the file")
				}
				c.MasterKeyFile = v
				return nil
			}},
		{name: "audit-checkpoint-dir", arg: "DIR", commands: cmdsAudit,
			usage: "folder for the audit log's signed checkpoints, outside the database (default: audit-checkpoints in the data dir)",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("must not be empty")
				}
				c.AuditCheckpointDir = v
				return nil
			}},
		{name: "audit-signing-key-file", arg: "FILE", commands: cmdsAuditSign,
			usage: "Ed25519 key that signs audit checkpoints (default: generated in the data dir on first start)",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				if _, err := os.Stat(v); err != nil {
					return errors.New("cannot read the file")
				}
				c.AuditSigningKeyFile = v
				return nil
			}},
		{name: "access-policy", arg: "FILE", commands: []string{"serve", "user", "client", "import"},
			usage: "access policy JSON replacing the embedded default; validated at start (an unknown role, resource type, action or purpose is an error, and so is a type some role can write but none can read); user and client commands read it for which roles people and machine clients may have; import stores only the types it serves; format version 2: the workflow engine's human tasks are resource WorkflowTask and Task is the FHIR Task record only (a version 1 file naming Task is refused)",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				// Load it now so that a bad policy is a usage error naming
				// what is wrong, before anything starts.
				if _, err := auth.LoadPolicyFile(v); err != nil {
					return errors.New(strings.TrimPrefix(err.Error(), "access policy "))
				}
				c.AccessPolicy = v
				return nil
			}},
		{name: "diagnostics-effect-hosts", arg: "HOSTS", commands: cmdsServe,
			usage: "comma-separated host or host:port list the built-in diagnostics workflow's effect step may POST to (none: the step is disabled)",
			def:   func(c Config) string { return strings.Join(c.DiagnosticsEffectHosts, ",") },
			set: func(c *Config, v string) error {
				hosts, err := hostList(v)
				if err != nil {
					return err
				}
				c.DiagnosticsEffectHosts = hosts
				return nil
			}},
		{name: "diagnostics-record-writes", arg: "BOOL", commands: cmdsServe,
			usage: "register the built-in diagnostics.record workflow, whose step writes two marker Observations to its run's patient's record in the step's own transaction (audited as careflow-workflow)",
			def:   func(c Config) string { return strconv.FormatBool(c.DiagnosticsRecordWrites) },
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return errors.New("must be true or false")
				}
				c.DiagnosticsRecordWrites = b
				return nil
			}},
		{name: "server", arg: "URL", commands: cmdsAPIClient,
			usage: "the careflow server's base URL, e.g. http://127.0.0.1:8080 (claims batch calls its API)",
			def:   func(c Config) string { return c.Client.Server },
			set: func(c *Config, v string) error {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
					return errors.New("must be an http or https URL of a host, without a path, user or query, e.g. http://127.0.0.1:8080")
				}
				c.Client.Server = strings.TrimSuffix(v, "/")
				return nil
			}},
		{name: "token", arg: "TOKEN", commands: cmdsAPIClient,
			usage: "a bearer access token for --server (a billing user's from /api/v1/auth/login, or a client's); prefer the environment variable, which stays out of the shell's history",
			def:   func(c Config) string { return "" },
			set: func(c *Config, v string) error {
				if strings.ContainsAny(v, " \t\r\n") {
					return errors.New("must be a token without spaces")
				}
				c.Client.Token = v
				return nil
			}},
		durationOption("read-header-timeout", "time allowed to read request headers", func(c *Config) *time.Duration { return &c.ReadHeaderTimeout }),
		durationOption("read-timeout", "time allowed to read a whole request", func(c *Config) *time.Duration { return &c.ReadTimeout }),
		durationOption("write-timeout", "time allowed to write a response", func(c *Config) *time.Duration { return &c.WriteTimeout }),
		durationOption("idle-timeout", "how long an idle keep-alive connection stays open", func(c *Config) *time.Duration { return &c.IdleTimeout }),
		durationOption("shutdown-timeout", "how long SIGTERM waits for in-flight requests before giving up", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	}, append(append(append(authOptions(), limitOptions()...), payerSimOptions()...), append(hcxOptions(), eventsOptions()...)...)...)
}

func durationOption(name, usage string, field func(*Config) *time.Duration) option {
	return option{name: name, arg: "DURATION", commands: cmdsServe, usage: usage + " (e.g. 30s, 2m)",
		def: func(c Config) string { return field(&c).String() },
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return errors.New("must be a positive duration such as 30s or 2m")
			}
			*field(c) = d
			return nil
		}}
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

func optionsFor(command string) []option {
	var out []option
	for _, o := range options() {
		for _, c := range o.commands {
			if c == command {
				out = append(out, o)
			}
		}
	}
	return out
}

// errHelp is returned when the user asked for a command's help.
var errHelp = errors.New("help requested")

// usageError is a configuration mistake: exit 2 with its one sentence.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseConfig reads the command's settings from the environment, then the
// flags, and validates them. It returns remaining positional arguments.
func parseConfig(command string, args []string, getenv func(string) string) (Config, []string, error) {
	cfg := defaultConfig()
	opts := optionsFor(command)
	for _, o := range opts {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.set(&cfg, v); err != nil {
				return cfg, nil, usageError{fmt.Sprintf("environment variable %s=%q is invalid: %v", envName(o.name), v, err)}
			}
		}
	}
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, o := range opts {
		fs.Func(o.name, o.usage, func(v string) error {
			if err := o.set(&cfg, v); err != nil {
				return err
			}
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, nil, errHelp
		}
		return cfg, nil, usageError{flagErrorSentence(err)}
	}
	if command == "serve" {
		if err := checkHCX(cfg.HCX); err != nil {
			return cfg, nil, usageError{err.Error()}
		}
	}
	return cfg, fs.Args(), nil
}

// flagErrorSentence rewrites the flag package's messages into one sentence
// that names the flag with the dashes a user types.
func flagErrorSentence(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: -"):
		return fmt.Sprintf("unknown flag --%s", strings.TrimPrefix(msg, "flag provided but not defined: -"))
	case strings.HasPrefix(msg, "flag needs an argument: -"):
		return fmt.Sprintf("flag --%s needs a value", strings.TrimPrefix(msg, "flag needs an argument: -"))
	case strings.HasPrefix(msg, "invalid value "):
		// invalid value "x" for flag -listen: reason
		rest := strings.TrimPrefix(msg, "invalid value ")
		if i := strings.Index(rest, " for flag -"); i >= 0 {
			val := rest[:i]
			after := rest[i+len(" for flag -"):]
			name, reason, _ := strings.Cut(after, ": ")
			return fmt.Sprintf("flag --%s=%s is invalid: %s", name, strings.Trim(val, `"`), reason)
		}
	}
	return msg
}

// newLogger builds the process logger on stderr.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// ensureDataDir creates the data folder private to the owner.
func ensureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create data folder %s: %w", dir, err)
	}
	return nil
}
