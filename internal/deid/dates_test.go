package deid

import (
	"strings"
	"testing"
	"time"
)

func TestYearOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"2024", "2024"},
		{"2024-03", "2024"},
		{"2024-03-05", "2024"},
		{"2024-03-05T10:00:00+02:00", "2024"},
		{"2024-12-31T23:30:00-05:00", "2024"}, // the year written, not UTC's
		{"2024-03-05T10:00:00.123Z", "2024"},
		{"1950-03-05T10:00", "1950"},
		{"", ""},
		{"24", ""},
		{"2024-13", ""},
		{"2024-02-30x", ""},
		{"0000", ""},
		{"05/03/2024", ""},
		{" 2024", ""},
	}
	for _, tt := range tests {
		got, err := YearOf(tt.in)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("YearOf(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if err != nil && tt.in != "" && strings.Contains(err.Error(), tt.in) {
			t.Errorf("the error repeats the value: %v", err)
		}
	}
	if got := Year(time.Date(2024, 3, 5, 1, 0, 0, 0, time.FixedZone("EET", 2*3600))); got != "2024" {
		t.Errorf("Year = %q", got)
	}
	if got := Year(time.Time{}); got != "" {
		t.Errorf("Year(zero) = %q", got)
	}
}

func TestAges(t *testing.T) {
	t.Parallel()
	d := func(y, m, day int) time.Time { return time.Date(y, time.Month(m), day, 0, 0, 0, 0, time.UTC) }
	ref := d(2025, 6, 15)
	tests := []struct {
		name        string
		birth       time.Time
		age         int
		group, year string
		text        string
	}{
		{"a newborn", d(2025, 6, 1), 0, "0-4", "2025", "0"},
		{"the day before a birthday", d(1980, 6, 16), 44, "40-44", "1980", "44"},
		{"on the birthday", d(1980, 6, 15), 45, "45-49", "1980", "45"},
		{"89 is still stated", d(1935, 6, 16), 89, "85-89", "1935", "89"},
		{"90 is grouped and its birth year dropped", d(1935, 6, 15), 90, Over89, "", Over89},
		{"104 is grouped", d(1921, 1, 1), 104, Over89, "", Over89},
		{"born after the reference date", d(2026, 1, 1), -1, "", "", ""},
		{"unknown birth date", time.Time{}, -1, "", "", ""},
		{"29 February counts from 1 March", d(2000, 2, 29), 25, "25-29", "2000", "25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Age(tt.birth, ref); got != tt.age {
				t.Errorf("Age = %d, want %d", got, tt.age)
			}
			if got := AgeGroup(tt.birth, ref); got != tt.group {
				t.Errorf("AgeGroup = %q, want %q", got, tt.group)
			}
			if got := BirthYear(tt.birth, ref); got != tt.year {
				t.Errorf("BirthYear = %q, want %q", got, tt.year)
			}
			if got := AgeText(tt.age); got != tt.text {
				t.Errorf("AgeText = %q, want %q", got, tt.text)
			}
		})
	}
	if got := Age(d(2000, 2, 29), d(2025, 2, 28)); got != 24 {
		t.Errorf("on 28 February of a common year a leapling is %d, want 24", got)
	}
}
