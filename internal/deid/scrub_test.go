package deid

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// patient is the adversarial patient of these tests: names in Latin and
// Arabic script, identifiers, a phone in several countries' shapes, an
// address, and dates.
var patient = Known{
	Names:       []string{"Ahmed Mohamed Hassan", "أحمد محمد حسن", "Fatma Hassan", "فاطمة حسن"},
	IDs:         []string{"MRN-00123456", "29001011234567", "EGI-77-1234567"},
	Phones:      []string{"+20 100 123 4567", "02 3761 2980"},
	Emails:      []string{"ahmed.hassan@example.com"},
	Addresses:   []string{"15 Tahrir Street, Dokki", "١٥ شارع التحرير، الدقي"},
	Cities:      []string{"Giza", "الجيزة"},
	PostalCodes: []string{"12611"},
	BirthDate:   time.Date(1950, 3, 5, 0, 0, 0, 0, time.UTC),
	Dates:       []time.Time{time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC), time.Date(2024, 3, 12, 0, 0, 0, 0, time.UTC)},
}

// mustNotSurvive lists what no scrubbed note of the patient may contain,
// searched case-insensitively after folding marks, tatweel and digits
// (plain). Digit runs of four or more of every number are searched too;
// shorter runs ("100", "20") are everyday clinical numbers.
var mustNotSurvive = []string{
	"Ahmed", "Mohamed", "Hassan", "Fatma", "أحمد", "محمد", "حسن", "فاطمة",
	"00123456", "123456", "29001011234567", "1234567", "EGI-77",
	"1001234567", "01001234567", "4567", "3761", "2980",
	"ahmed.hassan", "example.com",
	"Tahrir", "التحرير", "Dokki", "الدقي", "Giza", "الجيزة", "12611",
	"1950", "05/03", "5/3", "2024-03-05", "March 5", "5 March", "Mar-24", "05.03", "مارس", "03-12", "12/03",
}

var notes = []struct {
	name, text string
}{
	{"English admission note", `Patient: Ahmed Mohamed Hassan, MRN-00123456, national ID 29001011234567.
DOB 05/03/1950 (5 March 1950). Admitted 2024-03-05T10:00:00+02:00, i.e. March 5, 2024, 5-Mar-24 or 05.03.2024; discharged 12/03/2024.
Mr. Hassan, a 74-year-old man, came with his wife Fatma. Ahmed's phone: +20 100 123 4567, also 0100-123-4567,
(0100) 123 4567, 00201001234567 and 01001234567; home (02) 3761 2980.
Address: 15 Tahrir St., Dokki, Giza 12611. Email AHMED.HASSAN@example.com. Insurance member EGI-77-1234567.
HASSAN reports chest pain. Plan: aspirin 300 mg, BP 150/95.`},
	{"Arabic note", `المريض أحمد محمد حسن (رقم الملف ٠٠١٢٣٤٥٦)، الرقم القومي ٢٩٠٠١٠١١٢٣٤٥٦٧، مواليد ٥/٣/١٩٥٠.
يسكن في ١٥ شارع التحرير، الدقي، الجيزة. هاتف: ٠١٠٠ ١٢٣ ٤٥٦٧. الرمز البريدي ١٢٦١١.
دخل المستشفى يوم ٥ مارس ٢٠٢٤ وخرج ١٢/٣/٢٠٢٤. حضر مع زوجته فاطمة حسن. وأحمد يشكو من ألم في الصدر.`},
	{"Arabic with tashkeel, tatweel and hamza forms", `أحمـــد مُحَمَّد حَسَن، احمد، لأحمد، بالجيزة، للجيزة. Ah` + "\u200b" + `med and MOHAMED.`},
	{"mixed scripts and odd separators", `Ahmed-Hassan / Hassan, Ahmed; Ahmed_Hassan; tel.+20-100-123-4567; +20 (0) 100 123 4567;
id: 29 001 011 234 567; MRN:00123456; MRN00123456; 1950; Fatma's son. On 12-03-2024 at 10:30.`},
}

func TestScrubLeavesNoKnownIdentifier(t *testing.T) {
	t.Parallel()
	s := NewScrubber(patient)
	for _, n := range notes {
		t.Run(n.name, func(t *testing.T) {
			out, rep := s.Scrub(n.text)
			for _, v := range mustNotSurvive {
				if strings.Contains(plain(out), plain(v)) {
					t.Errorf("%q survived in:\n%s", v, out)
				}
			}
			for _, v := range append(append(append([]string{}, patient.IDs...), patient.Phones...), patient.PostalCodes...) {
				for _, run := range digitRuns(plain(v)) {
					if strings.Contains(plain(out), run) {
						t.Errorf("digit run %q of an identifier survived in:\n%s", run, out)
					}
				}
			}
			if rep.Total() == 0 {
				t.Errorf("the report counts nothing")
			}
		})
	}
}

func TestScrubKeepsClinicalContent(t *testing.T) {
	t.Parallel()
	s := NewScrubber(patient)
	for _, text := range []string{
		"Metformin 500 mg twice daily; paracetamol 2 x 500 mg; syrup 2 x 5 ml.",
		"BP 120/80 mmHg, HR 88 bpm, RR 16, SpO2 97% on room air, temp 38.5 C.",
		"HbA1c 7.2%, creatinine 1.2 mg/dL, potassium 4.1 mmol/L, WBC 11,500, platelets 250,000/uL.",
		"Diagnoses: E11.9, I21.4, S72.001A, J45.909, I10.",
		"Vitamin D 50000 IU weekly; heparin 5000 units; ceftriaxone 1000-2000 mg daily.",
		"GCS 15/15, pain 7/10, EF 35%, QTc 450 ms.",
		"Appendectomy in 2019; smoker for 20 years; follow up in 2 weeks at 10:30.",
		"COVID-19 PCR negative; B12 low; CD4 count 350; 1000mg/5ml suspension; 500mg/5ml.",
		"Troponin 0.04 ng/mL; INR 1.1; eGFR 59 mL/min/1.73m2; Hb 12.5 g/dL.",
		"A 67-year-old woman, age 45 at diagnosis, 89 years old now.",
		"ضغط الدم ١٢٠/٨٠، النبض ٨٨، الحرارة ٣٨٫٥، أنسولين ٢٠ وحدة، ميتفورمين ٥٠٠ مجم.",
		"Seen in clinic room 12, bed 4, ward 7B.",
		"CPT 99213; SNOMED 44054006; LOINC 2345-7; ICD-10 Z79.4.",
	} {
		out, rep := s.Scrub(text)
		if out != text {
			t.Errorf("clinical text changed:\n in: %s\nout: %s", text, out)
		}
		if rep.Total() != 0 {
			t.Errorf("report %v for clinical text %q", rep, text)
		}
	}
}

func TestScrubFindsUnknownIdentifiersByPattern(t *testing.T) {
	t.Parallel()
	var s Scrubber // knows nothing
	tests := []scrubCase{
		{"Egyptian mobile in groups", "Call 0100 123 4567 today", "Call [PHONE] today"},
		{"Indian mobile", "mobile +91 98765 43210.", "mobile [PHONE]."},
		{"Saudi mobile", "جوال +966 50 123 4567", "جوال [PHONE]"},
		{"US phone with parentheses", "+1 (555) 123-4567 or (555) 123-4567", "[PHONE] or [PHONE]"},
		{"US local phone", "ext 555-1234", "ext [PHONE]"},
		{"SSN", "SSN 123-45-6789", "SSN [ID]"},
		{"MRN with letters", "MRN-00123456 and A1234567", "[ID] and [ID]"},
		{"short MRN after its word", "MRN 4521, file #7788", "MRN [ID], file #[ID]"},
		{"national id", "national id 29001011234567", "national id [ID]"},
		{"Aadhaar in groups", "Aadhaar 1234 5678 9012", "Aadhaar [ID]"},
		{"Arabic-Indic national id", "الرقم القومي ٢٩٠٠١٠١١٢٣٤٥٦٧", "الرقم القومي [ID]"},
		{"email", "write to a.b-c@mail.example.org.", "write to [EMAIL]."},
		{"URL", "see https://portal.example.com/p?id=1. Or www.example.org/x", "see [URL]. Or [URL]"},
		{"bare domain", "profile on facebook.com/ahmed.h", "profile on [URL]"},
		{"IPv4", "from 192.168.1.10.", "from [IP]."},
		{"IPv6", "from fe80::1ff:fe23:4567:890a and 2001:db8::1", "from [IP] and [IP]"},
		{"MAC address", "pump 00:1A:2B:3C:4D:5E", "pump [ID]"},
		{"ISO date with time", "at 2024-03-05T10:00:00+02:00 ok", "at [DATE] ok"},
		{"day/month/year", "on 05/03/2024 and 5/3/24", "on [DATE] and [DATE]"},
		{"written dates", "5 March 2024, March 5, 2024, 5-Mar-24, 5th of March", "[DATE], [DATE], [DATE], [DATE]"},
		{"dotted date", "on 05.03.2024.", "on [DATE]."},
		{"Arabic date", "يوم ٥ مارس ٢٠٢٤ و ٥/٣/٢٠٢٤", "يوم [DATE] و [DATE]"},
		{"Hijri date", "بتاريخ 1445/09/12", "بتاريخ [DATE]"},
		{"month and year", "since March 2024, 03/2024 and 2024-03", "since [DATE], [DATE] and [DATE]"},
		{"a month alone after a preposition", "admitted in May, discharged in June", "admitted in [DATE], discharged in [DATE]"},
		{"a year alone stays", "in 2019 and 2020", "in 2019 and 2020"},
		{"street address", "lives at 221B Baker Street, London.", "lives at [ADDRESS]."},
		{"street name alone", "near Harley Street", "near [ADDRESS]"},
		{"Arabic street address", "يسكن ١٥ شارع التحرير، الدقي", "يسكن [ADDRESS]"},
		{"where someone lives", "lives in Nasr City, Cairo. يسكن في مدينة نصر", "lives in [ADDRESS]. يسكن في [ADDRESS]"},
		{"a plate", "plate ABC 1234", "plate ABC [ID]"},
		{"PO box", "P.O. Box 1234, ص.ب ٥٦٧٨", "[ADDRESS], [ADDRESS]"},
		{"ZIP after its word", "ZIP 10001, PIN code 560001", "ZIP [ZIP], PIN code [ZIP]"},
		{"ZIP after a state", "Albany, NY 12207", "Albany, NY [ZIP]"},
		{"honorifics", "Mr. Smith saw Dr Hassan and Mrs. X.", "Mr. [NAME] saw Dr [NAME] and Mrs. [NAME]."},
		{"name is", "Her name is Sara Jones. A boy named Omar.", "Her name is [NAME]. A boy named [NAME]."},
		{"relative", "his wife Mona called", "his wife [NAME] called"},
		{"Arabic honorific", "السيدة فاطمة علي حضرت", "السيدة [NAME] حضرت"},
		{"Arabic honorific after and", "د. منى والسيد محمود علي", "د. [NAME] والسيد [NAME]"},
		{"Arabic name is", "اسمه محمود", "اسمه [NAME]"},
		{"ages over 89", "a 92-year-old, aged 93, 95 years old, 91 yo", "a 90+-year-old, aged 90+, 90+ years old, 90+ yo"},
		{"Arabic age over 89", "عمره ٩٤ و ٩٢ عاما", "عمره 90+ و 90+ عاما"},
		{"ages over 89 in words", "a ninety-two year old, a hundred years old", "a 90+ year old, 90+ years old"},
		{"a birth year alone", "born in 1930; DOB: 1931; مواليد ١٩٣٢", "born in [DATE]; DOB: [DATE]; مواليد [DATE]"},
		{"ages to 89 stay", "an 89-year-old and a 45 year old", "an 89-year-old and a 45 year old"},
	}
	runScrubTable(t, &s, tests)
}

func TestScrubKnownValues(t *testing.T) {
	t.Parallel()
	s := NewScrubber(patient)
	tests := []scrubCase{
		{"a full name is one placeholder", "Ahmed Mohamed Hassan came", "[NAME] came"},
		{"given and family name", "Ahmed Hassan came", "[NAME] came"},
		{"family, given", "Hassan, Ahmed came", "[NAME] came"},
		{"possessive", "Ahmed's wife", "[NAME]'s wife"},
		{"case does not matter", "AHMED and hassan", "[NAME] and [NAME]"},
		{"word boundaries are kept", "Ahmedabad and Hassanein", "Ahmedabad and Hassanein"},
		{"Arabic with a conjunction or preposition", "وأحمد قال لأحمد", "[NAME] قال [NAME]"},
		{"Arabic diacritics and tatweel", "مُحَمَّـــد", "[NAME]"},
		{"zero-width characters inside", "Ah\u200dmed", "[NAME]"},
		{"marks after a match are removed with it", "Hassane\u0301 x", "Hassane\u0301 x"},
		{"city with a preposition", "بالجيزة", "[ADDRESS]"},
		{"street core", "near Tahrir", "near [ADDRESS]"},
		{"birth year alone", "born 1950", "born [DATE]"},
		{"known id inside letters", "MRN00123456", "[ID]"},
		{"a known day and month without a year", "seen 5/3 and 12-03, scored 7/10", "seen [DATE] and [DATE], scored 7/10"},
		{"known short phone run", "ext 2980", "ext [PHONE]"},
		{"email local part", "user ahmed.hassan on chat", "user [NAME] on chat"},
	}
	runScrubTable(t, s, tests)
}

type scrubCase struct{ name, in, want string }

func runScrubTable(t *testing.T, s *Scrubber, tests []scrubCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := s.Scrub(tt.in); got != tt.want {
				t.Errorf("Scrub(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestScrubReportCountsPlaceholders(t *testing.T) {
	t.Parallel()
	out, rep := NewScrubber(patient).Scrub("Ahmed Hassan, 0100 123 4567, on 05/03/2024, aged 93, Dr Smith.")
	want := Report{KindName: 2, KindPhone: 1, KindDate: 1, KindAge: 1}
	if len(rep) != len(want) {
		t.Fatalf("report %v, want %v (output %q)", rep, want, out)
	}
	for k, n := range want {
		if rep[k] != n {
			t.Errorf("report[%s] = %d, want %d (output %q)", k, rep[k], n, out)
		}
	}
	for k, n := range rep {
		if got := strings.Count(out, k.Placeholder()); got != n {
			t.Errorf("%d %s placeholders written, %d counted", got, k, n)
		}
	}
}

func TestScrubInvalidUTF8(t *testing.T) {
	t.Parallel()
	out, _ := NewScrubber(patient).Scrub("Ahmed\xff\xfe Hassan 0100\xc0123 4567")
	if !strings.Contains(out, "\uFFFD") || strings.Contains(plain(out), "ahmed") {
		t.Errorf("got %q", out)
	}
}

// plain folds text as a person searching it would not notice: NFKD,
// without marks, tatweel and format characters, Arabic-Indic digits as
// ASCII, ة as ه, lower case. It is the test's own, so a bug in the view
// does not hide itself.
func plain(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r), unicode.Is(unicode.Cf, r), r == 'ـ':
		case r >= '٠' && r <= '٩':
			b.WriteRune('0' + r - '٠')
		case r == 'ة':
			b.WriteRune('ه')
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

var fourDigits = regexp.MustCompile(`\d{4,}`)

func digitRuns(s string) []string { return fourDigits.FindAllString(s, -1) }

// TestScrubIsLinear feeds texts built to make a careless scrubber
// quadratic (anchors without white space, long digit chains, long known
// prefixes) and checks that 64 KB of each takes well under a second.
func TestScrubIsLinear(t *testing.T) {
	t.Parallel()
	s := NewScrubber(patient)
	for _, unit := range []string{"a@", "1-", "http://x", "Ahmed", "Ahmed Mohamed ", "٠", "Mr. A ", "5 March ", "a.com.", "ـ\u0301", "00:"} {
		text := strings.Repeat(unit, 65536/len(unit))
		start := time.Now()
		s.Scrub(text)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%d bytes of %q took %v", len(text), unit, d)
		}
	}
}
