package record

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"sort"
	"sync"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// The index rows' layout (migration 0024). An index row is what a search
// looks up by the million, so it holds only what the look-up and the
// rewrite of its resource need, in the fewest bytes:
//
//   - the resource as resources.rid, an integer assigned on insert, not
//     its type and 36-character id (the type is implied by the parameter,
//     the id is one join away);
//   - the parameter as an integer key of its type and name (paramKey), one
//     or two bytes, not two strings;
//   - a blind index as its first 16 bytes, in binary on SQLite (a BLOB) and
//     as 22 characters of base64url on PostgreSQL (a text column cannot
//     hold arbitrary bytes), not the 43 characters phi returns.
//
// On SQLite each index table is WITHOUT ROWID, keyed by (rid, param,
// value...): a resource's rows are one range of the key, which a rewrite
// deletes and inserts together, and a second B-tree orders the same rows
// by (param, value...) for the look-up. Together they cost two copies of
// about 30 bytes per row, where the rows before 0024 cost three copies
// (table, look-up, owner index) of 60 to 130 bytes.

// blindBytes is how much of a blind index (HMAC-SHA256, 32 bytes) a row
// keeps. Search matches rows by equality and does not recheck the
// decrypted resource against the query (a match is only decided by the
// access policy), so a collision would return a wrong record; 128 bits
// make that negligible. HMAC-SHA256 truncated is a pseudo-random function
// of the value, so for one look-up the chance that any of n other values
// of its parameter's domain shares its 16 bytes is n/2^128 (3·10^-30 for
// a billion values), and the chance that any two stored values of a domain
// share them at all is about n²/2^129 (1.5·10^-21). Truncation keeps the
// blind index's other properties: equal values still give equal rows, and
// a reader without the key still learns nothing but equality.
const blindBytes = 16

// blindTextChars is the length of a truncated blind index as text: 22
// characters of unpadded base64url carry 132 bits, the 16 bytes kept and 4
// more.
const blindTextChars = 22

// blindValue is what a row stores for the blind index h (43 characters of
// base64url from phi), and what a search compares with: on SQLite its
// first 16 bytes, on PostgreSQL its first 22 characters. A value that is
// not a blind index of phi's form is returned unchanged.
func blindValue(d store.Dialect, h string) any {
	if d == store.Postgres {
		if len(h) > blindTextChars {
			return h[:blindTextChars]
		}
		return h
	}
	var full [32]byte
	if n, err := base64.RawURLEncoding.Decode(full[:], []byte(h)); err != nil || n != len(full) {
		return h
	}
	return full[:blindBytes:blindBytes]
}

// paramKeys numbers R4's search parameters for the index rows: every
// parameter of the pinned definitions (fhir.SearchParams, supported or
// not), Patient's first, then each other type's by type name, each type's
// by parameter name, two numbers each (name, then name:exact, the row of a
// PHI string's whole value), from 1; then the parameters R4 does not
// define that careflow answers (extraParams), in that list's order, so one
// added at its end moves no key. Patient's come first because its rows
// are the most numerous (a registration writes about thirty): their keys
// are under 128 and take one byte in a SQLite record; every other key is
// under 32768 and takes two (a hash of 31 bits took four).
//
// R4 is a final release and its definitions are pinned, so the numbering
// does not change between versions. Were the definitions ever regenerated
// with a parameter more, the keys after it would move: ParamFingerprint
// covers each type's keys, so every type whose keys moved is re-indexed at
// start (its rows are deleted by rid, whatever keys they hold).
var paramKeys = sync.OnceValue(func() map[string]int64 {
	types := fhir.SearchParamTypes()
	sort.Slice(types, func(i, j int) bool {
		if (types[i] == "Patient") != (types[j] == "Patient") {
			return types[i] == "Patient"
		}
		return types[i] < types[j]
	})
	keys := map[string]int64{}
	next := int64(1)
	for _, typ := range types {
		params := fhir.SearchParams(typ)
		names := make([]string, 0, len(params))
		for _, p := range params {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		for _, name := range names {
			keys[typ+"."+name] = next
			keys[typ+"."+name+":exact"] = next + 1
			next += 2
		}
	}
	for _, x := range extraParams {
		if _, ok := keys[x.typ+"."+x.Name]; !ok {
			keys[x.typ+"."+x.Name] = next
			keys[x.typ+"."+x.Name+":exact"] = next + 1
			next += 2
		}
	}
	return keys
})

// paramKey is the integer an index row holds for parameter name of typ
// (paramKeys); the key names the type too, so a type's rows are reached by
// key alone. A name outside R4's definitions (none is indexed today) gets
// a hash of type and name at or above 2^20, apart from the numbered ones.
func paramKey(typ, name string) int64 {
	if k, ok := paramKeys()[typ+"."+name]; ok {
		return k
	}
	return hashParamKey(typ, name)
}

func hashParamKey(typ, name string) int64 {
	h := sha256.Sum256([]byte("careflow/record/param/v1\x00" + typ + "\x00" + name))
	return 1<<20 + int64(binary.BigEndian.Uint32(h[:4])&0x7fffffff)%(1<<31-1<<20)
}
