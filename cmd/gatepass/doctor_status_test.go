package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/proxy"
)

// TestE2EDoctorAgentCA: with an agent running, doctor's CA check asks the agent for
// the CA its proxy intercepts with instead of reading the keychain (LESSONS: one
// keychain read at agent start; CLI asks the agent): a corrupt keychain entry
// neither fails the check nor changes, and a CA file someone replaced fails it with
// the command that writes the agent's certificate back. Without an agent the
// keychain entry is checked as before.
func TestE2EDoctorAgentCA(t *testing.T) {
	cfg, listen, account, caFile := caSetup(t)

	agentLog, stop := runAgent(t, cfg)
	waitListening(t, listen)
	agentCert, err := os.ReadFile(caFile)
	if err != nil || !strings.HasPrefix(string(agentCert), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("the agent wrote no CA certificate to %s: %v\nagent log:\n%s", caFile, err, agentLog.String())
	}
	// An entry a keychain read would fail on: doctor passes only if it asks the agent.
	const corrupt = `{"cert": "-----BEGIN CERT`
	if err := keyring.Set(caService, account, corrupt); err != nil {
		t.Fatal(err)
	}
	okCA := regexp.MustCompile(`(?m)^ok    ca +local CA of the running gatepass agent valid until \d{4}-\d\d-\d\d, may sign only for api\.example\.test \(gateways: api\.example\.test\); ` +
		regexp.QuoteMeta(caFile) + ` holds it$`)
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "doctor")
	if code != 0 || !okCA.MatchString(out) {
		t.Errorf("doctor with the agent running: exit %d, want 0 and an ok ca line from the running agent\n%s%s", code, out, stderr)
	}

	// A CA file that is not the agent's: FAIL, with the fix; the fix works.
	if err := os.WriteFile(caFile, []byte("not the agent's CA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fix := "`gatepass --config " + app.ShellQuote(cfg) + " ca path` writes the agent's certificate there again"
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !regexp.MustCompile(`(?m)^FAIL  ca +`+regexp.QuoteMeta(caFile)+` does not hold the running gatepass agent's local CA.*`+regexp.QuoteMeta(fix)).MatchString(out) {
		t.Errorf("doctor with a replaced CA file: exit %d, want %d and a FAIL ca line with %q\n%s%s", code, exitFailure, fix, out, stderr)
	}
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "path"); code != 0 {
		t.Fatalf("ca path: exit %d: %s", code, stderr)
	}
	if out, stderr, code = runGatepass(t, nil, "--config", cfg, "doctor"); code != 0 || !okCA.MatchString(out) {
		t.Errorf("doctor after `ca path` rewrote the file: exit %d\n%s%s", code, out, stderr)
	}
	if raw, err := keyring.Get(caService, account); err != nil || raw != corrupt {
		t.Errorf("the keychain's CA entry changed while the agent ran: %v, %.40q", err, raw)
	}
	if got, _ := os.ReadFile(caFile); string(got) != string(agentCert) {
		t.Errorf("%s does not hold the agent's CA", caFile)
	}

	// No agent: the keychain entry is what there is to check, as before.
	stop()
	out, _, code = runGatepass(t, nil, "--config", cfg, "doctor")
	if code != exitFailure || !regexp.MustCompile(`(?m)^FAIL  ca +the stored local CA is corrupt`).MatchString(out) {
		t.Errorf("doctor without an agent and a corrupt keychain CA: exit %d\n%s", code, out)
	}
	if raw, err := keyring.Get(caService, account); err != nil || raw != corrupt {
		t.Errorf("doctor without an agent changed the keychain's CA entry: %v, %.40q", err, raw)
	}
}

// TestCheckAgentCA: what doctor makes of a running agent's CA answer: ok for its CA
// covering the gateways with the file holding it; else FAIL with a fix, and never
// a key accepted.
func TestCheckAgentCA(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatepass-ca.pem")
	ca, err := proxy.EnsureCA(newKeychainCA(&broker.FakeKeychain{}, &broker.Config{Path: filepath.Join(dir, "c.toml")}),
		[]string{"api.example.test", ".gw.example.test", "127.0.0.1"}, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.CertPEM()
	const command = "gatepass --config /x/c.toml"
	names := []string{"api.example.test", ".gw.example.test", "127.0.0.1"}

	msg, err := checkAgentCA(broker.AgentCA{CertPEM: cert, Path: path}, "/unused", names, command)
	if err != nil || !strings.Contains(msg, "local CA of the running gatepass agent valid until") || !strings.Contains(msg, path+" holds it") {
		t.Errorf("the agent's CA, file in place: %q, %v", msg, err)
	}
	// No path from the agent: the config's default path.
	if _, err := checkAgentCA(broker.AgentCA{CertPEM: cert}, path, names, command); err != nil {
		t.Errorf("the agent's CA at the default path: %v", err)
	}

	missing := filepath.Join(dir, "missing.pem")
	other := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(other, []byte("something else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spaced := filepath.Join(dir, "my certs", "other.pem") // the command in the message must survive a shell
	if err := os.MkdirAll(filepath.Dir(spaced), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spaced, []byte("something else\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails := map[string]struct {
		got   broker.AgentCA
		names []string
		want  []string
	}{
		"file replaced":      {broker.AgentCA{CertPEM: cert, Path: other}, names, []string{other + " does not hold the running gatepass agent's local CA", "`" + command + " ca path` writes the agent's certificate there again"}},
		"replaced, spaced":   {broker.AgentCA{CertPEM: cert, Path: spaced}, names, []string{"so `curl --cacert " + app.ShellQuote(spaced) + "` does not trust the proxy"}},
		"file missing":       {broker.AgentCA{CertPEM: cert, Path: missing}, names, []string{missing + ", the running gatepass agent's CA certificate file, is missing: `" + command + " ca path`"}},
		"gateway not signed": {broker.AgentCA{CertPEM: cert, Path: path}, append(names, "new.example.test"), []string{"may not sign for new.example.test", "restart the agent", "`" + command + " ca export`"}},
		"key with the cert":  {broker.AgentCA{CertPEM: append(cert, "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n"...), Path: path}, names, []string{"unusable local CA certificate", "restart the agent"}},
		"not a certificate":  {broker.AgentCA{CertPEM: []byte("junk"), Path: path}, names, []string{"unusable local CA certificate"}},
	}
	for name, tc := range fails {
		t.Run(name, func(t *testing.T) {
			msg, err := checkAgentCA(tc.got, path, tc.names, command)
			if err == nil {
				t.Fatalf("checkAgentCA = %q, nil; want an error", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("checkAgentCA error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestStatusSignInFix: for a profile that needs a new sign-in the NOTE column ends
// with the command that signs in again, with --config as the shell needs it; a
// signed-in profile (even with a failing refresh) and a signed-out one get none.
func TestStatusSignInFix(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.Local)
	required := broker.ProfileStatus{Profile: "work", State: broker.StateSignInRequired, Reason: "the issuer refused"}
	if got, want := statusNote(required, now, "gatepass"), "the issuer refused; run `gatepass login --profile work`"; got != want {
		t.Errorf("statusNote (default config) = %q, want %q", got, want)
	}
	revoked := broker.ProfileStatus{Profile: "work", State: broker.StateSignInRequired, Reason: "Token has been expired or revoked."}
	if got, want := statusNote(revoked, now, "gatepass"), "Token has been expired or revoked; run `gatepass login --profile work`"; got != want {
		t.Errorf("statusNote (issuer's sentence) = %q, want %q", got, want)
	}
	cmd := shellCommand(&broker.Config{Path: "/tmp/my configs/g.toml"})
	if got, want := statusNote(required, now, cmd), "the issuer refused; run `gatepass --config '/tmp/my configs/g.toml' login --profile work`"; got != want {
		t.Errorf("statusNote (other config) = %q, want %q", got, want)
	}
	for _, st := range []broker.ProfileStatus{
		{Profile: "work", State: broker.StateSignedIn, Expiry: now.Add(time.Hour)},
		{Profile: "work", State: broker.StateSignedIn, Expiry: now.Add(time.Minute), Reason: "issuer unreachable"},
		{Profile: "work", State: broker.StateSignedOut},
	} {
		if got := statusNote(st, now, cmd); strings.Contains(got, "login") {
			t.Errorf("statusNote(%s) = %q: a sign-in hint for a profile that does not need one", st.State, got)
		}
	}
}

// TestE2EStatusSignInFix: `gatepass status` shows a signed-in profile without a
// sign-in hint and, after the issuer refused its refresh token, the reason and the
// command that signs in again for this (non-default) config.
func TestE2EStatusSignInFix(t *testing.T) {
	p, cfg, profile := demoSetup(t, demo.Options{})
	login(t, cfg)
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^`+profile+` +signed-in `).MatchString(out) || strings.Contains(out, "login --profile") {
		t.Errorf("status when signed in: exit %d, want signed-in and no sign-in hint\n%s%s", code, out, stderr)
	}
	p.RevokeAll()
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "token"); code != exitSignIn {
		t.Fatalf("token after the issuer revoked: exit %d, want %d: %s", code, exitSignIn, stderr)
	}
	fix := "; run `gatepass --config " + app.ShellQuote(cfg) + " login --profile " + profile + "`"
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^`+profile+` +sign-in-required +\S+ +\S+ +.*no longer accepts the refresh token.*`+regexp.QuoteMeta(fix)+`$`).MatchString(out) {
		t.Errorf("status when sign-in is required: exit %d, want the reason and %q on the profile's line\n%s%s", code, fix, out, stderr)
	}
}

// TestStatusAppProxyOff: while the desktop app runs for the config with its proxy
// switched off (an agent that answers with no proxy address), status and doctor say
// to switch it on in the window, not to start `gatepass proxy`, which would be
// refused beside that agent.
func TestStatusAppProxyOff(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	path := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", freePort(t)))
	cfg, err := broker.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := startBroker(t.Context(), cfg, agentOptions{log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	const want = "has its proxy switched off: switch Proxy on in its window"
	var out, errb bytes.Buffer
	run(context.Background(), []string{"--config", path, "status"}, &out, &errb)
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "start it with `gatepass proxy`") {
		t.Errorf("status beside the app with its proxy off:\n%s%s", out.String(), errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--config", path, "doctor"}, &out, &errb); code != exitFailure || !strings.Contains(out.String(), want) {
		t.Errorf("doctor beside the app with its proxy off: exit %d\n%s", code, out.String())
	}
}
