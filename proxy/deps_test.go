package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the proxy independent of the broker (it sees it only through
// TokenSource) and of Fyne.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "fyne.io/") || dep == "github.com/gatepass-dev/gatepass/broker" {
			t.Errorf("proxy depends on %s", dep)
		}
	}
	if !strings.Contains(string(out), "github.com/elazarl/goproxy") {
		t.Errorf("go list output looks wrong:\n%s", out)
	}
}
