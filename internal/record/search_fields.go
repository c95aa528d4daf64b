package record

import (
	"context"
	"slices"
	"strings"

	"github.com/careflow/careflow/internal/errs"
)

// What a search may reach through. The access policy limits, per role and
// purpose, which top-level elements of a type a response shows (field
// rules); a search that matched, sorted or followed references over a
// hidden element would reveal it anyway: "Encounter?reason-code=X" with a
// total of 1 tells a role that may not see reasonCode which patient has X.
// So every element a search reads is checked before the search runs:
//
//   - a parameter (any modifier, :missing too) reads the first step of each
//     of its paths, and those of the parameters it also matches (Also);
//   - _sort by a parameter reads that parameter's elements;
//   - _include=T:p reads p's elements of T (the searched type) and
//     _revinclude=T:p reads p's elements of T (the including type, which
//     shows nothing when the caller may not read T at all);
//   - _include=T:* follows only the reference parameters of T whose
//     elements are visible, as if the others were absent.
//
// A use over a hidden element is refused, the same whether anything
// matches or not (the check runs before the query), with a 400 naming the
// parameter and the element, never the value. _id and _lastUpdated read
// id and meta, which every reader sees. Chains and _has are not supported
// at all (ParseQuery refuses them), so they reach nothing.
//
// The decision is the policy's (auth), asked through ElementGuard; the
// elements a parameter reads are derived from its Paths (params.go), so a
// parameter added there is covered without a list to keep in step.

// ElementGuard is a Guard that can say which top-level elements of a type
// its caller may see, for the purpose its listings are decided for. A
// search, a conditional interaction's criteria and a Bundle's searches
// and conditional references are then limited to elements it sees. A Guard
// that is not an ElementGuard (nil in tests of this package, the CLI's
// system guard) sees every element.
type ElementGuard interface {
	Guard
	// SeesElement reports whether the caller may see the top-level element
	// of records of typ.
	SeesElement(ctx context.Context, typ, element string) bool
}

// elementUse is one part of a search that reads elements of a type: the
// parameter (the query's key: "reason-code", "_sort", "_include") and the
// top-level elements it reads.
type elementUse struct {
	key      string
	typ      string
	elements []string
}

// useElements records that key reads p's elements of typ.
func (q *Query) useElements(key, typ string, p *Param) {
	q.uses = append(q.uses, elementUse{key: key, typ: typ, elements: paramElements(typ, p)})
}

// paramElements are the top-level elements a parameter of typ reads: the
// first step of each of its paths and of the paths of the parameters it
// also matches, without a step's filter ("telecom[system=phone]" reads
// telecom), sorted, without repeats.
func paramElements(typ string, p *Param) []string {
	var out []string
	add := func(q *Param) {
		for _, path := range q.Paths {
			first, _, _ := strings.Cut(path, ".")
			first, _, _ = strings.Cut(first, "[")
			out = append(out, first)
		}
	}
	add(p)
	for _, also := range p.Also {
		if a := typeParams[typ][also]; a != nil {
			add(a)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkElements refuses q when a part of it reads an element the guard
// does not let its caller see, and narrows _include=T:* to the reference
// parameters whose elements it sees. It runs before any of q's SQL.
func (s *Service) checkElements(ctx context.Context, g Guard, q *Query) error {
	eg, ok := g.(ElementGuard)
	if !ok {
		return nil
	}
	for _, u := range q.uses {
		for _, el := range u.elements {
			if !eg.SeesElement(ctx, u.typ, el) {
				return errs.E(errs.NotSupported, "%s is not offered to your role: it reads %s.%s, an element your role may not see",
					u.key, u.typ, el).InField(u.key)
			}
		}
	}
	for i, inc := range q.includes {
		if inc.param != "*" {
			continue
		}
		var visible []string
		for _, name := range inc.params {
			if sees(ctx, eg, inc.typ, paramElements(inc.typ, typeParams[inc.typ][name])) {
				visible = append(visible, name)
			}
		}
		q.includes[i].params = visible
	}
	return nil
}

func sees(ctx context.Context, eg ElementGuard, typ string, elements []string) bool {
	for _, el := range elements {
		if !eg.SeesElement(ctx, typ, el) {
			return false
		}
	}
	return true
}

// referenceParams are typ's reference parameters, sorted: what
// _include=typ:* follows before checkElements narrows it.
func referenceParams(typ string) []string {
	var out []string
	for _, p := range ParamsOf(typ) {
		if p.Kind == Reference {
			out = append(out, p.Name)
		}
	}
	return out
}
