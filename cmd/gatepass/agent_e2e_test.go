package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

// startAgent starts `gatepass --config cfg proxy args…` and returns its output;
// the agent is stopped (SIGINT) and waited for when the test ends.
func startAgent(t *testing.T, cfg string, args ...string) *syncBuffer {
	t.Helper()
	out, _ := runAgent(t, cfg, args...)
	return out
}

// runAgent is startAgent that also returns stop, which ends the agent (SIGINT) and
// waits for it; it is called again when the test ends, and does nothing then.
func runAgent(t *testing.T, cfg string, args ...string) (out *syncBuffer, stop func()) {
	t.Helper()
	_, out, stop = agentCmd(t, cfg, args...)
	return out, stop
}

// agentCmd is runAgent that also returns the agent's process.
func agentCmd(t *testing.T, cfg string, args ...string) (cmd *exec.Cmd, out *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd = exec.CommandContext(ctx, gatepassBin, append([]string{"--config", cfg, "proxy"}, args...)...)
	cmd.Env = testEnv(t)
	out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			cancel()
		})
	}
	t.Cleanup(stop)
	return cmd, out, stop
}

// TestE2EProxySecondInterrupt: Ctrl-C drains requests in flight and says how long
// it waits; a second Ctrl-C (or a SIGTERM, as systemd sends) stops at once, says the
// requests in flight were cut off and by what (exit 1), and their log lines say so
// rather than blaming the client.
func TestE2EProxySecondInterrupt(t *testing.T) {
	for _, tc := range []struct {
		second os.Signal
		said   string
	}{{os.Interrupt, "a second Ctrl-C"}, {syscall.SIGTERM, "SIGTERM"}} {
		t.Run(tc.said, func(t *testing.T) {
			p, _, profile := demoSetup(t, demo.Options{})
			listen := freePort(t)
			cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", listen))
			cmd, out, _ := agentCmd(t, cfg)
			waitListening(t, listen)
			got := slowGetThrough(t, listen)
			_ = cmd.Process.Signal(os.Interrupt)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), "Ctrl-C again stops now") {
				if time.Now().After(deadline) {
					t.Fatalf("no drain message after Ctrl-C:\n%s", out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			start := time.Now()
			_ = cmd.Process.Signal(tc.second)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second): // the drain alone would wait 10 s
				t.Fatalf("%s did not stop the proxy:\n%s", tc.said, out)
			}
			t.Logf("stopped %s after %s", time.Since(start).Round(time.Millisecond), tc.said)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit after requests were cut off: %v, want exit code 1", err)
			}
			log := out.String()
			if want := "stopped at once (" + tc.said + "): requests still in flight were cut off"; !strings.Contains(log, want) {
				t.Errorf("the proxy did not say %q:\n%s", want, log)
			}
			if !regexp.MustCompile(`path=/slow .*err="cut off: the proxy shut down`).MatchString(log) || strings.Contains(log, "client went away") {
				t.Errorf("the cut-off request's log line:\n%s", log)
			}
			if err := <-got; err == nil {
				t.Errorf("the client read a whole body from a request the proxy cut off")
			}
		})
	}
}

// TestE2EAgentControlSocket: while `gatepass proxy` runs, CLI commands get
// their tokens from it over the control socket instead of spending the
// refresh token themselves; login and logout in a terminal reach the agent;
// a second agent for the same config is refused.
func TestE2EAgentControlSocket(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{RotateRefreshTokens: true, DetectReuse: true})
	// The agent's proxy listens on --listen, not on the config's listen: status and
	// doctor learn where from the agent.
	listen := freePort(t)
	cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", freePort(t))) // private proxy ports
	login(t, cfg)

	agentLog := startAgent(t, cfg, "--listen", listen)
	waitListening(t, listen)
	// The agent refreshes once at start; wait for it to hold a token.
	var status struct {
		Profiles []struct {
			State  string
			Expiry time.Time
		}
		Proxy struct {
			Running bool
			Address string
		}
	}
	for i := 0; i < 50; i++ {
		out, _, _ := runGatepass(t, nil, "--config", cfg, "status", "--json")
		_ = json.Unmarshal([]byte(out), &status)
		if len(status.Profiles) == 1 && !status.Profiles[0].Expiry.IsZero() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(status.Profiles) != 1 || status.Profiles[0].State != "signed-in" || status.Profiles[0].Expiry.IsZero() ||
		!status.Proxy.Running || status.Proxy.Address != listen {
		t.Fatalf("status while the agent runs on %s = %+v\nagent log:\n%s", listen, status, agentLog.String())
	}
	if out, _, _ := runGatepass(t, nil, "--config", cfg, "doctor"); !strings.Contains(out, "this config's gatepass proxy answers on "+listen) {
		t.Errorf("doctor does not find the agent's proxy on %s:\n%s", listen, out)
	}
	// Another config whose listen is where this agent's proxy runs: that proxy is not
	// its own (it does not know its gateways), and status and doctor say so.
	other := demoConfig(t, p, profile+"-other", fmt.Sprintf("listen = %q", listen))
	if out, _, _ := runGatepass(t, nil, "--config", other, "status"); !strings.Contains(out, "proxy: not running for this config: another gatepass") {
		t.Errorf("status of another config with the agent's port:\n%s", out)
	}
	if out, _, code := runGatepass(t, nil, "--config", other, "doctor"); code != exitFailure || !strings.Contains(out, "FAIL  proxy") || !strings.Contains(out, "another gatepass") {
		t.Errorf("doctor of another config with the agent's port: exit %d\n%s", code, out)
	}

	before := p.Stats().Refreshes
	var tokens []string
	for range 3 {
		out, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", "access")
		if code != 0 {
			t.Fatalf("token via the agent: exit %d: %s", code, stderr)
		}
		tokens = append(tokens, strings.TrimSpace(out))
	}
	if got := p.Stats().Refreshes; got != before {
		t.Errorf("CLI token calls spent %d refreshes; the agent should have answered from memory", got-before)
	}
	if tokens[0] != tokens[1] || tokens[1] != tokens[2] {
		t.Errorf("the agent handed out different tokens without a refresh")
	}

	// A second agent for the same config is refused.
	_, stderr, code := runGatepass(t, nil, "--config", cfg, "proxy", "--listen", freePort(t))
	if code == 0 || !strings.Contains(stderr, "another gatepass agent is already running") {
		t.Errorf("second agent: exit %d, stderr %q", code, stderr)
	}

	// Logout in a terminal reaches the agent.
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "logout"); code != 0 {
		t.Fatalf("logout: %s", stderr)
	}
	_, stderr, code = runGatepass(t, nil, "--config", cfg, "token")
	if code != exitSignIn {
		t.Errorf("token after logout (agent running): exit %d, want 3; %s", code, stderr)
	}
	// And so does a new login.
	login(t, cfg)
	if _, stderr, code := runGatepass(t, nil, "--config", cfg, "token"); code != 0 {
		t.Errorf("token after a new login (agent running): exit %d: %s", code, stderr)
	}
	if p.Stats().InvalidGrants != 0 {
		t.Errorf("%d invalid_grant: a rotated refresh token was spent twice between CLI and agent", p.Stats().InvalidGrants)
	}
	if strings.Contains(agentLog.String(), tokens[0]) {
		t.Errorf("the agent log contains a token")
	}
}

// waitAgentToken waits until the agent for cfg holds a token (it refreshes once
// at start), as `gatepass status` reports it.
func waitAgentToken(t *testing.T, cfg string, agentLog *syncBuffer) {
	t.Helper()
	for range 50 {
		out, _, _ := runGatepass(t, nil, "--config", cfg, "status", "--json")
		var status struct {
			Profiles []struct {
				State  string
				Expiry time.Time
			}
		}
		if json.Unmarshal([]byte(out), &status) == nil && len(status.Profiles) == 1 &&
			status.Profiles[0].State == "signed-in" && !status.Profiles[0].Expiry.IsZero() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the agent holds no token after 5s\nagent log:\n%s", agentLog.String())
}

// TestE2EAgentSignInReason: when the issuer refuses the agent's refresh token
// (Google's invalid_rapt: a reauthentication policy), `gatepass token` asking the
// agent exits 3 with the issuer's reason and the command that fixes it, not a
// generic "no valid sign-in"; `gatepass status` says the reason too. No token is
// in either.
func TestE2EAgentSignInReason(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	listen := freePort(t)
	cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", listen))
	login(t, cfg)
	agentLog := startAgent(t, cfg)
	waitListening(t, listen)
	waitAgentToken(t, cfg, agentLog)
	access, stderr, code := runGatepass(t, nil, "--config", cfg, "token", "--type", "access")
	if code != 0 {
		t.Fatalf("token via the agent: exit %d: %s", code, stderr)
	}
	idTok, _, _ := runGatepass(t, nil, "--config", cfg, "token", "--type", "id")
	raw, err := keyring.Get(broker.KeychainService, profile)
	var entry struct {
		RT string `json:"rt"`
	}
	if err != nil || json.Unmarshal([]byte(raw), &entry) != nil || entry.RT == "" {
		t.Fatalf("keychain entry: %v", err)
	}
	secrets := []string{strings.TrimSpace(access), strings.TrimSpace(idTok), entry.RT, p.ClientSecret()}

	p.FailNext("token", http.StatusBadRequest, "application/json",
		`{"error":"invalid_rapt","error_description":"reauth related error (invalid_rapt)"}`)
	refreshes := p.Stats().Refreshes
	// --min-ttl longer than the token lives: the agent must refresh, and is refused.
	// The second call is answered from the agent's sign-in-required state.
	for _, args := range [][]string{{"token", "--min-ttl", "10h"}, {"token"}} {
		out, stderr, code := runGatepass(t, nil, append([]string{"--config", cfg}, args...)...)
		if code != exitSignIn || out != "" {
			t.Errorf("%v after invalid_rapt (agent running): exit %d, stdout %q; want 3 and nothing", args, code, out)
		}
		for _, want := range []string{"sign-in required", "invalid_rapt", "reauthentication policy", "reauth related error",
			"run `gatepass --config " + app.ShellQuote(cfg) + " login --profile " + profile + "`"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v after invalid_rapt: stderr lacks %q:\n%s", args, want, stderr)
			}
		}
		if strings.Contains(stderr, "no valid sign-in") {
			t.Errorf("%v: the agent's reason was replaced by a generic one:\n%s", args, stderr)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(stderr, s) {
				t.Errorf("%v: stderr holds a token or secret:\n%s", args, stderr)
			}
		}
	}
	if n := p.Stats().Refreshes; n != refreshes {
		// FailNext answers are not counted: any counted refresh spent the token again.
		t.Errorf("refreshes %d -> %d: the refused refresh token was sent again", refreshes, n)
	}
	out, _, code := runGatepass(t, nil, "--config", cfg, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^`+profile+` +sign-in-required .*invalid_rapt`).MatchString(out) {
		t.Errorf("status via the agent after invalid_rapt: exit %d\n%s", code, out)
	}
	for _, s := range secrets {
		if s != "" && (strings.Contains(out, s) || strings.Contains(agentLog.String(), s)) {
			t.Errorf("status output or the agent log holds a token or secret")
		}
	}
}

// TestE2EAgentCA: with an agent running, `ca export` and `ca path` give the CA its
// proxy intercepts with, asked over the control socket: the keychain is not read
// (a corrupt entry stays as it is, where reading it would replace it with a new CA
// the agent does not use), and the file at `ca path` holds the agent's certificate
// even when something replaced it. Without an agent, the CA comes from the keychain
// as before.
func TestE2EAgentCA(t *testing.T) {
	cfg, listen, account, caFile := caSetup(t)
	readFile := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("read %s: %v", path, err)
		}
		return string(b)
	}

	// No agent: the CA is made on first use and kept in the keychain.
	agentCert, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || !strings.HasPrefix(agentCert, "-----BEGIN CERTIFICATE-----") || !strings.Contains(stderr, "generated a new local CA") {
		t.Fatalf("ca export without an agent: exit %d, stdout %q, stderr %s", code, agentCert, stderr)
	}
	if strings.Contains(agentCert, "PRIVATE KEY") {
		t.Fatalf("ca export printed a private key")
	}

	agentLog, stop := runAgent(t, cfg)
	waitListening(t, listen)
	if got := readFile(caFile); got != agentCert {
		t.Fatalf("the agent did not start with the stored CA\nagent log:\n%s", agentLog.String())
	}
	// A keychain entry that is not gatepass's and a CA file someone replaced: a
	// command that read the keychain would make a new CA; one that asks the agent
	// gets the agent's.
	const corrupt = `{"cert": "-----BEGIN CERT`
	if err := keyring.Set(caService, account, corrupt); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, []byte("not the agent's CA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || out != agentCert || stderr != "" {
		t.Errorf("ca export with the agent running: exit %d, the agent's CA %v, stderr %q", code, out == agentCert, stderr)
	}
	exported := filepath.Join(testDir(t), "exported.pem")
	if out, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export", "--out", exported); code != 0 || readFile(exported) != agentCert ||
		out != "" || !strings.Contains(stderr, "Wrote the gatepass CA certificate to "+exported) {
		t.Errorf("ca export --out with the agent running: exit %d, the agent's CA %v, stdout %q, stderr %q; want the file, nothing on stdout and the message on stderr",
			code, readFile(exported) == agentCert, out, stderr)
	}
	// A certificate, not a secret: readable by others as the umask allows, like the
	// file at `ca path` (a trust store's hashed directory is read by every user).
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if fi, err := os.Stat(exported); err != nil || fi.Mode().Perm() != os.FileMode(0o644&^umask) {
		t.Errorf("ca export --out: %s mode %v, %v; want %v (0644 under umask %03o)", exported, fi.Mode().Perm(), err, os.FileMode(0o644&^umask), umask)
	}
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "ca", "path")
	if code != 0 || strings.TrimSpace(out) != caFile || stderr != "" {
		t.Errorf("ca path with the agent running: exit %d, stdout %q, stderr %q; want %s", code, out, stderr, caFile)
	}
	if got := readFile(caFile); got != agentCert {
		t.Errorf("the file at ca path does not hold the agent's CA:\n%s", got)
	}
	if fi, err := os.Stat(caFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: %v, %v; want mode 0644", caFile, fi.Mode().Perm(), err)
	}
	if raw, err := keyring.Get(caService, account); err != nil || raw != corrupt {
		t.Errorf("the keychain's CA entry changed while the agent ran: %v, %.40q", err, raw)
	}
	if strings.Contains(agentLog.String(), "generated a new local CA") {
		t.Errorf("the agent made a new CA:\n%s", agentLog.String())
	}

	// A directory where the CA file goes: ca path fails (its path would not hold
	// the CA), while export still hands out the agent's CA, with a warning.
	if err := os.Remove(caFile); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(caFile, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export"); code != 0 || out != agentCert || !strings.Contains(stderr, "warning: write CA certificate "+caFile) {
		t.Errorf("ca export with the CA file blocked: exit %d, the agent's CA %v, stderr %q; want the CA and a warning", code, out == agentCert, stderr)
	}
	if out, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "path"); code != exitFailure || out != "" || !strings.Contains(stderr, caFile) {
		t.Errorf("ca path with the CA file blocked: exit %d, stdout %q, stderr %q; want exit 1 naming the file", code, out, stderr)
	}
	if err := os.RemoveAll(caFile); err != nil {
		t.Fatal(err)
	}
	// The config's gateways changed since the agent started: its CA cannot sign
	// for the new one, and export says so.
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(raw, []byte(`gateways = ["api.example.test"]`), []byte(`gateways = ["api.example.test", "new.example.test"]`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := runGatepass(t, nil, "--config", cfg, "ca", "export"); code != 0 || out != agentCert || !strings.Contains(stderr, "may not sign for new.example.test") || !strings.Contains(stderr, "restart it") {
		t.Errorf("ca export after a gateway was added: exit %d, the agent's CA %v, stderr %q; want the CA and a warning to restart the agent", code, out == agentCert, stderr)
	}
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	// The agent gone, the keychain is the CA's home again: the corrupt entry is
	// replaced, as before there was an agent to ask.
	stop()
	out, stderr, code = runGatepass(t, nil, "--config", cfg, "ca", "export")
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") || out == agentCert ||
		!strings.Contains(stderr, "generated a new local CA") || !strings.Contains(stderr, "corrupt") {
		t.Errorf("ca export after the agent stopped: exit %d, a new CA %v, stderr %s", code, out != agentCert, stderr)
	}
	if raw, err := keyring.Get(caService, account); err != nil || raw == corrupt || !strings.Contains(raw, "PRIVATE KEY") {
		t.Errorf("keychain entry after ca export without an agent: %v, %.40q", err, raw)
	}
	if path, _, code := runGatepass(t, nil, "--config", cfg, "ca", "path"); code != 0 || strings.TrimSpace(path) != caFile || readFile(caFile) != out {
		t.Errorf("ca path without an agent: exit %d, %q; the file holds the new CA %v", code, path, readFile(caFile) == out)
	}
}

// caSetup is a demo config with a gateway and a listen port of its own, the keychain
// account of its local CA (removed when the test ends) and the CA file's path.
func caSetup(t *testing.T) (cfg, listen, account, caFile string) {
	t.Helper()
	p, _, profile := demoSetup(t, demo.Options{})
	listen = freePort(t)
	cfg = demoConfig(t, p, profile, fmt.Sprintf("listen = %q", listen))
	account = newKeychainCA(broker.SystemKeychain{}, &broker.Config{Path: cfg}).account
	t.Cleanup(func() { _ = keyring.Delete(caService, account) })
	return cfg, listen, account, filepath.Join(filepath.Dir(cfg), "gatepass-ca.pem")
}
