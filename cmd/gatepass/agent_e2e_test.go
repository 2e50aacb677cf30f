package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
)

// startAgent starts `gatepass --config cfg proxy args…` and returns its output;
// the agent is stopped (SIGINT) and waited for when the test ends.
func startAgent(t *testing.T, cfg string, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, gatepassBin, append([]string{"--config", cfg, "proxy"}, args...)...)
	cmd.Env = testEnv(t)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		cancel()
	})
	return out
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
