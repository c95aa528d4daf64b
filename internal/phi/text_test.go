package phi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTextNeverPrintsItsValue(t *testing.T) {
	t.Parallel()
	const secret = "Fatima Al-Zahraa"
	name := NewText(secret)
	type patient struct {
		ID   string
		Name Text
	}
	p := patient{ID: "p1", Name: name}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		outputs = append(outputs, fmt.Sprintf(verb, name), fmt.Sprintf(verb, p), fmt.Sprintf(verb, &p))
	}
	outputs = append(outputs, fmt.Sprint(name), fmt.Sprintln(p), name.String(), name.GoString())
	outputs = append(outputs, fmt.Errorf("register %v: %w", p, errors.New("boom")).Error())
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		l := slog.New(h)
		l.Info("registered", "name", name, "patient", p, slog.Any("ptr", &p))
	}
	outputs = append(outputs, logs.String())

	for _, out := range outputs {
		if strings.Contains(out, "Fatima") || strings.Contains(out, "466174696d61") || strings.Contains(out, "466174696D61") {
			t.Errorf("output leaks the value: %s", out)
		}
	}
	if !strings.Contains(logs.String(), redactedText) {
		t.Errorf("log lines do not show the redaction marker: %s", logs.String())
	}
	if name.Reveal() != secret {
		t.Errorf("Reveal = %q", name.Reveal())
	}
	if name.IsZero() || !(Text{}).IsZero() {
		t.Error("IsZero is wrong")
	}
}
