package main

import (
	"fmt"
	"io"
	"time"
)

// statusLine is one line of progress on stderr, shared by the commands
// that show one (codes load, claims batch): on a terminal it is redrawn in
// place a few times a second; elsewhere (a log file, CI) it is written as
// a plain line every progressLogEvery, so a long task shows it is alive
// and a short one writes nothing. Its owner calls it from one goroutine.
type statusLine struct {
	w        io.Writer
	terminal bool
	now      func() time.Time
	every    time.Duration
	next     time.Time // nothing is shown before this
	drawn    bool      // a redrawable line is on the terminal
}

func newStatusLine(w io.Writer, terminal bool, now func() time.Time) *statusLine {
	s := &statusLine{w: w, terminal: terminal, now: now, every: progressLogEvery}
	if terminal {
		s.every = progressTerminalEvery
	}
	s.next = now().Add(s.every)
	return s
}

// show writes line() if the interval has passed since the last one.
func (s *statusLine) show(line func() string) {
	t := s.now()
	if t.Before(s.next) {
		return
	}
	s.next = t.Add(s.every)
	if s.terminal {
		// \r returns to the start of the line and ESC[K clears what a
		// longer previous line left behind.
		fmt.Fprintf(s.w, "\r\033[K%s", line())
		s.drawn = true
		return
	}
	fmt.Fprintln(s.w, line())
}

// finish clears the line, so the result or the error stands alone.
func (s *statusLine) finish() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\033[K")
		s.drawn = false
	}
}
