package terminology

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The IDs below are synthetic: built digit by digit for the test, not anyone's.
func TestParseEgyptianNationalID(t *testing.T) {
	t.Parallel()
	today := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		id      string
		birth   string
		gov     string
		sex     Sex
		abroad  bool
		wantErr string
	}{
		{"a man born in Cairo in 1990", "29001010100015", "1990-01-01", "Cairo", SexMale, false, ""},
		{"a woman born abroad in 2005", "30502288800026", "2005-02-28", "Born abroad", SexFemale, true, ""},
		{"a leap day in 2000", "30002292100037", "2000-02-29", "Giza", SexMale, false, ""},
		{"born today", "32611253500088", "2026-11-25", "South Sinai", SexFemale, false, ""},
		{"13 digits", "2900101010001", "", "", "", false, "14 digits"},
		{"a letter", "2900101010001X", "", "", "", false, "only digits"},
		{"century digit 1", "19001010100015", "", "", "", false, "digit 1"},
		{"century digit 4", "49001010100015", "", "", "", false, "digit 1"},
		{"29 February 2001", "30102290100011", "", "", "", false, "not a real date"},
		{"month 13", "29013010100015", "", "", "", false, "not a real date"},
		{"day 00", "29001000100015", "", "", "", false, "not a real date"},
		{"31 April", "29004310100015", "", "", "", false, "not a real date"},
		{"born tomorrow", "32611260100015", "", "", "", false, "future"},
		{"governorate 05", "29001010500015", "", "", "", false, "governorate"},
		{"governorate 30", "29001013000015", "", "", "", false, "governorate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEgyptianNationalID(tc.id, today)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				// No digit run of the ID may appear in the message.
				if strings.Contains(err.Error(), tc.id[1:7]) || strings.Contains(err.Error(), tc.id) {
					t.Fatalf("error %q quotes the ID", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.BirthDate.Format(time.DateOnly) != tc.birth || got.Governorate != tc.gov || got.Sex != tc.sex || got.BornAbroad != tc.abroad {
				t.Fatalf("got birth %s gov %s sex %s abroad %v", got.BirthDate.Format(time.DateOnly), got.Governorate, got.Sex, got.BornAbroad)
			}
		})
	}
}

func TestEgyptianNationalIDRedactsItself(t *testing.T) {
	t.Parallel()
	id, err := ParseEgyptianNationalID("29001010100015", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("parsed", "id", id)
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%v %+v %#v %s", id, id, id, id), b.String()} {
		if strings.Contains(s, "1990") || strings.Contains(s, "Cairo") || strings.Contains(s, "male") {
			t.Errorf("formatted value leaks PHI: %s", s)
		}
	}
}
