package rcm

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/currency"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/terminology"
)

// A fee schedule file is CSV (RFC 4180, UTF-8, an optional byte-order mark)
// whose first line names the columns, in any order, case-insensitively:
//
//	system          CPT, HCPCS, or the URI of a local code system
//	                (http://, https:// or urn:)                    required
//	code            the code; CPT and HCPCS codes are format-checked required
//	description     the service's name, Arabic and/or Latin script,
//	                kept exactly as written                        optional
//	price           the unit price as a decimal in the row's currency
//	                (1250 or 1250.50; a dot, no thousands separator,
//	                no more decimals than the currency has)        required
//	currency        ISO 4217 code (EGP, SAR, USD...); empty: the
//	                payer's currency                               optional
//	preauth         yes or no (true or false): whether the payer
//	                requires pre-authorization for the code        required
//	effective_from  first date of service the row prices,
//	                YYYY-MM-DD                                     required
//	effective_to    last date of service (inclusive); empty: open  optional
//
// A file is checked whole before anything is written: every bad row is
// reported with its line number, the column and the rule it breaks (never
// the value), and a file with any problem loads nothing. One code may have
// several rows in a file only if their effective periods do not overlap.

// The fee schedule file's limits: a schedule is a payer's price list (a few
// thousand codes), so anything near these is a mistake.
const (
	MaxFeeFileBytes = 32 << 20
	MaxFeeRows      = 200_000
	// maxFeeProblems is how many problems a refused file lists; the count
	// of the rest follows.
	maxFeeProblems = 50
	// DefaultCurrency is a payer's currency until a load says otherwise.
	DefaultCurrency = "EGP"
)

// The columns of a fee schedule file.
var (
	feeColumns  = []string{"system", "code", "description", "price", "currency", "preauth", "effective_from", "effective_to"}
	feeRequired = []string{"system", "code", "price", "preauth", "effective_from"}
)

var (
	// scheduleVersion is a schedule version's name.
	scheduleVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$`)
	// localCode is a code of a local system: no spaces or control
	// characters.
	localCode = regexp.MustCompile(`^[\p{L}\p{N}._:/+-]{1,64}$`)
)

// ValidPayerCode reports whether s has the form of a payer's participant
// code (service.go's payerCode: 1-29482df3-...-592b6f565782, payer01@hcx),
// as journeys and fee schedules both require.
func ValidPayerCode(s string) bool { return payerCode.MatchString(s) }

// FeeProblem is one thing wrong with a fee schedule file: where, and the
// rule broken. It never holds the cell's value.
type FeeProblem struct {
	Line   int    `json:"line"`
	Column string `json:"column,omitempty"`
	Rule   string `json:"rule"`
}

func (p FeeProblem) String() string {
	if p.Column == "" {
		return fmt.Sprintf("line %d: %s", p.Line, p.Rule)
	}
	return fmt.Sprintf("line %d: %s: %s", p.Line, p.Column, p.Rule)
}

// FeeFileError is a refused fee schedule file: every problem found, in line
// order. Load returns it wrapped in an errs.Invalid whose message lists them.
type FeeFileError struct {
	Problems []FeeProblem
}

func (e *FeeFileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problem(s) in the fee schedule", len(e.Problems))
	for i, p := range e.Problems {
		if i == maxFeeProblems {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(p.String())
	}
	return b.String()
}

// feeRow is one checked row of a file.
type feeRow struct {
	line        int
	system      string // URI
	code        string
	description string
	amount      int64
	currency    string
	preauth     bool
	from, to    string // YYYY-MM-DD; to "" is open
}

// parsedFees is a checked file.
type parsedFees struct {
	rows []feeRow
	hash string // hex SHA-256 of the file
	from string // earliest effective_from
	to   string // latest effective_to; "" when some row is open
}

// parseFeeFile reads and checks a whole file. payerCurrency prices the
// rows that name none.
func parseFeeFile(r io.Reader, payerCurrency string) (parsedFees, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFeeFileBytes+1))
	if err != nil {
		return parsedFees{}, errs.Wrap(errs.Invalid, err, "cannot read the fee schedule")
	}
	if len(data) > MaxFeeFileBytes {
		return parsedFees{}, errs.E(errs.TooLarge, "a fee schedule file is at most %d MB", MaxFeeFileBytes>>20)
	}
	sum := sha256.Sum256(data)
	out := parsedFees{hash: hex.EncodeToString(sum[:])}
	var problems []FeeProblem
	add := func(line int, col, rule string, args ...any) {
		problems = append(problems, FeeProblem{Line: line, Column: col, Rule: fmt.Sprintf(rule, args...)})
	}
	if !utf8.Valid(data) {
		return out, feeFileError([]FeeProblem{{Line: firstInvalidUTF8Line(data), Rule: "is not UTF-8 text"}})
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))

	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1 // checked here, so the problem names the line
	header, err := cr.Read()
	if err == io.EOF {
		return out, feeFileError([]FeeProblem{{Line: 1, Rule: "the file is empty: the first line names the columns"}})
	}
	if err != nil {
		return out, feeFileError([]FeeProblem{{Line: 1, Rule: "the header line is not valid CSV"}})
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		known := false
		for _, c := range feeColumns {
			known = known || c == name
		}
		switch {
		case !known:
			add(1, fmt.Sprintf("column %d", i+1), "is not a fee schedule column (known: %s)", strings.Join(feeColumns, ", "))
		case col[name] != 0:
			add(1, name, "is named twice")
		default:
			col[name] = i + 1 // 1-based, so 0 means absent
		}
	}
	for _, c := range feeRequired {
		if col[c] == 0 {
			add(1, c, "the column is required")
		}
	}
	if len(problems) > 0 {
		return out, feeFileError(problems)
	}

	// seen holds each code's rows so far, to refuse overlapping periods.
	seen := map[[2]string][]feeRow{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			add(pe.Line, "", "is not valid CSV (%s)", pe.Err)
			continue
		}
		if err != nil {
			return out, errs.Wrap(errs.Invalid, err, "cannot read the fee schedule")
		}
		// Only a record read without error has field positions.
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		if len(out.rows)+1 > MaxFeeRows {
			add(line, "", "a fee schedule has at most %d rows", MaxFeeRows)
			break
		}
		if len(rec) != len(header) {
			add(line, "", "has %d fields where the header names %d", len(rec), len(header))
			continue
		}
		cell := func(name string) string {
			if i := col[name]; i > 0 {
				return rec[i-1]
			}
			return ""
		}
		row := feeRow{line: line, description: cell("description")}
		before := len(problems)

		sys := strings.TrimSpace(cell("system"))
		if row.system = FeeSystem(sys); row.system == "" {
			add(line, "system", "must be CPT, HCPCS or the URI of a local code system (http://, https:// or urn:)")
		}
		row.code = strings.TrimSpace(cell("code"))
		switch {
		case row.code == "":
			add(line, "code", "is required")
		case row.system == terminology.SystemCPT:
			if _, err := terminology.ParseCPT(row.code); err != nil {
				add(line, "code", "%s", err)
			}
		case row.system == terminology.SystemHCPCS:
			if err := terminology.ParseHCPCS(row.code); err != nil {
				add(line, "code", "%s", err)
			}
		case !localCode.MatchString(row.code):
			add(line, "code", "must be 1-64 letters, digits or . _ : / + -")
		}
		if n := utf8.RuneCountInString(row.description); n > 1000 {
			add(line, "description", "is at most 1000 characters")
		}
		row.currency = payerCurrency
		if c := strings.TrimSpace(cell("currency")); c != "" {
			cur, err := ParseCurrency(c)
			if err != nil {
				add(line, "currency", "must be an ISO 4217 currency code such as EGP")
			}
			row.currency = cur
		}
		if row.currency != "" {
			amount, err := ParseAmount(strings.TrimSpace(cell("price")), row.currency)
			if err != nil {
				add(line, "price", "%s", err)
			}
			row.amount = amount
		}
		switch strings.ToLower(strings.TrimSpace(cell("preauth"))) {
		case "yes", "true":
			row.preauth = true
		case "no", "false":
		default:
			add(line, "preauth", "must be yes or no")
		}
		row.from = strings.TrimSpace(cell("effective_from"))
		if !validDate(row.from) {
			add(line, "effective_from", "must be a date YYYY-MM-DD")
		}
		row.to = strings.TrimSpace(cell("effective_to"))
		if row.to != "" && !validDate(row.to) {
			add(line, "effective_to", "must be a date YYYY-MM-DD, or empty for no end")
		} else if row.to != "" && row.to < row.from {
			add(line, "effective_to", "is before effective_from")
		}
		if len(problems) > before {
			continue
		}
		key := [2]string{row.system, row.code}
		for _, o := range seen[key] {
			if overlaps(o, row) {
				add(line, "code", "is priced on line %d for an overlapping effective period", o.line)
				break
			}
		}
		if len(problems) > before {
			continue
		}
		seen[key] = append(seen[key], row)
		out.rows = append(out.rows, row)
		if out.from == "" || row.from < out.from {
			out.from = row.from
		}
	}
	if len(problems) > 0 {
		return out, feeFileError(problems)
	}
	if len(out.rows) == 0 {
		return out, feeFileError([]FeeProblem{{Line: 2, Rule: "the file has no rows after the header"}})
	}
	for _, r := range out.rows {
		if r.to == "" {
			out.to = ""
			break
		}
		if r.to > out.to {
			out.to = r.to
		}
	}
	return out, nil
}

func feeFileError(problems []FeeProblem) error {
	fe := &FeeFileError{Problems: problems}
	return errs.Wrap(errs.Invalid, fe, "%s; nothing was loaded", fe.Error())
}

// overlaps reports whether two rows' effective periods share a day.
func overlaps(a, b feeRow) bool {
	aEndsBefore := a.to != "" && a.to < b.from
	bEndsBefore := b.to != "" && b.to < a.from
	return !aEndsBefore && !bEndsBefore
}

func validDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

func firstInvalidUTF8Line(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		data = data[size:]
	}
	return line
}

// FeeSystem resolves a code system as a fee schedule or a caller names it
// (CPT, HCPCS, case-insensitively, or a URI) to the URI stored; "" when it
// is neither.
func FeeSystem(s string) string {
	switch strings.ToUpper(s) {
	case "CPT":
		return terminology.SystemCPT
	case "HCPCS":
		return terminology.SystemHCPCS
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "urn:") {
		if len(s) <= 255 && !strings.ContainsAny(s, " \t\r\n") {
			return s
		}
	}
	return ""
}

// ParseCurrency checks an ISO 4217 code (golang.org/x/text/currency's
// table) and returns it upper-case.
func ParseCurrency(s string) (string, error) {
	u, err := currency.ParseISO(s)
	if err != nil {
		return "", errs.E(errs.Invalid, "must be an ISO 4217 currency code such as EGP")
	}
	return u.String(), nil
}
