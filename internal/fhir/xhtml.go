package fhir

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

const xhtmlNamespace = "http://www.w3.org/1999/xhtml"

// xhtmlProblem checks Narrative.div the way R4 defines it (txt-1, txt-2 and
// the xhtml type): well-formed XML whose root is a single div in the XHTML
// namespace, with no script, form or other active content, and no event
// attributes. It returns "" when the narrative is acceptable.
//
// HTML's named entities (&nbsp;, &copy;, ...) are accepted, as HL7's own
// examples use them, and so is a div that leaves the namespace undeclared
// (in JSON the element already says it is XHTML); a div in another
// namespace is not.
func xhtmlProblem(s string) string {
	dec := xml.NewDecoder(strings.NewReader(s))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	depth := 0
	roots := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "not well-formed XHTML: " + err.Error()
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if t.Name.Local != "div" || (t.Name.Space != xhtmlNamespace && t.Name.Space != "") {
					return "the narrative must be a single <div xmlns=\"" + xhtmlNamespace + "\">"
				}
			}
			switch strings.ToLower(t.Name.Local) {
			case "script", "form", "base", "link", "xlink", "object", "iframe", "embed", "applet", "style", "meta", "head", "body":
				return "the narrative must not contain <" + t.Name.Local + "> (txt-1)"
			}
			for _, a := range t.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") {
					return "the narrative must not carry event attributes such as " + a.Name.Local + " (txt-1)"
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				return "text outside the root div"
			}
		}
	}
	if roots != 1 {
		return "the narrative must be a single <div xmlns=\"" + xhtmlNamespace + "\">"
	}
	return ""
}
