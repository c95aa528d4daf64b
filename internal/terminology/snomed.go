package terminology

import (
	"errors"
	"fmt"
)

// The Verhoeff scheme, from its definition: d is the multiplication table of
// the dihedral group D5 (the symmetries of a pentagon, numbered 0-4 for
// rotations and 5-9 for reflections), p is the position permutation
// p(i+1, n) = p(1, p(i, n)) with p(1) = (0 1 5 8 9 4 2 7)(3 6), and inv maps
// each element to its group inverse. Unlike a weighted sum it catches every
// single-digit error and every swap of adjacent digits. verhoeff_test.go
// rebuilds all three tables from these definitions and compares.
var (
	verhoeffD = [10][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
		{2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
		{4, 0, 1, 2, 3, 9, 5, 6, 7, 8},
		{5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
		{6, 5, 9, 8, 7, 1, 0, 4, 3, 2},
		{7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
		{8, 7, 6, 5, 9, 3, 2, 1, 0, 4},
		{9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
	}
	verhoeffP = [8][10]uint8{
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		{1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
		{5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
		{9, 4, 5, 3, 1, 2, 6, 8, 7, 0},
		{4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
		{2, 7, 9, 3, 8, 0, 6, 4, 1, 5},
		{7, 0, 4, 6, 9, 1, 3, 2, 5, 8},
	}
	verhoeffInv = [10]uint8{0, 4, 3, 2, 1, 5, 6, 7, 8, 9}
)

// VerhoeffCheckDigit returns the Verhoeff check digit ('0'-'9') to append to
// a string of decimal digits.
func VerhoeffCheckDigit(digits string) (byte, error) {
	if err := allDigits(digits); err != nil {
		return 0, err
	}
	var c uint8
	// Walk from the right; the digit next to the (missing) check digit is
	// position 1 because the check digit itself will take position 0.
	for i := 0; i < len(digits); i++ {
		n := digits[len(digits)-1-i] - '0'
		c = verhoeffD[c][verhoeffP[(i+1)%8][n]]
	}
	return '0' + verhoeffInv[c], nil
}

// VerhoeffValid reports whether digits ends in a correct Verhoeff check digit.
func VerhoeffValid(digits string) bool {
	if len(digits) < 2 || allDigits(digits) != nil {
		return false
	}
	var c uint8
	for i := 0; i < len(digits); i++ {
		n := digits[len(digits)-1-i] - '0'
		c = verhoeffD[c][verhoeffP[i%8][n]]
	}
	return c == 0
}

func allDigits(s string) error {
	if s == "" {
		return errors.New("no digits")
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return errors.New("only the digits 0-9 are allowed")
		}
	}
	return nil
}

// SCTIDKind is what a SNOMED CT identifier identifies, from its partition.
type SCTIDKind string

// The kinds careflow accepts. Other partition values (RF1 subsets and
// cross-maps, expressions) are retired or not identifiers of components.
const (
	SCTIDConcept      SCTIDKind = "concept"
	SCTIDDescription  SCTIDKind = "description"
	SCTIDRelationship SCTIDKind = "relationship"
)

// SCTID is a parsed SNOMED CT identifier.
type SCTID struct {
	// ID is the identifier as given.
	ID string
	// Partition is the two digits before the check digit.
	Partition string
	Kind      SCTIDKind
	// Namespace is the seven-digit extension namespace of a long-format
	// identifier (partition 1x), empty for the international release's
	// short format (partition 0x).
	Namespace string
}

// ParseSCTID checks a SNOMED CT identifier: 6 to 18 digits without a leading
// zero, a correct Verhoeff check digit, and a partition naming a concept,
// description or relationship in short (0x) or long (1x) format. A long
// format identifier needs room for its seven-digit namespace and an item
// identifier of at least one digit, so it has at least 11 digits.
func ParseSCTID(s string) (SCTID, error) {
	if len(s) < 6 || len(s) > 18 {
		return SCTID{}, fmt.Errorf("a SNOMED CT identifier has 6 to 18 digits, not %d", len(s))
	}
	if err := allDigits(s); err != nil {
		return SCTID{}, fmt.Errorf("a SNOMED CT identifier has %v", err)
	}
	if s[0] == '0' {
		return SCTID{}, errors.New("a SNOMED CT identifier does not start with 0")
	}
	if !VerhoeffValid(s) {
		return SCTID{}, errBadCheckDigit
	}
	id := SCTID{ID: s, Partition: s[len(s)-3 : len(s)-1]}
	switch id.Partition[1] {
	case '0':
		id.Kind = SCTIDConcept
	case '1':
		id.Kind = SCTIDDescription
	case '2':
		id.Kind = SCTIDRelationship
	default:
		return SCTID{}, fmt.Errorf("partition %s is not a concept, description or relationship identifier", id.Partition)
	}
	switch id.Partition[0] {
	case '0':
	case '1':
		if len(s) < 11 {
			return SCTID{}, fmt.Errorf("a long-format identifier (partition %s) has at least 11 digits", id.Partition)
		}
		id.Namespace = s[len(s)-10 : len(s)-3]
	default:
		return SCTID{}, fmt.Errorf("partition %s is not a concept, description or relationship identifier", id.Partition)
	}
	return id, nil
}

// errBadCheckDigit is shared by the check-digit systems so that ValidateCode
// can tell a wrong check digit from a malformed code.
var errBadCheckDigit = errors.New("the check digit is wrong")

// snomedFormat accepts only concept identifiers: a FHIR code from
// http://snomed.info/sct names a concept (or is an expression, which careflow
// does not evaluate), never a description or relationship.
//
// Messages never quote the identifier: a digit string sent as a SNOMED CT
// code may be a misplaced national ID, and messages must carry no PHI.
func snomedFormat(code string) *problem {
	id, err := ParseSCTID(code)
	if errors.Is(err, errBadCheckDigit) {
		return &problem{ReasonBadCheckDigit, "the SNOMED CT identifier has a wrong Verhoeff check digit"}
	}
	if err != nil {
		return &problem{ReasonMalformed, "not a SNOMED CT identifier: " + err.Error()}
	}
	if id.Kind != SCTIDConcept {
		return &problem{ReasonWrongPartition, fmt.Sprintf("the SNOMED CT identifier is a %s identifier (partition %s), not a concept", id.Kind, id.Partition)}
	}
	return nil
}
