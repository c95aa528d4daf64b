package httpapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestFHIRWithNodeClient drives the server with a real FHIR client from npm
// (fhir-kit-client) and checks every answer with an independent validator
// (@medplum/core), through tools/fhirdefs/client_check.mjs. It skips when
// node or the tool's node_modules are absent (npm ci in tools/fhirdefs).
func TestFHIRWithNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	tool, _ := filepath.Abs(filepath.Join("..", "..", "tools", "fhirdefs"))
	for _, need := range []string{"node_modules/fhir-kit-client", "node_modules/@medplum/core", "client_check.mjs"} {
		if _, err := os.Stat(filepath.Join(tool, need)); err != nil {
			t.Skipf("%s missing (run npm ci in tools/fhirdefs)", need)
		}
	}
	f := newFHIRFixture(t, storetest.Open(t, store.SQLite))
	cmd := exec.Command(node, "--experimental-websocket", "client_check.mjs", f.ts.URL+"/fhir/R4")
	cmd.Dir = tool
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil || strings.Contains(string(out), "FAILED") || !strings.Contains(string(out), "delete OK") {
		t.Fatalf("node FHIR client check failed: %v", err)
	}
}
