package clinical

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A cellset is stored as one binary value (the cells column), because a
// day's cells are read and written whole and a range reads thousands of
// them: a version byte, then the entries.
//
//	cellset  = 0x01 uvarint(count) entry*
//	entry    = string(type) varint(rank) string(provider) cell
//	cell     = pairs(status) pairs(ttc) pairs(done) uvarint(count) step*
//	step     = string(code) string(role) pairs(wait) pairs(pending) pairs(due)
//	pairs    = uvarint(count) (varint(key - previous key) varint(n))*
//	string   = uvarint(length) bytes
//
// Keys are sorted, so a pair list's keys are small differences (minutes
// apart, not minutes since 1970).
const cellsetVersion = 1

func encodeCellset(cs cellset) []byte {
	b := make([]byte, 0, 64)
	b = append(b, cellsetVersion)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for _, e := range cs {
		b = appendString(b, string(e.key.typ))
		b = binary.AppendVarint(b, e.key.rank)
		b = appendString(b, e.key.provider)
		b = appendPairs(b, e.c.status)
		b = appendPairs(b, e.c.ttc)
		b = appendPairs(b, e.c.done)
		b = binary.AppendUvarint(b, uint64(len(e.c.steps)))
		for _, sc := range e.c.steps {
			b = appendString(b, sc.code)
			b = appendString(b, sc.role)
			b = appendPairs(b, sc.wait)
			b = appendPairs(b, sc.pending)
			b = appendPairs(b, sc.due)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendPairs(b []byte, ps []pair) []byte {
	b = binary.AppendUvarint(b, uint64(len(ps)))
	prev := int64(0)
	for _, p := range ps {
		b = binary.AppendVarint(b, p.k-prev)
		b = binary.AppendVarint(b, p.n)
		prev = p.k
	}
	return b
}

var errCellset = errors.New("clinical rollup: a stored cellset does not decode")

// decoder reads a cellset; the first error sticks.
type decoder struct {
	b   []byte
	err error
	// prev is the last key read of the pair list being read (pair).
	prev int64
}

func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		// Most numbers here are small: one byte, read inline.
		v := uint64(d.b[0])
		d.b = d.b[1:]
		return v
	}
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCellset
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a signed number (zig-zag, as binary.AppendVarint writes).
func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a length, bounded by what is left (every item takes at least
// a byte), so a damaged value cannot ask for a huge allocation.
func (d *decoder) count() int {
	d.prev = 0
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errCellset
		return 0
	}
	return int(n)
}

// bytes reads a string in place.
func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }

// pair reads the next pair of a list, its key as the difference from the
// one before: the caller keeps the running key in d.prev, reset by count.
func (d *decoder) pair() (int64, int64) {
	d.prev += d.varint()
	return d.prev, d.varint()
}

// skipCell steps over a cell.
func (d *decoder) skipCell() {
	for range 3 {
		d.skipPairs()
	}
	for range d.count() {
		d.bytes()
		d.bytes()
		for range 3 {
			d.skipPairs()
		}
	}
}

func (d *decoder) skipPairs() {
	for range d.count() {
		d.varint()
		d.varint()
	}
}

func (d *decoder) pairs() []pair {
	n := d.count()
	if n == 0 || d.err != nil {
		return nil
	}
	ps := make([]pair, n)
	prev := int64(0)
	for i := range ps {
		prev += d.varint()
		ps[i] = pair{k: prev, n: d.varint()}
	}
	return ps
}

func decodeCellset(b []byte) (cellset, error) {
	if len(b) == 0 || b[0] != cellsetVersion {
		return nil, errCellset
	}
	d := &decoder{b: b[1:]}
	cs := make(cellset, d.count())
	for i := range cs {
		e := &cs[i]
		e.key = subKey{typ: WorkflowType(d.string()), rank: d.varint(), provider: d.string()}
		e.c.status, e.c.ttc, e.c.done = d.pairs(), d.pairs(), d.pairs()
		e.c.steps = make([]stepCell, d.count())
		for j := range e.c.steps {
			sc := &e.c.steps[j]
			sc.code, sc.role = d.string(), d.string()
			sc.wait, sc.pending, sc.due = d.pairs(), d.pairs(), d.pairs()
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errCellset
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w (%d bytes)", d.err, len(b))
	}
	return cs, nil
}
