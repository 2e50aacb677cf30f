package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection keeps the layout's one-way dependencies
// (DESIGN §1: cmd → app → {broker, proxy}): broker and proxy never import
// Fyne, broker never imports goproxy, proxy sees the broker only through
// its TokenSource interface, and neither imports app.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/gatepass-dev/gatepass/"
	rules := map[string][]string{
		"broker/...": {"fyne.io/", "github.com/elazarl/goproxy", mod + "proxy", mod + "app"},
		"proxy/...":  {"fyne.io/", mod + "broker", mod + "app"},
		"assets":     {"fyne.io/"},
	}
	for pkgs, forbidden := range rules {
		out, err := exec.Command("go", "list", "-deps", "../../"+pkgs).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkgs, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed only %d packages: %s", pkgs, len(deps), out)
		}
		for _, dep := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s (forbidden: %s)", pkgs, dep, f)
				}
			}
		}
	}
}
