package deid

import (
	"cmp"
	"slices"
	"strings"
	"unicode/utf8"
)

// A Scrubber removes identifiers from one patient's free text: the values
// Known gave it, and whatever the patterns find. Build one per patient with
// NewScrubber; the zero Scrubber knows nothing and removes only what the
// patterns find. It is safe for concurrent use.
type Scrubber struct {
	known matcher
}

// NewScrubber returns a Scrubber for the patient the values identify.
func NewScrubber(k Known) *Scrubber {
	return &Scrubber{known: newMatcher(k)}
}

// span is a stretch of text to replace: in view bytes while detectors
// work, in input bytes once mapped back.
type span struct {
	a, b int
	kind Kind
}

// Scrub returns text with every identifier replaced by its kind's
// placeholder, and the count of what it replaced. Invalid UTF-8 becomes
// U+FFFD first, so the result is always valid UTF-8. Where findings
// overlap, the union of their text is replaced, under the kind of the
// longest finding; neighbouring findings of one kind separated only by
// spaces or a hyphen become one placeholder ("[NAME]" for a full name, not
// "[NAME] [NAME]", which would also say how many parts it had).
func (s *Scrubber) Scrub(text string) (string, Report) {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	v := newView(text)
	t := tokenize(v.s)
	found := s.known.find(v.s, &t, nil)
	found = findPatterns(v.s, &t, found)
	found = findNumbers(v.s, &t, found)
	return replace(text, v, found)
}

// replace maps spans back to the input, merges them and writes the result.
func replace(text string, v *view, found []span) (string, Report) {
	rep := Report{}
	if len(found) == 0 {
		return text, rep
	}
	type cluster struct {
		span
		best int // length of the longest finding, which names the kind
	}
	in := make([]cluster, len(found))
	for i, f := range found {
		a, b := v.span(f.a, f.b)
		in[i] = cluster{span{a, b, f.kind}, b - a}
	}
	slices.SortFunc(in, func(x, y cluster) int {
		return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(y.b, x.b))
	})
	merged := []cluster{in[0]}
	for _, c := range in[1:] {
		cur := &merged[len(merged)-1]
		switch {
		case c.a < cur.b:
			if c.best > cur.best || c.best == cur.best && kindOrder[c.kind] < kindOrder[cur.kind] {
				cur.kind, cur.best = c.kind, c.best
			}
			cur.b = max(cur.b, c.b)
		case c.kind == cur.kind && c.kind != KindAge && onlySpaces(text[cur.b:c.a]):
			cur.b, cur.best = c.b, max(cur.best, c.best)
		default:
			merged = append(merged, c)
		}
	}
	var out strings.Builder
	out.Grow(len(text))
	at := 0
	for _, c := range merged {
		out.WriteString(text[at:c.a])
		out.WriteString(c.kind.Placeholder())
		rep[c.kind]++
		at = c.b
	}
	out.WriteString(text[at:])
	return out.String(), rep
}

// onlySpaces reports whether gap may sit inside one placeholder: nothing,
// or up to three spaces or hyphens.
func onlySpaces(gap string) bool {
	if len(gap) > 3 {
		return false
	}
	return strings.Trim(gap, " -\u00a0\t") == ""
}
