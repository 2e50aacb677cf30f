package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

// TestStatusNote: the status table's NOTE column keeps the reason a refresh fails
// beside the expiry, and says "expired" for a token past it.
func TestStatusNote(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.Local)
	tests := map[string]struct {
		st   broker.ProfileStatus
		want string
	}{
		"signed out":                  {broker.ProfileStatus{}, ""},
		"fresh token":                 {broker.ProfileStatus{Expiry: now.Add(time.Hour)}, "token expires 19:00"},
		"expired token":               {broker.ProfileStatus{Expiry: now.Add(-time.Minute)}, "token expired 17:59"},
		"tomorrow":                    {broker.ProfileStatus{Expiry: now.Add(24 * time.Hour)}, "token expires Dec 3 18:00"},
		"sign-in required":            {broker.ProfileStatus{Reason: "the issuer refused"}, "the issuer refused"},
		"failing refresh":             {broker.ProfileStatus{Expiry: now.Add(-time.Minute), Reason: "issuer unreachable"}, "token expired 17:59; issuer unreachable"},
		"refresh failed, still valid": {broker.ProfileStatus{Expiry: now.Add(time.Minute), Reason: "issuer unreachable"}, "token expires 18:01 (in 1m); issuer unreachable"},
		"seconds left":                {broker.ProfileStatus{Expiry: now.Add(28 * time.Second)}, "token expires 18:00 (in 28s)"},
		"minutes left":                {broker.ProfileStatus{Expiry: now.Add(59*time.Minute + 59*time.Second)}, "token expires 18:59 (in 59m)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := statusNote(tc.st, now, "gatepass"); got != tc.want {
				t.Errorf("statusNote = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStatusWithoutKeychain: with no Secret Service to ask, status does not claim
// "signed-out" (it does not know): the state is unknown, with the keychain's
// error and its fix, in the table and in --json.
func TestStatusWithoutKeychain(t *testing.T) {
	cfg := writeConfig(t, "[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\ngateways = [\"api.team.example\"]\n")
	noBus := []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "no-bus")}
	out, stderr, code := runGatepass(t, noBus, "--config", cfg, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^w +unknown +- .*no OS keychain is available.*gnome-keyring`).MatchString(out) {
		t.Errorf("status without a Secret Service: exit %d\n%s%s\nwant state unknown with the keychain's error and fix", code, out, stderr)
	}
	out, _, _ = runGatepass(t, noBus, "--config", cfg, "status", "--json")
	var doc struct {
		Profiles []broker.ProfileStatus `json:"profiles"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Profiles) != 1 || doc.Profiles[0].State != broker.StateUnknown || doc.Profiles[0].Reason == "" {
		t.Errorf("status --json without a Secret Service: %v\n%s", err, out)
	}
}

// TestErrorMessageNamesConfig: a sign-in-required error printed by the CLI names the
// config in its fix, whether it arrives as is or wrapped by fmt.Errorf (whose text
// was made before the CLI knew the config).
func TestErrorMessageNamesConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "my config.toml")
	want := "run `gatepass --config " + app.ShellQuote(cfg) + " login --profile work`"
	for name, err := range map[string]error{
		"as is":   &broker.SignInRequiredError{Profile: "work", Reason: "revoked"},
		"wrapped": fmt.Errorf("token for api.example: %w", &broker.SignInRequiredError{Profile: "work", Reason: "revoked"}),
	} {
		got := errorMessage(err, cfg)
		if !strings.Contains(got, want) || strings.Count(got, "login --profile") != 1 || !strings.Contains(got, "revoked") {
			t.Errorf("%s: %q, want the reason and one fix: %q", name, got, want)
		}
	}
	if got := errorMessage(errors.New("other"), cfg); got != "other" {
		t.Errorf("another error: %q", got)
	}
}

// TestStatusProfileFlag: `status --profile NAME` (before or after the command, table
// or --json) reports that profile only, as a script asking about one profile expects.
func TestStatusProfileFlag(t *testing.T) {
	cfg := writeConfig(t, "[profiles.a]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\n[profiles.b]\nissuer = \"https://accounts.google.com\"\nclient_id = \"y\"\n")
	noBus := []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "no-bus")}
	out, stderr, code := runGatepass(t, noBus, "--config", cfg, "status", "--json", "--profile", "b")
	var doc struct {
		Profiles []broker.ProfileStatus `json:"profiles"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc.Profiles) != 1 || doc.Profiles[0].Profile != "b" {
		t.Errorf("status --json --profile b: exit %d, %v, %+v; want profile b only\n%s", code, err, doc.Profiles, stderr)
	}
	out, _, code = runGatepass(t, noBus, "--config", cfg, "--profile", "b", "status")
	if code != 0 || !regexp.MustCompile(`(?m)^b +unknown `).MatchString(out) || regexp.MustCompile(`(?m)^a +`).MatchString(out) {
		t.Errorf("--profile b status: exit %d; want the line of b and not of a\n%s", code, out)
	}
}

// TestDoctorWithoutKeychain: with no Secret Service to ask, doctor's keychain check
// fails (exit 1) with the keychain's error and fix, rather than saying it is reachable.
func TestDoctorWithoutKeychain(t *testing.T) {
	p, err := demo.Start("127.0.0.1:0", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := writeConfig(t, fmt.Sprintf("[profiles.w]\nissuer = %q\nclient_id = %q\nclient_secret = %q\n", p.Issuer(), p.ClientID(), p.ClientSecret()))
	noBus := []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "no-bus")}
	out, stderr, code := runGatepass(t, noBus, "--config", cfg, "doctor")
	if code != exitFailure || !regexp.MustCompile(`(?m)^FAIL  keychain +.*no OS keychain is available.*gnome-keyring`).MatchString(out) || strings.Contains(out, "ok    keychain") {
		t.Errorf("doctor without a Secret Service: exit %d, want %d and a FAIL keychain line with the fix\n%s%s", code, exitFailure, out, stderr)
	}
}

// TestConfigFromEnv: without --config the config is $GATEPASS_CONFIG (the demo tells
// users to export it); --config wins over it (DESIGN §3).
func TestConfigFromEnv(t *testing.T) {
	cfg := writeConfig(t, "[profiles.w]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\n")
	missing := filepath.Join(t.TempDir(), "missing.toml")
	noBus := "DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "no-bus")
	line := regexp.MustCompile(`(?m)^w +unknown `)
	out, stderr, code := runGatepass(t, []string{noBus, "GATEPASS_CONFIG=" + cfg}, "status")
	if code != 0 || !line.MatchString(out) {
		t.Errorf("status with GATEPASS_CONFIG=%s: exit %d, want its profile w\n%s%s", cfg, code, out, stderr)
	}
	out, stderr, code = runGatepass(t, []string{noBus, "GATEPASS_CONFIG=" + missing}, "--config", cfg, "status")
	if code != 0 || !line.MatchString(out) {
		t.Errorf("status --config %s with GATEPASS_CONFIG=%s: exit %d, want --config's profile w\n%s%s", cfg, missing, code, out, stderr)
	}
	_, stderr, code = runGatepass(t, []string{noBus, "GATEPASS_CONFIG=" + missing}, "status")
	if code != exitUsage || !strings.Contains(stderr, missing) {
		t.Errorf("status with GATEPASS_CONFIG=%s (no such file): exit %d, stderr %q; want %d naming the file", missing, code, stderr, exitUsage)
	}
}
