package auth

import (
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/match"

	"github.com/careflow/careflow/internal/errs"
)

// Guessability. NIST SP 800-63B (5.1.1.2) asks verifiers to refuse
// passwords found in lists of commonly used or breached values, dictionary
// words, repetitive or sequential characters (aaaaaa, 1234abcd) and
// context-specific words such as the service's name and the username. A
// length rule alone lets "aaaaaaaaaaaa" and "password1234" through.
//
// The estimate is zxcvbn's (github.com/trustelem/zxcvbn, a Go port of
// Dropbox's zxcvbn, MIT licence): it splits a password into the cheapest
// sequence of known patterns — its embedded 30,000 most common passwords
// (from leaked password sets), English words, names and surnames, keyboard
// walks, repeats, sequences, dates, l33t spellings of all of these, and the
// words we pass in — and counts the guesses an attacker trying those
// patterns first would need. A password needing fewer than
// MinPasswordGuesses is refused, with the pattern that made it cheap named
// in the message (never the password or any part of it).

// MinPasswordGuesses is the least estimated number of guesses a new
// password must need (zxcvbn's "very unguessable", score 4). With
// argon2id at tens of milliseconds a guess, that is centuries of one
// core's time for an attacker holding the hash, and no online guessing
// gets near it past the login throttle.
const MinPasswordGuesses = 1e10

// maxEstimatedRunes bounds the part of a password the estimator reads: its
// matching is quadratic in the length. A password whose first 100
// characters are guessable is refused as a whole.
const maxEstimatedRunes = 100

// contextWords are words specific to this service that a password must not
// be built from, whoever the user is.
var contextWords = []string{"careflow", "hospital", "clinic", "patient"}

// checkGuessable refuses a password that is cheap to guess or that
// contains one of names (the username, a display name) or their parts.
func checkGuessable(password string, names []string) error {
	pw := password
	if utf8.RuneCountInString(pw) > maxEstimatedRunes {
		pw = string([]rune(pw)[:maxEstimatedRunes])
	}
	inputs := append([]string{}, contextWords...)
	var own []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		own = append(own, n)
		// The parts of "amal.hassan.md" or "Amal Hassan" are each a name.
		for _, part := range strings.FieldsFunc(n, func(r rune) bool {
			return r == '.' || r == '_' || r == '-' || r == '@' || r == '+' || r == ' '
		}) {
			if utf8.RuneCountInString(part) >= 3 {
				own = append(own, part)
			}
		}
	}
	inputs = append(inputs, own...)
	r := zxcvbn.PasswordStrength(pw, inputs)
	for _, m := range r.Sequence {
		if m.Pattern == "dictionary" && m.DictionaryName == "user_inputs" && utf8.RuneCountInString(m.Token) >= 3 && isOwn(m.MatchedWord, own) {
			return errs.E(errs.Invalid, "password must not contain the username or the account's name").InField("password")
		}
	}
	if r.Guesses >= MinPasswordGuesses {
		return nil
	}
	return errs.E(errs.Invalid, "password is too easy to guess: %s; a few unrelated words or a longer phrase will do",
		weakness(r.Sequence)).InField("password")
}

func isOwn(word string, own []string) bool {
	for _, o := range own {
		if strings.EqualFold(word, o) {
			return true
		}
	}
	return false
}

// weakness names the pattern that covers most of a weak password.
func weakness(seq []*match.Match) string {
	var worst *match.Match
	for _, m := range seq {
		if m.Pattern == "bruteforce" {
			continue
		}
		if worst == nil || len(m.Token) > len(worst.Token) {
			worst = m
		}
	}
	if worst == nil {
		return "it is too short for its variety of characters"
	}
	switch worst.Pattern {
	case "dictionary":
		switch worst.DictionaryName {
		case "passwords":
			return "it is, or is built on, a commonly used password"
		case "user_inputs":
			return "it is built on a word specific to this service"
		}
		return "it is built on common words or names"
	case "repeat":
		return "it repeats characters or a pattern"
	case "sequence":
		return "it is a sequence of letters or digits"
	case "spatial":
		return "it is a keyboard pattern"
	case "date", "regex":
		return "it is built on a date or a year"
	}
	return "it follows a common pattern"
}
