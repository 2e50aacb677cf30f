package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/proxy"
)

// TestKeychainCAEntrySize: a local CA too large for the Windows and macOS keychains
// is refused on every OS with what to do, and nothing is written; a usual one fits.
func TestKeychainCAEntrySize(t *testing.T) {
	names := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("service-%02d.api.team.example", i))
		}
		return out
	}
	kc := &broker.FakeKeychain{}
	store := keychainCA{kc: kc, account: "ca-test"}
	if _, err := proxy.EnsureCA(store, names(40), "", nil); err == nil ||
		!strings.Contains(err.Error(), "over the 2500") || !strings.Contains(err.Error(), "*.gw.example.com") {
		t.Fatalf("a CA for 40 names: %v, want the size error with the fix", err)
	}
	if _, ok := kc.Peek(caService, "ca-test"); ok {
		t.Fatal("the oversized CA was written to the keychain")
	}
	if _, err := proxy.EnsureCA(store, names(5), "", nil); err != nil {
		t.Fatalf("a CA for 5 names: %v", err)
	}
	raw, ok := kc.Peek(caService, "ca-test")
	if !ok || len(raw) > broker.MaxEntryBytes {
		t.Errorf("the CA entry for 5 names: stored %v, %d bytes", ok, len(raw))
	}
}
