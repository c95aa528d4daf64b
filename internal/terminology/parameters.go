package terminology

import (
	"context"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// Parameters is the FHIR R4 Parameters resource, reduced to the value types
// the terminology operations exchange.
type Parameters struct {
	ResourceType string      `json:"resourceType"`
	Parameter    []Parameter `json:"parameter,omitempty"`
}

// Parameter is one entry of Parameters.parameter, or one part of it. At most
// one value is set; the pointer fields keep false and "" distinguishable from
// absent.
type Parameter struct {
	Name          string       `json:"name"`
	ValueBoolean  *bool        `json:"valueBoolean,omitempty"`
	ValueString   *string      `json:"valueString,omitempty"`
	ValueCode     *string      `json:"valueCode,omitempty"`
	ValueURI      *string      `json:"valueUri,omitempty"`
	ValueDate     *string      `json:"valueDate,omitempty"`
	ValueDateTime *string      `json:"valueDateTime,omitempty"`
	ValueCoding   *fhir.Coding `json:"valueCoding,omitempty"`
	Part          []Parameter  `json:"part,omitempty"`
}

func boolParam(name string, v bool) Parameter     { return Parameter{Name: name, ValueBoolean: &v} }
func stringParam(name string, v string) Parameter { return Parameter{Name: name, ValueString: &v} }
func codeParam(name string, v string) Parameter   { return Parameter{Name: name, ValueCode: &v} }

// ValidateCodeInput is the parsed input of CodeSystem/$validate-code: the
// handler reads url, code, display, version, date and abstract (or a coding,
// whose system, code, display and version it copies here) and passes them on.
type ValidateCodeInput struct {
	URL     string // the code system's canonical URI ("url" in R4)
	Code    string
	Display string
	Version string
	// Date is the date of service ("date"); zero for none.
	Date time.Time
	// Abstract is the R4 "abstract" input: true accepts header codes.
	Abstract bool
}

// ValidateCodeOperation runs $validate-code and returns its output
// Parameters: result, message and, when careflow knows it, display. A code
// that is not valid is a normal answer (result false), not an error.
func (s *Service) ValidateCodeOperation(ctx context.Context, in ValidateCodeInput) (*Parameters, error) {
	if in.URL == "" {
		return nil, errs.E(errs.Invalid, "the url parameter (the code system) is required").InField("url")
	}
	if in.Code == "" {
		return nil, errs.E(errs.Invalid, "the code parameter is required").InField("code")
	}
	v, err := s.ValidateCode(ctx, in.URL, in.Code, ValidateOptions{
		Display: in.Display, Date: in.Date, Version: in.Version, Abstract: in.Abstract,
	})
	if err != nil {
		return nil, err
	}
	return ValidateCodeParameters(v), nil
}

// ValidateCodeParameters renders a Validation as the R4 $validate-code output.
func ValidateCodeParameters(v Validation) *Parameters {
	p := &Parameters{ResourceType: "Parameters"}
	p.Parameter = append(p.Parameter, boolParam("result", v.Valid))
	// R4: with result true, message carries hints and warnings only, so a
	// plain "valid in release 2026" is left out; a starter-set or
	// format-only answer, or an accepted header code, is worth a warning.
	if v.Message != "" && (!v.Valid || v.Basis != BasisRelease || !v.Billable) {
		p.Parameter = append(p.Parameter, stringParam("message", v.Message))
	}
	if v.Display != "" {
		p.Parameter = append(p.Parameter, stringParam("display", v.Display))
	}
	return p
}

// LookupInput is the parsed input of CodeSystem/$lookup ("system", "code",
// "version", "date"; or a coding copied into these fields).
type LookupInput struct {
	System  string
	Code    string
	Version string
	Date    time.Time
}

// LookupOperation runs $lookup and returns its output Parameters. Unknown
// codes are NotFound errors, as R4 has no "not found" output.
func (s *Service) LookupOperation(ctx context.Context, in LookupInput) (*Parameters, error) {
	if in.System == "" {
		return nil, errs.E(errs.Invalid, "the system parameter is required").InField("system")
	}
	if in.Code == "" {
		return nil, errs.E(errs.Invalid, "the code parameter is required").InField("code")
	}
	res, err := s.Lookup(ctx, in.System, in.Code, LookupOptions{Version: in.Version, Date: in.Date})
	if err != nil {
		return nil, err
	}
	return LookupParameters(res), nil
}

// LookupParameters renders a LookupResult as the R4 $lookup output: name,
// version, display, and one property per concept property with parts code
// and value.
func LookupParameters(r LookupResult) *Parameters {
	p := &Parameters{ResourceType: "Parameters"}
	p.Parameter = append(p.Parameter, stringParam("name", r.Name))
	if r.Version != "" {
		p.Parameter = append(p.Parameter, stringParam("version", r.Version))
	}
	// display is 1..1 in R4; a CPT list loaded without descriptions has
	// none, and the code itself is the honest stand-in.
	display := r.Display
	if display == "" {
		display = r.Code
	}
	p.Parameter = append(p.Parameter, stringParam("display", display))
	for _, prop := range r.Properties {
		value := Parameter{Name: "value"}
		switch v := prop.Value.(type) {
		case bool:
			value.ValueBoolean = &v
		case CodeValue:
			s := string(v)
			value.ValueCode = &s
		case string:
			value.ValueString = &v
		default:
			continue
		}
		p.Parameter = append(p.Parameter, Parameter{
			Name: "property",
			Part: []Parameter{codeParam("code", prop.Code), value},
		})
	}
	return p
}
