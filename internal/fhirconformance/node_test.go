package fhirconformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// nodeTools is tools/fhirdefs with its locked npm packages installed.
type nodeTools struct {
	dir string
	// flags go before a script on node's command line.
	flags []string
}

// node returns a command running a script of the tools folder.
func (n nodeTools) node(ctx context.Context, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", append(append(append([]string{}, n.flags...), filepath.Join(n.dir, script)), args...)...)
	cmd.Dir = n.dir
	return cmd
}

// The install runs once per test binary: both tests of this package share
// it, and two `npm ci` in one folder at once would tear node_modules apart.
var (
	installOnce sync.Once
	installed   nodeTools
	installErr  error
	installSkip string
)

// requireNodeTools skips the test when node or npm is missing, and fails it
// when the locked packages cannot be installed.
func requireNodeTools(t *testing.T) nodeTools {
	t.Helper()
	installOnce.Do(func() { installed, installSkip, installErr = installNodeTools() })
	if installSkip != "" {
		t.Skip(installSkip)
	}
	if installErr != nil {
		t.Fatal(installErr)
	}
	return installed
}

func installNodeTools() (nodeTools, string, error) {
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nodeTools{}, fmt.Sprintf("%s is not on the PATH: the conformance tests need Node and npm (CI images have them)", bin), nil
		}
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "tools", "fhirdefs"))
	if err != nil {
		return nodeTools{}, "", err
	}
	n := nodeTools{dir: dir}
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return n, "", fmt.Errorf("node --version: %w", err)
	}
	major, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0])
	if err != nil {
		return n, "", fmt.Errorf("node --version said %q", out)
	}
	if major < 20 {
		return n, fmt.Sprintf("node %s is too old for the tools in tools/fhirdefs (20 or later)", strings.TrimSpace(string(out))), nil
	}
	if major < 22 {
		// @medplum/core touches the WebSocket global when it loads; Node
		// 20 has it only behind this flag.
		n.flags = []string{"--experimental-websocket"}
	}
	upToDate, err := lockSatisfied(dir)
	if err != nil {
		return n, "", err
	}
	if upToDate {
		return n, "", nil
	}
	if err := stagedInstall(dir); err != nil {
		return n, "", err
	}
	if ok, err := lockSatisfied(dir); err != nil || !ok {
		return n, "", fmt.Errorf("npm ci finished but node_modules does not match package-lock.json (%v)", err)
	}
	return n, "", nil
}

// stagedInstall runs `npm ci` in a staging folder beside the tools and then
// moves the finished node_modules into place. In place, npm ci would delete
// node_modules and write it again over several seconds, while tests of
// other packages (internal/fhir's generator, internal/httpapi's node
// client) may be reading it; a rename swaps it in one step. Both the
// staging folder and npm's cache are in the tools folder (git-ignored): a
// test run writes nothing outside the repository.
func stagedInstall(dir string) error {
	stage := filepath.Join(dir, ".npm-stage")
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, f), b, 0o644); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = stage
	cmd.Env = append(os.Environ(),
		"npm_config_cache="+filepath.Join(dir, ".npm-cache"),
		"npm_config_update_notifier=false",
	)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci (for %s): %v\n%s", dir, err, buf.Bytes())
	}
	live := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(live); err == nil {
		if err := os.Rename(live, filepath.Join(stage, "node_modules.old")); err != nil {
			return err
		}
	}
	return os.Rename(filepath.Join(stage, "node_modules"), live)
}

// lockSatisfied reports whether node_modules holds every package of
// package-lock.json at its locked version.
func lockSatisfied(dir string) (bool, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false, err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return false, fmt.Errorf("package-lock.json: %w", err)
	}
	for path, p := range lock.Packages {
		if path == "" {
			continue // the root project
		}
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path), "package.json"))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var got struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(raw, &got) != nil || got.Version != p.Version {
			return false, nil
		}
	}
	return len(lock.Packages) > 1, nil
}
