package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
)

// decodeJSON reads a JSON API body strictly: one object, no unknown fields,
// nothing after it, and the rules fhir.CheckJSON holds every body to (no
// member twice in an object, no unpaired surrogate, no control character
// but tab, CR and LF in a string). Errors name the field at fault.
func decodeJSON(r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errs.E(errs.UnsupportedMedia, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errs.E(errs.Invalid, "request body is empty; a JSON object is required")
	}
	return decodeStrict(body, dst)
}

// decodeStrict decodes one JSON object body into dst after fhir.CheckJSON:
// encoding/json alone would keep the last of two equal keys and turn a lone
// surrogate into U+FFFD without a word.
func decodeStrict(body []byte, dst any) error {
	if err := fhir.CheckJSON(body); err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errs.E(errs.Invalid, "request body has data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var strict *fhir.SyntaxError
	switch {
	case errors.As(err, &strict) && strict.Path != "":
		return errs.E(errs.Invalid, "%s: %s", strict.Path, strict.Msg).InField(strict.Path)
	case errors.As(err, &strict):
		return errs.E(errs.Invalid, "malformed JSON at byte %d: %s", strict.Offset, strict.Msg)
	case errors.As(err, &syn):
		return errs.E(errs.Invalid, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return errs.E(errs.Invalid, "%s must be %s, not JSON %s", field, typ.Type.String(), typ.Value).InField(field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errs.E(errs.Invalid, "unknown field %q", name).InField(name)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(errs.Invalid, "JSON body ends early")
	default:
		return errs.Wrap(errs.Invalid, err, "request body is not valid JSON")
	}
}
