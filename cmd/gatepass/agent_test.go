package main

import (
	"fmt"
	"os"
	"path/filepath"
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

// TestWriteConfigFile: the app's config is written whole and readable by the user
// only, also over a file that was more open; the file it replaces is kept whole as
// a backup (the setup form writes one profile, the old file may have had more).
func TestWriteConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.toml")
	cfg, err := broker.ParseConfig(path, []byte("[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\nclient_secret = \"GOCSPX-secret\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	old := "[profiles.other]\nclient_secret = \"keep-me\"\n# a typo that made the app offer the setup form\nlisten = \n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	backup, err := writeConfigFile(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if kept, err := os.ReadFile(backup); err != nil || string(kept) != old {
		t.Errorf("backup %q holds %q, %v; want the old file whole", backup, kept, err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, %v; want 0600 (it may hold a secret)", fi.Mode().Perm(), err)
	}
	// A second save keeps the first result too, under another name.
	backup2, err := writeConfigFile(path, cfg)
	if err != nil || backup2 == backup || backup2 == "" {
		t.Fatalf("second save: backup %q (first %q), %v", backup2, backup, err)
	}
	if kept, _ := os.ReadFile(backup); string(kept) != old {
		t.Error("the second save overwrote the first backup")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(path)
	if back, err := broker.ParseConfig(path, data); err != nil || back.Profiles[0].ClientSecret != "GOCSPX-secret" {
		t.Errorf("the written config does not read back: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".config-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// No file before: no backup.
	fresh := filepath.Join(dir, "fresh", "config.toml")
	if b, err := writeConfigFile(fresh, cfg); err != nil || b != "" {
		t.Errorf("first write: backup %q, %v; want none", b, err)
	}
}

// TestAllowedOriginsReachThePolicy: a profile's allowed_origins let those pages use
// its token through the proxy (the adapter hands them to the policy); other sites'
// pages and plain-HTTP ones do not.
func TestAllowedOriginsReachThePolicy(t *testing.T) {
	cfg, err := broker.ParseConfig("c.toml", []byte(`[profiles.w]
issuer = "https://accounts.google.com"
client_id = "x"
client_secret = "GOCSPX-secret"
gateways = ["api.team.example"]
allowed_origins = ["https://docs.team.example", "https://*.preview.team.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(cfg, broker.Deps{Keychain: &broker.FakeKeychain{}, LockDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	src := brokerTokens{b}
	for origin, want := range map[string]proxy.Action{
		"https://docs.team.example":         proxy.Inject,
		"https://pr-7.preview.team.example": proxy.Inject,
		"https://preview.team.example":      proxy.Refuse, // "*." is subdomains only
		"http://docs.team.example":          proxy.Refuse,
		"https://evil.example":              proxy.Refuse,
		"":                                  proxy.Inject, // not a browser
	} {
		d := proxy.Decide(proxy.RequestInfo{Method: "GET", Scheme: "https", HostHeader: "api.team.example",
			Tunnel: "api.team.example:443", Origin: origin, FetchSite: "cross-site"}, src.Gateway)
		if origin == "" {
			d = proxy.Decide(proxy.RequestInfo{Method: "GET", Scheme: "https", HostHeader: "api.team.example", Tunnel: "api.team.example:443"}, src.Gateway)
		}
		if d.Action != want {
			t.Errorf("Origin %q: %v (%s), want %v", origin, d.Action, d.Reason, want)
		}
	}
}
