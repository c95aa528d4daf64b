package phi

import (
	"encoding/binary"

	"github.com/careflow/careflow/internal/errs"
)

// AAD names where a ciphertext lives: the table, the field (column or JSON
// element) and the record's id. It is authenticated but not encrypted, so a
// ciphertext copied into another row, another column or another table fails
// to open instead of silently showing one patient's data on another's record.
//
// Record is the record id in its canonical text form (for a UUID, the
// lower-case hyphenated form); for a composite key the caller joins the parts
// in a fixed order, as the registered Column's AAD function does.
type AAD struct {
	Table  string
	Field  string
	Record string
}

// aadTag separates careflow's field AAD from any other use of the same
// bytes; bump it only together with the ciphertext format byte.
const aadTag = "careflow/phi/field/v1"

// validate refuses an incomplete AAD: an empty part would let two different
// places share one binding.
func (a AAD) validate() error {
	switch {
	case a.Table == "":
		return errs.E(errs.Internal, "phi: associated data has no table")
	case a.Field == "":
		return errs.E(errs.Internal, "phi: associated data has no field")
	case a.Record == "":
		return errs.E(errs.Internal, "phi: associated data has no record id")
	}
	return nil
}

// appendCanonical appends the unambiguous encoding of a: every part is
// length-prefixed, so ("ab","c") and ("a","bc") never encode alike.
func (a AAD) appendCanonical(dst []byte) []byte {
	dst = appendLengthPrefixed(dst, aadTag)
	dst = appendLengthPrefixed(dst, a.Table)
	dst = appendLengthPrefixed(dst, a.Field)
	dst = appendLengthPrefixed(dst, a.Record)
	return dst
}

func appendLengthPrefixed(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
