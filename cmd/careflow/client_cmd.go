package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/careflow/careflow/internal/auth"
)

const clientUsage = "add NAME --scopes SCOPES [--role ROLE] | list | disable NAME"

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, rest, code, ok := configOrExit("client", flagsFirst(args), stdout, stderr, getenv)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "careflow client: name a subcommand: %s.\n", clientUsage)
		return 2
	}
	sub, rest := rest[0], rest[1:]
	want := map[string]int{"add": 1, "list": 0, "disable": 1}
	n, known := want[sub]
	if !known {
		fmt.Fprintf(stderr, "careflow client: unknown subcommand %q; use %s.\n", sub, clientUsage)
		return 2
	}
	if len(rest) != n {
		fmt.Fprintf(stderr, "careflow client %s: takes %d argument(s); usage: careflow client %s.\n", sub, n, clientUsage)
		return 2
	}
	var scopes []string
	if sub == "add" {
		var err error
		if scopes, err = auth.ParseScopes(cfg.Auth.Scopes); err != nil || len(scopes) == 0 {
			fmt.Fprintln(stderr, "careflow client add: --scopes must name at least one valid scope.")
			return 2
		}
	}
	accounts, closeDB, err := accountsFor(ctx, cfg, stderr)
	if err != nil {
		return fail(stderr, "client "+sub, err)
	}
	defer closeDB()
	switch sub {
	case "add":
		role := auth.Integration
		if cfg.Auth.Role != "" {
			role = auth.Role(cfg.Auth.Role)
		}
		c, secret, err := accounts.AddClient(ctx, rest[0], role, scopes)
		if err != nil {
			return fail(stderr, "client add", err)
		}
		// The secret is printed this once and stored only as a hash.
		fmt.Fprintf(stdout, "client_id: %s\nclient_secret: %s\nrole: %s\nscopes: %s\n", c.ID, secret, c.Role, strings.Join(c.Scopes, " "))
		fmt.Fprintln(stderr, "Store the client secret now: it cannot be shown again.")
	case "list":
		clients, err := accounts.ListClients(ctx)
		if err != nil {
			return fail(stderr, "client list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT_ID\tNAME\tROLE\tSTATUS\tSCOPES")
		for _, c := range clients {
			status := "active"
			if c.Disabled {
				status = "disabled"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Name, c.Role, status, strings.Join(c.Scopes, " "))
		}
		tw.Flush()
	case "disable":
		if err := accounts.DisableClient(ctx, rest[0]); err != nil {
			return fail(stderr, "client disable", err)
		}
		fmt.Fprintf(stdout, "disabled client %s (its access tokens stop working within seconds)\n", rest[0])
	}
	return 0
}
