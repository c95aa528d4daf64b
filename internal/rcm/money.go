package rcm

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Amounts are kept as integer minor units (piastres for EGP) and read from
// and written to FHIR Money and the API as decimals with two places: every
// currency careflow's payers use (EGP, SAR, AED, USD) has two.

// formatMinor is the decimal string of an amount in minor units.
func formatMinor(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// minorJSON is the amount as a JSON number for FHIR Money.value.
func minorJSON(v int64) json.Number { return json.Number(formatMinor(v)) }

// parseMinor reads a FHIR decimal (a JSON number or string) into minor
// units, rounding half away from zero beyond two places; false when it is
// not a decimal.
func parseMinor(raw json.RawMessage) (int64, bool) {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	if s == "" || s == "null" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e13 {
		// Beyond a trillion in any currency is not an amount a payer pays.
		return 0, false
	}
	scaled := f * 100
	if scaled < 0 {
		return int64(scaled - 0.5), true
	}
	return int64(scaled + 0.5), true
}
