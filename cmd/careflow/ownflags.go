package main

import (
	"fmt"
	"strings"
)

// ownFlags are the flags a command reads itself rather than from the
// settings table (a code release's --version, a fee schedule's
// --currency): values that describe one invocation and have no business in
// the environment for the next one.
type ownFlags struct {
	values map[string]string
	given  []string // in the order given, each once
}

// splitOwnFlags separates a command's own flags (named by own) from the
// settings (--data-dir, --database, ...) and the positional arguments.
// Flags may come anywhere, as in `careflow codes load icd10cm FILE
// --version 2026`; every flag careflow has takes a value, so a flag
// without "=" consumes the next argument, except that an own flag never
// takes a value that looks like a flag (in `--version --data-dir x` the
// version was forgotten). An own flag given twice or without a value is a
// usage error; --help anywhere is errHelp.
func splitOwnFlags(args []string, own ...string) (flags ownFlags, settings, positional []string, err error) {
	flags.values = map[string]string{}
	isOwn := func(name string) bool {
		for _, o := range own {
			if o == name {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			return flags, nil, nil, errHelp
		}
		mine := isOwn(name)
		if !hasValue && i+1 < len(args) && !(mine && strings.HasPrefix(args[i+1], "-")) {
			value, hasValue = args[i+1], true
			i++
		}
		if !mine {
			settings = append(settings, "--"+name)
			if hasValue {
				settings = append(settings, value)
			}
			continue
		}
		if !hasValue {
			return flags, nil, nil, usageError{fmt.Sprintf("flag --%s needs a value", name)}
		}
		if _, twice := flags.values[name]; twice {
			return flags, nil, nil, usageError{fmt.Sprintf("flag --%s is given twice", name)}
		}
		flags.values[name] = value
		flags.given = append(flags.given, name)
	}
	return flags, settings, positional, nil
}
