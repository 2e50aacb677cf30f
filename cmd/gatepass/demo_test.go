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

// TestDemoDirKeepsRealConfig: `demo --dir DIR` refuses (exit 2, naming the file and
// what to do) to overwrite a DIR/config.toml that an earlier demo did not write, and
// leaves it as it was; an earlier demo's config there is replaced.
func TestDemoDirKeepsRealConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	real := "[profiles.work]\nissuer = \"https://accounts.google.com\"\nclient_id = \"123.apps.googleusercontent.com\"\nclient_secret = \"GOCSPX-real\"\n"
	if err := os.WriteFile(path, []byte(real), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a demo runs until cancelled
	defer cancel()
	code := run(ctx, []string{"demo", "--dir", dir, "--listen", freePort(t)}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), path) || !strings.Contains(errb.String(), "--dir") {
		t.Errorf("demo --dir over a real config: exit %d, stderr %q; want %d naming %s and --dir", code, errb.String(), exitUsage, path)
	}
	if _, err := startDemo(context.Background(), dir, freePort(t), demo.Options{}); exitCode(err) != exitUsage {
		t.Errorf("startDemo over a real config: %v, want a usage error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != real {
		t.Errorf("the real config was changed:\n%s", b)
	}

	// An earlier demo's config (the demo leaves it in a --dir) is replaced.
	dir = t.TempDir()
	first, err := startDemo(context.Background(), dir, freePort(t), demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	if first.Provider.ClientID() != demo.DefaultClientID {
		t.Errorf("demo client ID %q, want demo.DefaultClientID %q", first.Provider.ClientID(), demo.DefaultClientID)
	}
	second, err := startDemo(context.Background(), dir, freePort(t), demo.Options{})
	if err != nil {
		t.Fatalf("startDemo over an earlier demo's config: %v", err)
	}
	defer second.Close()
	if second.Config.Profiles[0].Issuer != second.Provider.Issuer() {
		t.Errorf("the config names issuer %s, want the new demo's %s", second.Config.Profiles[0].Issuer, second.Provider.Issuer())
	}
}

// TestDemoRejectsConfigAndProfile: --config and --profile do nothing for demo (it
// writes its own config with its own profile), so they are usage errors that say
// what to use instead, before or after the command name.
func TestDemoRejectsConfigAndProfile(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"--config after":  {[]string{"demo", "--config", filepath.Join(t.TempDir(), "x.toml")}, "--dir"},
		"--config before": {[]string{"--config", filepath.Join(t.TempDir(), "x.toml"), "demo"}, "--dir"},
		"--profile":       {[]string{"demo", "--profile", "work"}, `"demo"`},
	}
	for name, tc := range tests {
		var out, errb strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := run(ctx, tc.args, &out, &errb)
		cancel()
		if code != exitUsage || !strings.Contains(errb.String(), "does not apply to demo") || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d, a usage error that says %q", name, code, errb.String(), exitUsage, tc.want)
		}
	}
}
