package terminology

import (
	"context"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// CodeValue marks a property value that is a FHIR code (valueCode), as
// opposed to free text (valueString).
type CodeValue string

// Property is one concept property in a $lookup answer. Value is a bool,
// a string or a CodeValue.
type Property struct {
	Code  string
	Value any
}

// The property codes careflow returns. notSelectable and parent are FHIR's
// standard concept properties; the others are careflow's.
const (
	PropNotSelectable = "notSelectable"     // true for ICD-10-CM header codes
	PropParent        = "parent"            // the nearest enclosing ICD-10-CM code
	PropBillable      = "billable"          // valid for HIPAA-covered transactions
	PropShortDisplay  = "short-description" // CMS's abbreviated description
	PropCPTCategory   = "cpt-category"      // CPT code kind from its format
)

// LookupOptions are the optional inputs of Lookup.
type LookupOptions struct {
	// Date picks the release valid on that date of service; zero picks the
	// newest release that has the code.
	Date time.Time
	// Version pins a release.
	Version string
}

// LookupResult is the answer of Lookup.
type LookupResult struct {
	System string
	// Name is the code system's name ("ICD-10-CM").
	Name string
	// Version is the release that answered, or the starter set's name.
	Version string
	// Code is in display form (ICD-10-CM dotted).
	Code       string
	Display    string
	Properties []Property
}

// Lookup returns what careflow knows about a code: its display and
// properties. A code careflow holds no content for is NotFound (with a
// message saying whether the system has no content or the code is missing);
// a malformed code is Invalid. Identifier systems (the Egyptian national ID)
// are refused: a look-up would echo PHI.
func (s *Service) Lookup(ctx context.Context, system, code string, opts LookupOptions) (LookupResult, error) {
	info, ok := knownSystems[system]
	if !ok {
		return LookupResult{}, errs.E(errs.NotFound, "code system %q is not one careflow knows", system).InField("system")
	}
	if info.phi {
		return LookupResult{}, errs.E(errs.Invalid, "%s is an identifier system; $lookup is not offered for it", info.name).InField("system")
	}
	res := LookupResult{System: system, Name: info.name, Code: code}
	stored := code
	if system == SystemICD10CM {
		n, err := NormalizeICD10CM(code)
		if err != nil {
			return LookupResult{}, errs.E(errs.Invalid, "not an ICD-10-CM code: %v", err).InField("code")
		}
		stored, res.Code = n, DottedICD10CM(n)
	} else if p := info.checkFormat(code); p != nil {
		return LookupResult{}, errs.E(errs.Invalid, "%s", p.msg).InField("code")
	}
	cands, err := s.candidates(ctx, system, stored)
	if err != nil {
		return LookupResult{}, err
	}
	if len(cands) == 0 {
		c, ok := starterLookup(system, stored)
		if !ok {
			if _, has := starterSets[system]; has {
				return LookupResult{}, errs.E(errs.NotFound, "%s is not in careflow's built-in %s starter set, and no %s release is loaded", res.Code, info.name, info.name).InField("code")
			}
			return LookupResult{}, errs.E(errs.NotFound, "no %s content is loaded; careflow can check the format of %s but has no display for it", info.name, mention(system, res.Code)).InField("code")
		}
		res.Version, res.Display = starterVersion, c.display
		res.Properties = properties(system, stored, c.billable, "")
		if system == SystemICD10CM {
			res.Properties = appendParent(res.Properties, stored, func(p string) bool { _, ok := starterLookup(system, p); return ok })
		}
		return res, nil
	}
	var found []candidate
	for _, c := range cands {
		if c.has {
			found = append(found, c)
		}
	}
	var chosen candidate
	switch {
	case opts.Version != "" || !opts.Date.IsZero():
		c, ok := pick(cands, opts.Version, opts.Date)
		if !ok {
			return LookupResult{}, errs.E(errs.NotFound, "no loaded %s release matches the version or date asked for", info.name)
		}
		if !c.has {
			return LookupResult{}, errs.E(errs.NotFound, "%s is not a code in %s release %s", mention(system, res.Code), info.name, c.version).InField("code")
		}
		chosen = c
	case len(found) > 0:
		chosen = found[0]
	default:
		return LookupResult{}, errs.E(errs.NotFound, "%s is not a code in any loaded %s release", mention(system, res.Code), info.name).InField("code")
	}
	res.Version, res.Display = chosen.version, chosen.display
	res.Properties = properties(system, stored, chosen.billable, chosen.short)
	if system == SystemICD10CM {
		parents, err := s.existingPrefixes(ctx, chosen.version, stored)
		if err != nil {
			return LookupResult{}, err
		}
		res.Properties = appendParent(res.Properties, stored, func(p string) bool { return parents[p] })
	}
	return res, nil
}

// properties builds the system-specific properties of a code.
func properties(system, code string, billable bool, short string) []Property {
	var ps []Property
	switch system {
	case SystemICD10CM:
		ps = append(ps,
			Property{Code: PropNotSelectable, Value: !billable},
			Property{Code: PropBillable, Value: billable})
		if short != "" {
			ps = append(ps, Property{Code: PropShortDisplay, Value: short})
		}
	case SystemCPT:
		if cat, err := ParseCPT(code); err == nil {
			ps = append(ps, Property{Code: PropCPTCategory, Value: CodeValue(cat)})
		}
	}
	return ps
}

// appendParent adds the nearest shorter code that exists (E11.6 for E11.65),
// as FHIR's parent property; ICD-10-CM nests codes by prefix.
func appendParent(ps []Property, code string, exists func(string) bool) []Property {
	for n := len(code) - 1; n >= icdMinLen; n-- {
		if exists(code[:n]) {
			return append(ps, Property{Code: PropParent, Value: CodeValue(DottedICD10CM(code[:n]))})
		}
	}
	return ps
}

// existingPrefixes reports which proper prefixes of code (3 characters and
// longer) are codes of the ICD-10-CM release version.
func (s *Service) existingPrefixes(ctx context.Context, version, code string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(code) <= icdMinLen {
		return out, nil
	}
	args := []any{SystemICD10CM, version}
	q := `SELECT c.code FROM terminology_codes c JOIN terminology_releases r ON r.id = c.release_id
		WHERE r.system = $1 AND r.version = $2 AND c.code IN (`
	for n := icdMinLen; n < len(code); n++ {
		if n > icdMinLen {
			q += ","
		}
		args = append(args, code[:n])
		q += fmt.Sprintf("$%d", len(args))
	}
	q += ")"
	rows, err := s.reader().Query(ctx, q, args...)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "look up parent codes")
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "look up parent codes")
		}
		out[c] = true
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "look up parent codes")
	}
	return out, nil
}
