package rcm

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"golang.org/x/text/currency"

	"github.com/careflow/careflow/internal/errs"
)

// Amounts are kept as integer minor units of their currency (piastres for
// EGP, fils for KWD) and read and written as decimals with as many places as
// the currency has (ISO 4217, via golang.org/x/text/currency; 2 for a code
// it does not know). One mechanism for every amount: a fee schedule's
// prices (ParseAmount), the Money careflow writes on Claims and
// ClaimResponses (minorJSON), the Money a payer sends (parseMinor) and the
// amounts the API shows (FormatAmount). No floating point is involved.

// places is the number of decimal places of cur's minor unit.
func places(cur string) int {
	if u, err := currency.ParseISO(cur); err == nil {
		p, _ := currency.Standard.Rounding(u)
		return p
	}
	return 2
}

// ParseAmount reads a decimal amount of cur exactly into its minor units:
// "1250.5" EGP is 125050 piastres, "3.125" KWD 3125 fils. No floating
// point is involved; more decimals than the currency has, a sign, an
// exponent or a thousands separator are refused.
func ParseAmount(s, cur string) (int64, error) {
	u, err := currency.ParseISO(cur)
	if err != nil {
		return 0, errs.E(errs.Invalid, "the currency is not an ISO 4217 code")
	}
	scale, _ := currency.Standard.Rounding(u)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || !allDigits(whole) || (hasDot && (frac == "" || !allDigits(frac))) {
		return 0, errs.E(errs.Invalid, "must be a decimal amount such as 1250 or 1250.50 (digits, one dot, no sign or separators)")
	}
	if len(frac) > scale {
		return 0, errs.E(errs.Invalid, "has more decimals than %s has (%d)", u, scale)
	}
	frac += strings.Repeat("0", scale-len(frac))
	whole = strings.TrimLeft(whole, "0")
	// At most 15 significant digits: far above any price, far below int64.
	if len(whole)+scale > 15 {
		return 0, errs.E(errs.Invalid, "is too large for a unit price")
	}
	var n int64
	for _, c := range whole + frac {
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// FormatAmount writes minor units of cur as a decimal: 125050 EGP is
// "1250.50".
func FormatAmount(amount int64, cur string) string {
	scale := places(cur)
	neg := amount < 0
	if neg {
		amount = -amount
	}
	s := fmt.Sprintf("%0*d", scale+1, amount)
	if scale > 0 {
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// minorJSON is the amount as a JSON number for FHIR Money.value.
func minorJSON(v int64, cur string) json.Number { return json.Number(FormatAmount(v, cur)) }

// maxMoney bounds what parseMinor reads: beyond a trillion in any currency
// is not an amount a payer pays.
var maxMoney = big.NewRat(1e12, 1)

// parseMinor reads a FHIR decimal a payer sent (a JSON number or string,
// exponent allowed) into minor units of cur exactly, rounding half away
// from zero beyond the currency's places; false when it is not a decimal
// or out of bounds.
func parseMinor(raw json.RawMessage, cur string) (int64, bool) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || new(big.Rat).Abs(r).Cmp(maxMoney) > 0 {
		return 0, false
	}
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places(cur))), nil)))
	num, den := new(big.Int).Abs(scaled.Num()), scaled.Denom()
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	if new(big.Int).Mul(m, big.NewInt(2)).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if scaled.Sign() < 0 {
		q.Neg(q)
	}
	return q.Int64(), true
}
