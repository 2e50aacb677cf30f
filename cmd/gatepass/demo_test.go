package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
)

func saveDemoSignIn(t *testing.T, kc broker.Keychain, issuer string) {
	t.Helper()
	err := broker.Store{Keychain: kc}.Save(demoProfile, &broker.Entry{Version: 1, RefreshToken: "1//demo-rt", Issuer: issuer, ClientID: "gatepass-demo.apps.local", Subject: "1000001"})
	if err != nil {
		t.Fatal(err)
	}
}

func demoSignIn(kc broker.Keychain) (string, bool) {
	e, err := broker.Store{Keychain: kc}.Load(demoProfile)
	if err != nil {
		return "", false
	}
	return e.Issuer, true
}

// TestForgetStaleDemoSignIn: a "demo" sign-in whose loopback issuer is gone is
// removed, so the next demo does not open with "belongs to another issuer"; any other
// "demo" sign-in stays.
func TestForgetStaleDemoSignIn(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	current := "http://127.0.0.1:1/current"
	tests := map[string]struct {
		issuer string
		kept   bool
	}{
		"an earlier demo, gone":          {"http://" + freePort(t), false},
		"an earlier demo, still serving": {"http://" + live.Addr().String(), true},
		"this demo's own":                {current, true},
		"a real issuer named demo":       {"https://accounts.google.com", true},
		"a loopback https issuer":        {"https://" + freePort(t), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &broker.FakeKeychain{}
			saveDemoSignIn(t, kc, tc.issuer)
			forgetStaleDemoSignIn(kc, current)
			if _, kept := demoSignIn(kc); kept != tc.kept {
				t.Errorf("sign-in of %s kept = %v, want %v", tc.issuer, kept, tc.kept)
			}
		})
	}
}

// TestDemoForget: at its end a demo removes its own sign-in, its config's local CA
// and the directory it made, and leaves another issuer's "demo" sign-in alone.
func TestDemoForget(t *testing.T) {
	for _, own := range []bool{true, false} {
		dir := t.TempDir()
		d, err := startDemo(context.Background(), dir, freePort(t), demo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		kc := &broker.FakeKeychain{}
		issuer := "https://idp.example"
		if own {
			issuer = d.Provider.Issuer()
		}
		saveDemoSignIn(t, kc, issuer)
		ca := newKeychainCA(kc, d.Config)
		if err := kc.Set(caService, ca.account, `{"cert":"x","key":"y"}`); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d.forget(kc, dir)
		if _, kept := demoSignIn(kc); kept == own {
			t.Errorf("own=%v: sign-in of %s kept = %v", own, issuer, kept)
		}
		if _, err := kc.Get(caService, ca.account); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("own=%v: the demo config's CA is still in the keychain (%v)", own, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "config.toml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("own=%v: the demo's directory is still there (%v)", own, err)
		}
	}
}

// TestE2EDemoCommand: `gatepass demo` prints its instructions on stderr (stdout
// carries data only), with a config that works: status through it answers.
func TestE2EDemoCommand(t *testing.T) {
	requireKeychain(t)
	dir := filepath.Join(testDir(t), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatepassBin, "demo", "--dir", dir, "--listen", freePort(t))
	cmd.Env = testEnv(t)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	cfg := filepath.Join(dir, "config.toml")
	want := "export GATEPASS_CONFIG=" + cfg
	for !strings.Contains(stderr.String(), want) {
		if ctx.Err() != nil {
			t.Fatalf("no %q on stderr:\n%s", want, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, _, code := runGatepass(t, nil, "--config", cfg, "status"); code != 0 || !strings.Contains(out, "signed-out") {
		t.Errorf("status on the demo's config: exit %d\n%s", code, out)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo after Ctrl-C: %v\n%s", err, stderr.String())
	}
	if s := stdout.String(); s != "" {
		t.Errorf("demo wrote to stdout: %q", s)
	}
}
