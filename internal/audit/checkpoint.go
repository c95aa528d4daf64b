package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed tree head: the log had Size entries and this Root
// at Time. Note is the signed text as stored and written to the checkpoint
// directory.
type Checkpoint struct {
	Size int64     `json:"size"`
	Root string    `json:"root"` // base64, as in the note
	Time time.Time `json:"time"`
	Note string    `json:"note"`
}

// checkpointTimeLine is the line after tlog.FormatTree's three. ParseTree
// ignores extra lines, so the note stays a standard tree note while the
// signature also covers when the head was signed.
const checkpointTimeLine = "time "

func checkpointText(size int64, root tlog.Hash, at time.Time) string {
	return string(tlog.FormatTree(tlog.Tree{N: size, Hash: root})) + checkpointTimeLine + at.UTC().Format(time.RFC3339Nano) + "\n"
}

// signCheckpoint signs the head of a tree.
func signCheckpoint(s *Signer, size int64, root tlog.Hash, at time.Time) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointText(size, root, at)}, s.signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint %d: %w", size, err)
	}
	return Checkpoint{Size: size, Root: root.String(), Time: at.UTC(), Note: string(msg)}, nil
}

// errCheckpointSignature marks a note that does not verify with any trusted
// key.
var errCheckpointSignature = errors.New("signature does not verify with a trusted audit key")

// openCheckpoint verifies a signed note and parses the tree head in it.
func openCheckpoint(msg []byte, vs note.Verifiers) (Checkpoint, tlog.Hash, error) {
	n, err := note.Open(msg, vs)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, tlog.Hash{}, errCheckpointSignature
		}
		return Checkpoint{}, tlog.Hash{}, fmt.Errorf("not a signed note: %w", err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, tlog.Hash{}, fmt.Errorf("not a tree head: %w", err)
	}
	c := Checkpoint{Size: tree.N, Root: tree.Hash.String(), Note: string(msg)}
	lines := strings.Split(n.Text, "\n")
	if len(lines) > 3 && strings.HasPrefix(lines[3], checkpointTimeLine) {
		if t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(lines[3], checkpointTimeLine)); err == nil {
			c.Time = t
		}
	}
	return c, tree.Hash, nil
}

// checkpointFileSuffix names checkpoint files: <size>.checkpoint.
const checkpointFileSuffix = ".checkpoint"

func checkpointFileName(size int64) string {
	return strconv.FormatInt(size, 10) + checkpointFileSuffix
}

// checkpointFile is one *.checkpoint file in the directory.
type checkpointFile struct {
	path string
	size int64 // from the name; -1 when the name is not a size
}

// listCheckpointFiles lists the directory's *.checkpoint files by size.
func listCheckpointFiles(dir string) ([]checkpointFile, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []checkpointFile
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, checkpointFileSuffix) || strings.HasPrefix(name, ".") {
			continue
		}
		size, err := strconv.ParseInt(strings.TrimSuffix(name, checkpointFileSuffix), 10, 64)
		if err != nil || size <= 0 || checkpointFileName(size) != name {
			size = -1
		}
		out = append(out, checkpointFile{path: filepath.Join(dir, name), size: size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].size < out[j].size })
	return out, nil
}

// writeCheckpointFile writes a checkpoint into dir unless a file of that
// size is there already. An existing file is never overwritten: if it
// differs, verification must see both versions' disagreement, not have one
// erased.
func writeCheckpointFile(dir string, c Checkpoint) (wrote bool, err error) {
	path := filepath.Join(dir, checkpointFileName(c.Size))
	if b, err := os.ReadFile(path); err == nil {
		if !bytes.Equal(b, []byte(c.Note)) {
			return false, fmt.Errorf("audit: checkpoint file %s exists with different content", path)
		}
		return false, nil
	}
	if err := writeFileOnce(path, []byte(c.Note)); err != nil {
		return false, fmt.Errorf("audit: write checkpoint file %s: %w", path, err)
	}
	return true, nil
}
