package terminology

import (
	"errors"
	"fmt"
	"strings"
)

// LOINCCheckDigit computes the check digit of a LOINC code's number part with
// LOINC's documented mod-10 algorithm: counting from the right, the digits in
// odd positions are doubled, the digits of every product and of the other
// digits are added up, and the check digit brings that sum to the next
// multiple of ten.
func LOINCCheckDigit(number string) (byte, error) {
	if err := allDigits(number); err != nil {
		return 0, err
	}
	sum := 0
	for i := 0; i < len(number); i++ {
		d := int(number[len(number)-1-i] - '0')
		if i%2 == 0 { // odd position counting from 1 at the right
			d *= 2
			d = d/10 + d%10
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10), nil
}

// loincMaxDigits bounds the number part. LOINC numbers passed 99999 in recent
// releases; seven digits leaves decades of room without accepting junk.
const loincMaxDigits = 7

// loincPartPrefixes are LOINC's non-term identifiers (answers, parts, answer
// lists, groups). Their check digits are not computed from the number alone
// by the documented algorithm, so careflow checks their shape only.
var loincPartPrefixes = []string{"LA", "LP", "LL", "LG"}

// ParseLOINC checks a LOINC code: a number without a leading zero, a hyphen
// and the mod-10 check digit (718-7, 2345-7). Answer, part, answer-list and
// group identifiers (LA6576-8, LP…) are checked for shape only.
func ParseLOINC(code string) error {
	body := code
	prefixed := false
	for _, p := range loincPartPrefixes {
		if strings.HasPrefix(code, p) {
			body, prefixed = code[len(p):], true
			break
		}
	}
	dash := strings.IndexByte(body, '-')
	if dash < 1 || dash != len(body)-2 {
		return errors.New("a LOINC code is a number, a hyphen and one check digit")
	}
	number, check := body[:dash], body[dash+1]
	if len(number) > loincMaxDigits {
		return fmt.Errorf("a LOINC number has at most %d digits", loincMaxDigits)
	}
	if err := allDigits(number); err != nil || !isDigit(check) {
		return errors.New("a LOINC code has only digits around its hyphen")
	}
	if number[0] == '0' {
		return errors.New("a LOINC number does not start with 0")
	}
	if prefixed {
		return nil
	}
	want, _ := LOINCCheckDigit(number)
	if want != check {
		return errBadCheckDigit
	}
	return nil
}

func loincFormat(code string) *problem {
	err := ParseLOINC(code)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errBadCheckDigit):
		return &problem{ReasonBadCheckDigit, "the LOINC code has a wrong mod-10 check digit"}
	default:
		return &problem{ReasonMalformed, "not a LOINC code: " + err.Error()}
	}
}
