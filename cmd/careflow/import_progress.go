package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// importProgressLogEvery is how often a plain progress line is written
// when stderr is not a terminal (a log file, CI): often enough to show a
// long import is alive, rarely enough not to drown the per-file lines.
const importProgressLogEvery = 5 * time.Second

// importProgress shows on stderr how far an import has come. On a terminal
// it is one line redrawn in place (a bar over the bytes of all files, the
// resources written, the rate, the time), with failures and notes printed
// above it; elsewhere it is a plain line per file and one every few
// seconds. The importing goroutine reports to it, a ticker redraws it, and
// log lines go through it (Write), so it holds a lock.
type importProgress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	width    int // terminal columns; 0 when unknown
	now      func() time.Time
	started  time.Time
	next     time.Time // off a terminal: the next periodic line

	files      int
	totalBytes int64 // the files' sizes; 0 when unknown
	doneBytes  int64 // bytes of the files finished
	fileBytes  int64 // bytes read of the current file
	fileIndex  int
	file       string
	fileTotal  int // entries in the current file when known (a Bundle)
	fileDone   int
	fileFailed int
	written    int // resources processed without failure, all files
	failed     int
	retrying   bool // a second pass over deferred files: bytes are not counted again
	drawn      bool // a redrawable line is on the terminal
}

func newImportProgress(w io.Writer, terminal bool, width int, now func() time.Time, files []importFile) *importProgress {
	p := &importProgress{w: w, terminal: terminal, width: width, now: now, files: len(files)}
	for _, f := range files {
		if f.size == 0 {
			p.totalBytes = 0
			break
		}
		p.totalBytes += f.size
	}
	p.started = now()
	p.next = p.started.Add(importProgressLogEvery)
	return p
}

// run redraws the line until ctx ends. The terminal line moves even while
// one long transaction runs, so the clock shows it is alive.
func (p *importProgress) run(ctx context.Context) {
	every := importProgressLogEvery
	if p.terminal {
		every = progressTerminalEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.tick()
		}
	}
}

func (p *importProgress) startFile(i int, f importFile) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fileIndex, p.file = i, f.path
	p.fileBytes, p.fileTotal, p.fileDone, p.fileFailed = 0, 0, 0, 0
	p.redraw()
}

// read records the bytes read so far of the current file.
func (p *importProgress) read(n int64) {
	p.mu.Lock()
	if !p.retrying {
		p.fileBytes = n
	}
	p.mu.Unlock()
}

// entries records how many entries the current file has, once known.
func (p *importProgress) entries(total int) {
	p.mu.Lock()
	p.fileTotal = total
	p.mu.Unlock()
}

// done records entries processed: ok without failure, failed with one.
func (p *importProgress) done(ok, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fileDone += ok + failed
	p.fileFailed += failed
	p.written += ok
	p.failed += failed
	p.redraw()
}

// endFile closes the current file; off a terminal it writes the file's line.
func (p *importProgress) endFile(result string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.doneBytes += p.fileBytes
	p.fileBytes = 0
	if !p.terminal {
		fmt.Fprintf(p.w, "%s: %s\n", p.file, result)
	}
}

// startRetry begins the pass over deferred files.
func (p *importProgress) startRetry() {
	p.mu.Lock()
	p.retrying = true
	p.mu.Unlock()
}

// println writes a line of its own (a failure, a note) above the bar.
func (p *importProgress) println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintln(p.w, line)
	p.redraw()
}

// Write lets log lines through without tearing the bar.
func (p *importProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	n, err := p.w.Write(b)
	p.redraw()
	return n, err
}

func (p *importProgress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		p.redraw()
		return
	}
	if t := p.now(); !t.Before(p.next) && p.file != "" {
		p.next = t.Add(importProgressLogEvery)
		fmt.Fprintln(p.w, p.logLine(t))
	}
}

// finish clears the bar, so the summary stands alone.
func (p *importProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.file = ""
}

func (p *importProgress) clear() {
	if p.drawn {
		// \r returns to the start of the line and ESC[K clears it.
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *importProgress) redraw() {
	if !p.terminal || p.file == "" {
		return
	}
	line := p.barLine(p.now())
	if r := []rune(line); p.width > 1 && len(r) >= p.width {
		// A line that wraps cannot be redrawn in place.
		line = string(r[:p.width-1])
	}
	fmt.Fprint(p.w, "\r\033[K"+line)
	p.drawn = true
}

// counts is the progress common to both forms: how much is read, how many
// resources are done, the rate and the time.
func (p *importProgress) counts(t time.Time) (pct int, read, rate string, elapsed time.Duration) {
	elapsed = t.Sub(p.started)
	done := p.doneBytes + p.fileBytes
	pct = -1
	if p.totalBytes > 0 {
		pct = int(min(100, done*100/p.totalBytes))
		read = megabytes(done) + "/" + megabytes(p.totalBytes) + " MB"
	} else {
		read = megabytes(done) + " MB"
	}
	rate = "-"
	if s := elapsed.Seconds(); s >= 1 {
		rate = thousands(int(float64(p.written+p.failed)/s)) + "/s"
	}
	return pct, read, rate, elapsed
}

func (p *importProgress) barLine(t time.Time) string {
	pct, read, rate, elapsed := p.counts(t)
	var b strings.Builder
	if pct >= 0 {
		const width = 20
		n := pct * width / 100
		fmt.Fprintf(&b, "[%s%s] %3d%% ", strings.Repeat("#", n), strings.Repeat(".", width-n), pct)
	}
	fmt.Fprintf(&b, "%s · %s resources", read, thousands(p.written+p.failed))
	if p.failed > 0 {
		fmt.Fprintf(&b, " (%s failed)", thousands(p.failed))
	}
	fmt.Fprintf(&b, " · %s · %s", rate, elapsed.Round(time.Second))
	if done := p.doneBytes + p.fileBytes; pct >= 0 && done > 0 && pct < 100 && elapsed > 3*time.Second {
		left := time.Duration(float64(elapsed) * float64(p.totalBytes-done) / float64(done))
		fmt.Fprintf(&b, " · ETA %s", left.Round(time.Second))
	}
	fmt.Fprintf(&b, " · file %d/%d", p.fileIndex+1, p.files)
	if p.fileTotal > 0 {
		fmt.Fprintf(&b, " entry %d/%d", p.fileDone, p.fileTotal)
	}
	b.WriteString(" " + p.file)
	return b.String()
}

func (p *importProgress) logLine(t time.Time) string {
	pct, read, rate, elapsed := p.counts(t)
	var b strings.Builder
	b.WriteString("importing: ")
	if pct >= 0 {
		fmt.Fprintf(&b, "%d%%, ", pct)
	}
	fmt.Fprintf(&b, "%s read, %d resources (%d failed), %s, %s elapsed; file %d/%d %s",
		read, p.written+p.failed, p.failed, rate, elapsed.Round(time.Second), p.fileIndex+1, p.files, p.file)
	if p.fileTotal > 0 {
		fmt.Fprintf(&b, " (entry %d of %d)", p.fileDone, p.fileTotal)
	}
	return b.String()
}

func megabytes(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) }

// thousands writes n with a comma every three digits: 12,345.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
