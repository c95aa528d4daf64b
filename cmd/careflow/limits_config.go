package main

import (
	"fmt"
	"strconv"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
)

// cmdsWrite are the commands that write resources into the record and so
// take the limits on what one resource may cost.
var cmdsWrite = []string{"serve", "import"}

// limitOptions are the flags of record.Limits. Each has a floor under
// which real resources would not fit, so a typo cannot lock every writer
// out.
func limitOptions() []option {
	return []option{
		limitOption("max-resource-elements", "most JSON values (objects, arrays, strings, numbers, booleans) in one resource; a Bundle entry's resource counts apart",
			fhir.DefaultMaxElements, 100, func(l *record.Limits) *int { return &l.Elements }),
		limitOption("max-array-items", "most items in any one array (Bundle.entry excepted)",
			fhir.DefaultMaxArrayItems, 10, func(l *record.Limits) *int { return &l.ArrayItems }),
		limitOption("max-depth", "deepest nesting of objects and arrays, counted from the body's root",
			fhir.DefaultMaxDepth, 8, func(l *record.Limits) *int { return &l.Depth }),
		limitOption("max-string-bytes", "longest string value in bytes (R4's 1 MB rule still holds for all but base64 attachments)",
			fhir.DefaultMaxStringBytes, 1024, func(l *record.Limits) *int { return &l.StringBytes }),
		limitOption("max-bundle-entries", "most entries in one Bundle",
			fhir.DefaultMaxBundleEntries, 1, func(l *record.Limits) *int { return &l.BundleEntries }),
		limitOption("max-index-rows", "most search-index rows one resource may need",
			record.DefaultMaxIndexRows, 100, func(l *record.Limits) *int { return &l.IndexRows }),
	}
}

func limitOption(name, what string, def, floor int, field func(*record.Limits) *int) option {
	return option{name: name, arg: "N", commands: cmdsWrite,
		usage: what + "; a resource over it is refused (HTTP 413, OperationOutcome too-costly)",
		def: func(c Config) string {
			if v := *field(&c.Limits); v > 0 {
				return strconv.Itoa(v)
			}
			return strconv.Itoa(def)
		},
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < floor {
				return fmt.Errorf("must be a whole number, at least %d", floor)
			}
			*field(&c.Limits) = n
			return nil
		}}
}
