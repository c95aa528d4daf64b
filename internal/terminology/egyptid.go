package terminology

import (
	"errors"
	"log/slog"
	"time"
)

// Sex is the sex the Egyptian national ID encodes.
type Sex string

// The two values the ID can carry.
const (
	SexMale   Sex = "male"
	SexFemale Sex = "female"
)

// egyptGovernorates maps the two-digit birth-place code (digits 8-9) to the
// governorate. 88 marks a birth registered abroad. Codes missing from the
// list (05-10, 20, 30, ...) are not assigned.
var egyptGovernorates = map[string]string{
	"01": "Cairo",
	"02": "Alexandria",
	"03": "Port Said",
	"04": "Suez",
	"11": "Damietta",
	"12": "Dakahlia",
	"13": "Sharqia",
	"14": "Qalyubia",
	"15": "Kafr El Sheikh",
	"16": "Gharbia",
	"17": "Monufia",
	"18": "Beheira",
	"19": "Ismailia",
	"21": "Giza",
	"22": "Beni Suef",
	"23": "Faiyum",
	"24": "Minya",
	"25": "Asyut",
	"26": "Sohag",
	"27": "Qena",
	"28": "Aswan",
	"29": "Luxor",
	"31": "Red Sea",
	"32": "New Valley",
	"33": "Matrouh",
	"34": "North Sinai",
	"35": "South Sinai",
	"88": "Born abroad",
}

// EgyptianNationalID holds the facts an Egyptian national ID (الرقم القومي)
// encodes. They are PHI (a birth date, a birth place, a sex), so the type
// redacts itself in logs and in %v; read the fields where they are needed.
type EgyptianNationalID struct {
	BirthDate time.Time // a calendar date, at midnight UTC
	// GovernorateCode is the two-digit birth-place code; Governorate its name.
	GovernorateCode string
	Governorate     string
	// BornAbroad is true for governorate code 88.
	BornAbroad bool
	Sex        Sex
}

// String redacts: see the type's comment.
func (EgyptianNationalID) String() string { return "EgyptianNationalID{redacted}" }

// LogValue redacts in slog.
func (EgyptianNationalID) LogValue() slog.Value { return slog.StringValue("redacted") }

// GoString redacts in %#v.
func (EgyptianNationalID) GoString() string { return "EgyptianNationalID{redacted}" }

// ParseEgyptianNationalID reads the structure of a 14-digit Egyptian national
// ID, digit by digit from the left:
//
//	1       century of birth: 2 for 1900-1999, 3 for 2000-2099
//	2-7     birth date YYMMDD, a real date not after today
//	8-9     governorate of birth (88: abroad)
//	10-13   sequence number of the birth registration; digit 13 is odd for
//	        males and even for females
//	14      check digit
//
// The check digit is not verified. The Civil Status Organization has not
// published its algorithm; formulas circulating online (Luhn, weighted mod 11)
// are guesses that reject real IDs, and a guess here would turn patients away
// at registration. So careflow checks everything else and says so.
//
// today bounds the birth date; pass the service's clock. Errors never quote
// the ID or any of its digits.
func ParseEgyptianNationalID(id string, today time.Time) (EgyptianNationalID, error) {
	var out EgyptianNationalID
	if len(id) != 14 {
		return out, errors.New("an Egyptian national ID has 14 digits")
	}
	if allDigits(id) != nil {
		return out, errors.New("an Egyptian national ID has only digits")
	}
	var century int
	switch id[0] {
	case '2':
		century = 1900
	case '3':
		century = 2000
	default:
		return out, errors.New("digit 1 (century of birth) must be 2 (1900s) or 3 (2000s)")
	}
	yy := int(id[1]-'0')*10 + int(id[2]-'0')
	mm := int(id[3]-'0')*10 + int(id[4]-'0')
	dd := int(id[5]-'0')*10 + int(id[6]-'0')
	birth := time.Date(century+yy, time.Month(mm), dd, 0, 0, 0, 0, time.UTC)
	// time.Date normalises 31 February into March; a real date survives the
	// round trip unchanged.
	if mm < 1 || mm > 12 || dd < 1 || birth.Day() != dd || int(birth.Month()) != mm {
		return out, errors.New("digits 2-7 (birth date) are not a real date")
	}
	if birth.After(civilDate(today)) {
		return out, errors.New("digits 2-7 (birth date) are in the future")
	}
	gov, ok := egyptGovernorates[id[7:9]]
	if !ok {
		return out, errors.New("digits 8-9 (governorate of birth) are not an assigned governorate code")
	}
	out.BirthDate = birth
	out.GovernorateCode = id[7:9]
	out.Governorate = gov
	out.BornAbroad = id[7:9] == "88"
	if (id[12]-'0')%2 == 1 {
		out.Sex = SexMale
	} else {
		out.Sex = SexFemale
	}
	return out, nil
}
