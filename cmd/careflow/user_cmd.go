package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// userUsage is the user command's argument synopsis.
const userUsage = "add USERNAME --role ROLE [--password-file PATH] | list | disable USERNAME | set-role USERNAME ROLE | unlock USERNAME"

// flagsFirst moves flags ahead of positional arguments so that
// `careflow user add alice --role admin` parses like `--role admin add
// alice` (the flag package stops at the first positional argument). Every
// careflow flag takes a value, so a flag without "=" consumes the next
// argument.
func flagsFirst(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			return append(flags, pos...)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(a, "=") && name != "h" && name != "help" && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

// accountsFor opens the database and the account service for a command.
func accountsFor(ctx context.Context, cfg Config, stderr io.Writer) (*auth.Accounts, func(), error) {
	accounts, _, closeDB, err := accountsAndDB(ctx, cfg, stderr)
	return accounts, closeDB, err
}

// accountsAndDB is accountsFor that also returns the database.
func accountsAndDB(ctx context.Context, cfg Config, stderr io.Writer) (*auth.Accounts, *store.DB, func(), error) {
	logger := newLogger(cfg, stderr)
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	// The policy says which roles accounts and clients may have.
	policy, err := loadPolicy(cfg)
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	accounts, err := auth.NewAccounts(db, auth.AccountsConfig{Policy: policy})
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return accounts, db, func() { db.Close() }, nil
}

// How the audit log names the account commands: the actor is the command
// line (whoever ran it had the database's credentials), the role "cli".
const (
	userCommandActor = "careflow-cli"
	userCommandRole  = "cli"
)

// auditUserCommand appends one account change to the audit log: its
// action, and the account's id when it has one.
func auditUserCommand(ctx context.Context, log *audit.Log, action, userID string) error {
	_, err := log.Append(ctx, audit.Entry{
		Actor: userCommandActor, Role: userCommandRole, Action: audit.Action(action),
		ResourceType: "User", ResourceID: userID, Purpose: audit.PurposeOperations,
		Outcome: audit.OutcomeSuccess, Severity: audit.SeverityWarning,
	})
	if err != nil {
		return fmt.Errorf("the change was made but the audit log could not record it: %w", err)
	}
	return nil
}

// fail prints an error for a person: the client-safe message of an
// *errs.Error, or the error itself.
func fail(stderr io.Writer, command string, err error) int {
	msg := err.Error()
	if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
		msg = e.Message
	}
	fmt.Fprintf(stderr, "careflow %s: %s.\n", command, strings.TrimSuffix(msg, "."))
	return 1
}

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("user", flagsFirst(args), stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "careflow user: name a subcommand: %s.\n", userUsage)
		return 2
	}
	sub, rest := rest[0], rest[1:]
	want := map[string]int{"add": 1, "list": 0, "disable": 1, "set-role": 2, "unlock": 1}
	n, known := want[sub]
	if !known {
		fmt.Fprintf(stderr, "careflow user: unknown subcommand %q; use %s.\n", sub, userUsage)
		return 2
	}
	if len(rest) != n {
		fmt.Fprintf(stderr, "careflow user %s: takes %d argument(s); usage: careflow user %s.\n", sub, n, userUsage)
		return 2
	}
	if sub == "add" && cfg.Auth.Role == "" {
		fmt.Fprintln(stderr, "careflow user add: --role is required.")
		return 2
	}
	if sub == "set-role" && !auth.Role(rest[1]).Valid() {
		fmt.Fprintf(stderr, "careflow user set-role: role must be one of %s.\n", roleList())
		return 2
	}
	if sub == "add" || sub == "set-role" {
		// A role not for people is refused before a password is asked for.
		role := cfg.Auth.Role
		if sub == "set-role" {
			role = rest[1]
		}
		policy, err := loadPolicy(cfg)
		if err != nil {
			return fail(stderr, "user "+sub, err)
		}
		if err := policy.CheckRoleFor(auth.Role(role), auth.KindUser); err != nil {
			return fail(stderr, "user "+sub, err)
		}
	}
	var password string
	if sub == "add" {
		// Ask before opening the database, so a mistyped password costs
		// nothing.
		pw, err := readNewPassword(cfg.Auth.PasswordFile, stderr)
		if err != nil {
			return fail(stderr, "user add", err)
		}
		if err := auth.CheckPasswordPolicy(rest[0], pw); err != nil {
			return fail(stderr, "user add", err)
		}
		password = pw
	}
	accounts, db, closeDB, err := accountsAndDB(ctx, cfg, stderr)
	if err != nil {
		return fail(stderr, "user "+sub, err)
	}
	defer closeDB()
	// Every change to an account is audited (action user_add, user_disable,
	// user_set_role or user_unlock on the account's id). The log is opened
	// before the change, so a log that cannot be written stops it.
	var auditLog *audit.Log
	if sub != "list" {
		auditLog, err = openAuditLog(ctx, cfg, db, newLogger(cfg, stderr))
		if err != nil {
			return fail(stderr, "user "+sub, err)
		}
		defer auditLog.Close(context.WithoutCancel(ctx))
	}
	audited := func(name string) error {
		id := ""
		if u, err := accounts.UserByName(ctx, name); err == nil {
			id = u.ID
		}
		return auditUserCommand(ctx, auditLog, "user_"+strings.ReplaceAll(sub, "-", "_"), id)
	}
	switch sub {
	case "add":
		u, err := accounts.AddUser(ctx, rest[0], password, auth.Role(cfg.Auth.Role))
		if err != nil {
			return fail(stderr, "user add", err)
		}
		if err := audited(u.Username); err != nil {
			return fail(stderr, "user add", err)
		}
		fmt.Fprintf(stdout, "added user %s (id %s, role %s)\n", u.Username, u.ID, u.Role)
	case "list":
		users, err := accounts.ListUsers(ctx)
		if err != nil {
			return fail(stderr, "user list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tROLE\tSTATUS\tCREATED")
		for _, u := range users {
			status := "active"
			if u.Disabled {
				status = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Role, status, u.CreatedAt.Format("2006-01-02T15:04:05Z"))
		}
		tw.Flush()
	case "disable":
		if err := accounts.DisableUser(ctx, rest[0]); err != nil {
			return fail(stderr, "user disable", err)
		}
		if err := audited(rest[0]); err != nil {
			return fail(stderr, "user disable", err)
		}
		fmt.Fprintf(stdout, "disabled user %s; its sessions are revoked\n", strings.ToLower(rest[0]))
	case "set-role":
		if err := accounts.SetRole(ctx, rest[0], auth.Role(rest[1])); err != nil {
			return fail(stderr, "user set-role", err)
		}
		if err := audited(rest[0]); err != nil {
			return fail(stderr, "user set-role", err)
		}
		fmt.Fprintf(stdout, "user %s now has role %s (access tokens naming the old role stop working within seconds; a refresh or new login gets the new one)\n", strings.ToLower(rest[0]), rest[1])
	case "unlock":
		// Throttles are kept for any name typed at the login (so they
		// reveal nothing), so unlocking an unknown name is no error; it is
		// said, since it usually means a typo.
		if _, err := accounts.UserByName(ctx, rest[0]); err != nil && !errs.Is(err, errs.NotFound) {
			return fail(stderr, "user unlock", err)
		} else if err != nil {
			fmt.Fprintf(stderr, "careflow user unlock: note: there is no user %s.\n", strings.ToLower(rest[0]))
		}
		cleared, err := accounts.Unlock(ctx, rest[0])
		if err != nil {
			return fail(stderr, "user unlock", err)
		}
		if err := audited(rest[0]); err != nil {
			return fail(stderr, "user unlock", err)
		}
		if cleared {
			fmt.Fprintf(stdout, "unlocked user %s: its failed-login lock-outs and delays are cleared on every node\n", strings.ToLower(rest[0]))
		} else {
			fmt.Fprintf(stdout, "user %s had no failed-login lock-out or delay\n", strings.ToLower(rest[0]))
		}
	}
	return 0
}

// readNewPassword reads a new password from a file ("-" for standard
// input: its first line) or, on a terminal, prompts twice without echo.
func readNewPassword(file string, stderr io.Writer) (string, error) {
	if file != "" {
		var r io.Reader
		if file == "-" {
			r = os.Stdin
		} else {
			f, err := os.Open(file)
			if err != nil {
				return "", fmt.Errorf("cannot open the password file: %w", err)
			}
			defer f.Close()
			r = f
		}
		line, err := bufio.NewReader(io.LimitReader(r, auth.MaxPasswordLen+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("cannot read the password file: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("standard input is not a terminal; use --password-file PATH (or - for standard input)")
	}
	fmt.Fprint(stderr, "New password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Repeat it: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the two passwords differ")
	}
	return string(a), nil
}
