package terminology

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// The operation inputs arrive either as a query string (GET) or as a
// Parameters resource (POST). Both are read into one list of named values so
// that the two forms cannot drift apart. Inputs careflow does not implement
// are refused by name rather than ignored: silently ignoring, say,
// codeableConcept would validate nothing and answer "valid".

// inputValue is one named input, already reduced to text (or a Coding).
type inputValue struct {
	name   string
	text   string
	coding *fhir.Coding
}

var (
	validateCodeInputs = map[string]bool{"url": true, "code": true, "display": true, "version": true, "date": true, "abstract": true, "coding": true}
	lookupInputs       = map[string]bool{"system": true, "code": true, "version": true, "date": true, "coding": true}
)

func fromQuery(q url.Values, allowed map[string]bool) ([]inputValue, error) {
	var out []inputValue
	for name, vs := range q {
		if strings.HasPrefix(name, "_") { // _format, _pretty: the HTTP layer's business
			continue
		}
		if !allowed[name] {
			return nil, errs.E(errs.Invalid, "parameter %s is not supported by this operation", name).InField(name)
		}
		if name == "coding" {
			return nil, errs.E(errs.Invalid, "coding can only be sent in a Parameters resource; use system/url and code in a query").InField(name)
		}
		for _, v := range vs {
			out = append(out, inputValue{name: name, text: v})
		}
	}
	return out, nil
}

func fromParameters(p *Parameters, allowed map[string]bool) ([]inputValue, error) {
	if p == nil || p.ResourceType != "Parameters" {
		return nil, errs.E(errs.Invalid, "the body must be a Parameters resource").InField("resourceType")
	}
	var out []inputValue
	for _, prm := range p.Parameter {
		if !allowed[prm.Name] {
			return nil, errs.E(errs.Invalid, "parameter %s is not supported by this operation", prm.Name).InField(prm.Name)
		}
		v := inputValue{name: prm.Name}
		switch {
		case prm.ValueCoding != nil:
			v.coding = prm.ValueCoding
		case prm.ValueString != nil:
			v.text = *prm.ValueString
		case prm.ValueCode != nil:
			v.text = *prm.ValueCode
		case prm.ValueURI != nil:
			v.text = *prm.ValueURI
		case prm.ValueDate != nil:
			v.text = *prm.ValueDate
		case prm.ValueDateTime != nil:
			v.text = *prm.ValueDateTime
		case prm.ValueBoolean != nil:
			v.text = strconv.FormatBool(*prm.ValueBoolean)
		default:
			return nil, errs.E(errs.Invalid, "parameter %s has no value of a supported type", prm.Name).InField(prm.Name)
		}
		if (prm.Name == "coding") != (v.coding != nil) {
			return nil, errs.E(errs.Invalid, "parameter %s has the wrong value type", prm.Name).InField(prm.Name)
		}
		out = append(out, v)
	}
	return out, nil
}

// single returns the one value of name, failing on repeats.
func single(vs []inputValue, name string) (inputValue, bool, error) {
	var found inputValue
	n := 0
	for _, v := range vs {
		if v.name == name {
			found = v
			n++
		}
	}
	if n > 1 {
		return inputValue{}, false, errs.E(errs.Invalid, "parameter %s is given more than once", name).InField(name)
	}
	return found, n == 1, nil
}

// collect fills the fields shared by both operations. systemName is "url"
// for $validate-code and "system" for $lookup (R4's names).
func collect(vs []inputValue, systemName string) (system, code, display, version string, date inputDate, err error) {
	get := func(name string) string {
		if err != nil {
			return ""
		}
		v, _, e := single(vs, name)
		err = e
		return v.text
	}
	system, code, display, version = get(systemName), get("code"), get("display"), get("version")
	rawDate := get("date")
	if err != nil {
		return
	}
	c, hasCoding, e := single(vs, "coding")
	if e != nil {
		err = e
		return
	}
	if hasCoding {
		if system != "" || code != "" {
			err = errs.E(errs.Invalid, "give either coding or %s and code, not both", systemName).InField("coding")
			return
		}
		system, code, version = c.coding.System, c.coding.Code, c.coding.Version
		if display == "" {
			display = c.coding.Display
		}
	}
	if rawDate != "" {
		d := firstDate(rawDate)
		if d.IsZero() {
			err = errs.E(errs.Invalid, "date must be a full date (YYYY-MM-DD) or dateTime").InField("date")
			return
		}
		date = inputDate{d}
	}
	return
}

// ParseValidateCodeQuery reads $validate-code inputs from a query string.
func ParseValidateCodeQuery(q url.Values) (ValidateCodeInput, error) {
	vs, err := fromQuery(q, validateCodeInputs)
	if err != nil {
		return ValidateCodeInput{}, err
	}
	return validateCodeInput(vs)
}

// ParseValidateCodeParameters reads $validate-code inputs from a Parameters body.
func ParseValidateCodeParameters(p *Parameters) (ValidateCodeInput, error) {
	vs, err := fromParameters(p, validateCodeInputs)
	if err != nil {
		return ValidateCodeInput{}, err
	}
	return validateCodeInput(vs)
}

func validateCodeInput(vs []inputValue) (ValidateCodeInput, error) {
	system, code, display, version, date, err := collect(vs, "url")
	if err != nil {
		return ValidateCodeInput{}, err
	}
	in := ValidateCodeInput{URL: system, Code: code, Display: display, Version: version, Date: date.Time}
	if a, ok, err := single(vs, "abstract"); err != nil {
		return ValidateCodeInput{}, err
	} else if ok {
		b, perr := strconv.ParseBool(a.text)
		if perr != nil || (a.text != "true" && a.text != "false") {
			return ValidateCodeInput{}, errs.E(errs.Invalid, "abstract must be true or false").InField("abstract")
		}
		in.Abstract = b
	}
	return in, nil
}

// ParseLookupQuery reads $lookup inputs from a query string.
func ParseLookupQuery(q url.Values) (LookupInput, error) {
	vs, err := fromQuery(q, lookupInputs)
	if err != nil {
		return LookupInput{}, err
	}
	return lookupInput(vs)
}

// ParseLookupParameters reads $lookup inputs from a Parameters body.
func ParseLookupParameters(p *Parameters) (LookupInput, error) {
	vs, err := fromParameters(p, lookupInputs)
	if err != nil {
		return LookupInput{}, err
	}
	return lookupInput(vs)
}

func lookupInput(vs []inputValue) (LookupInput, error) {
	system, code, _, version, date, err := collect(vs, "system")
	if err != nil {
		return LookupInput{}, err
	}
	return LookupInput{System: system, Code: code, Version: version, Date: date.Time}, nil
}

// inputDate wraps a parsed date so collect's zero value means "none".
type inputDate struct{ time.Time }
