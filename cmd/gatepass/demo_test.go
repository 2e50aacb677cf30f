package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/zalando/go-keyring"
)

func saveDemoSignIn(t *testing.T, kc broker.Keychain, profile, issuer string) {
	t.Helper()
	err := broker.Store{Keychain: kc}.Save(profile, &broker.Entry{Version: 1, RefreshToken: "1//demo-rt", Issuer: issuer, ClientID: "gatepass-demo.apps.local", Subject: "1000001"})
	if err != nil {
		t.Fatal(err)
	}
}

func demoSignIn(kc broker.Keychain, profile string) (string, bool) {
	e, err := broker.Store{Keychain: kc}.Load(profile)
	if err != nil {
		return "", false
	}
	return e.Issuer, true
}

// TestClaimDemoNameForgetsStaleSignIn: a demo profile's sign-in whose loopback issuer is gone
// is removed, so the next demo does not open with "belongs to another issuer"; any
// other sign-in of that name stays.
func TestClaimDemoNameForgetsStaleSignIn(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	tests := map[string]struct {
		issuer string
		kept   bool
	}{
		"an earlier demo, gone":          {"http://" + freePort(t), false},
		"an earlier demo, still serving": {"http://" + live.Addr().String(), true},
		"a real issuer named demo":       {"https://accounts.google.com", true},
		"a loopback https issuer":        {"https://" + freePort(t), true},
		"a local issuer of the user's":   {"http://" + freePort(t) + "/realms/dev", true}, // another client ID, below
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &broker.FakeKeychain{}
			saveDemoSignIn(t, kc, demoProfile, tc.issuer)
			if strings.Contains(tc.issuer, "/realms/") {
				_ = broker.Store{Keychain: kc}.Save(demoProfile, &broker.Entry{Version: 1, RefreshToken: "1//rt", Issuer: tc.issuer, ClientID: "my-app", Subject: "1"})
			}
			_, _ = claimDemoName(kc, demoProfile)
			if _, kept := demoSignIn(kc, demoProfile); kept != tc.kept {
				t.Errorf("sign-in of %s kept = %v, want %v", tc.issuer, kept, tc.kept)
			}
		})
	}
}

// TestDemoProfileFor: a demo takes "demo" unless a demo still running (or a real
// issuer's profile) holds that sign-in; then "demo-2", and so on, so two demos at once
// do not overwrite one sign-in. Stale sign-ins on the way are removed, and the names
// it gives are demo configs' (isDemoConfig).
func TestDemoProfileFor(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	running, gone, real := "http://"+live.Addr().String(), "http://"+freePort(t), "https://accounts.google.com"
	tests := map[string]struct {
		held []string // the issuers of "demo", "demo-2", … ("" for none)
		want string
		left []string // the names whose sign-in is still there afterwards
	}{
		"none":                           {nil, "demo", nil},
		"a stale demo":                   {[]string{gone}, "demo", nil},
		"a running demo":                 {[]string{running}, "demo-2", []string{"demo"}},
		"a real issuer's demo profile":   {[]string{real}, "demo-2", []string{"demo"}},
		"two running, a stale third":     {[]string{running, running, gone}, "demo-3", []string{"demo", "demo-2"}},
		"a running demo, a gap, a third": {[]string{running, "", running}, "demo-2", []string{"demo", "demo-3"}},
	}
	locks := t.TempDir()
	defer func(old func() string) { demoLockDir = old }(demoLockDir)
	demoLockDir = func() string { return locks }
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &broker.FakeKeychain{}
			for i, iss := range tc.held {
				if iss != "" {
					saveDemoSignIn(t, kc, demoProfileName(i+1), iss)
				}
			}
			got, release := demoProfileFor(kc)
			release()
			if got != tc.want {
				t.Errorf("demoProfileFor = %q, want %q", got, tc.want)
			}
			var left []string
			for n := 1; n <= maxDemoProfiles; n++ {
				if _, ok := demoSignIn(kc, demoProfileName(n)); ok {
					left = append(left, demoProfileName(n))
				}
			}
			if strings.Join(left, ",") != strings.Join(tc.left, ",") {
				t.Errorf("sign-ins left %v, want %v", left, tc.left)
			}
		})
	}
	// A demo that runs without a sign-in holds its name by its lock: the next takes
	// demo-2 though the keychain has no "demo" entry, and "demo" again once it ends.
	kc := &broker.FakeKeychain{}
	first, releaseFirst := demoProfileFor(kc)
	second, releaseSecond := demoProfileFor(kc)
	releaseSecond()
	releaseFirst()
	third, releaseThird := demoProfileFor(kc)
	releaseThird()
	if first != "demo" || second != "demo-2" || third != "demo" {
		t.Errorf("two demos without sign-ins, then one after both ended: %q, %q, %q; want demo, demo-2, demo", first, second, third)
	}
	// A keychain that cannot be read: "demo", and the sign-in will say what is wrong.
	kc = &broker.FakeKeychain{}
	kc.FailNext("get", errors.New("keychain is locked"))
	if got, release := demoProfileFor(kc); got != "demo" {
		t.Errorf("demoProfileFor with a locked keychain = %q, want demo", got)
	} else {
		release()
	}
	// The next demo's config (in a --dir an earlier one used) is still a demo's.
	dir := t.TempDir()
	d, err := startDemo(context.Background(), dir, freePort(t), "demo-2", demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if p := d.Config.Profiles[0]; p.Name != "demo-2" || d.Config.DefaultProfile != "demo-2" || !isDemoConfig(d.ConfigPath) {
		t.Errorf("config of demo-2: profile %q, default %q, a demo's config: %v", p.Name, d.Config.DefaultProfile, isDemoConfig(d.ConfigPath))
	}
}

// TestDemoForget: at its end a demo removes its own sign-in, its config's local CA
// and the directory it made, and leaves another issuer's "demo" sign-in alone.
func TestDemoForget(t *testing.T) {
	for _, own := range []bool{true, false} {
		dir := t.TempDir()
		d, err := startDemo(context.Background(), dir, freePort(t), demoProfile, demo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		kc := &broker.FakeKeychain{}
		issuer := "https://idp.example"
		if own {
			issuer = d.Provider.Issuer()
		}
		saveDemoSignIn(t, kc, demoProfile, issuer)
		ca := newKeychainCA(kc, d.Config)
		if err := kc.Set(caService, ca.account, `{"cert":"x","key":"y"}`); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d.forget(kc, dir)
		if _, kept := demoSignIn(kc, demoProfile); kept == own {
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

// demoCmd starts `gatepass demo --dir dir` and waits for its instructions; the
// process is killed when the test ends unless the test stopped it first.
func demoCmd(t *testing.T, dir string) (cmd *exec.Cmd, stdout, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd = exec.CommandContext(ctx, gatepassBin, "demo", "--dir", dir, "--listen", freePort(t))
	cmd.Env = testEnv(t)
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	want := "export GATEPASS_CONFIG=" + app.ShellQuote(filepath.Join(dir, "config.toml")) // a line to paste into a shell
	for !strings.Contains(stderr.String(), want) {
		if ctx.Err() != nil {
			t.Fatalf("no %q on stderr:\n%s", want, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, stdout, stderr
}

// TestE2EDemoCommand: `gatepass demo` prints its instructions on stderr (stdout
// carries data only), with a config that works: status through it answers.
func TestE2EDemoCommand(t *testing.T) {
	requireKeychain(t)
	dir := filepath.Join(testDir(t), "demo")
	cmd, stdout, stderr := demoCmd(t, dir)
	cfg := filepath.Join(dir, "config.toml")
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
	// A --dir the user gave is theirs: the demo removes only a directory it made, and
	// leaves its config there for the next demo (README: "the demo leaves it in a --dir").
	if _, err := os.Stat(cfg); err != nil {
		t.Errorf("after the demo stopped, its config in --dir %s is gone: %v", dir, err)
	}
}

// TestE2ETwoDemos: a second demo while one runs (signed in or not) takes profile "demo-2"
// and leaves the first one's sign-in alone (they shared "demo": the second opened
// with "the stored sign-in belongs to another issuer"); each removes only its own
// sign-in when it stops.
func TestE2ETwoDemos(t *testing.T) {
	requireKeychain(t)
	_ = keyring.Delete("gatepass", "demo")
	_ = keyring.Delete("gatepass", "demo-2")
	t.Cleanup(func() { _ = keyring.Delete("gatepass", "demo"); _ = keyring.Delete("gatepass", "demo-2") })
	dir1, dir2 := filepath.Join(testDir(t), "demo1"), filepath.Join(testDir(t), "demo two") // a space: the export line quotes it
	first, _, _ := demoCmd(t, dir1)
	cfg1, cfg2 := filepath.Join(dir1, "config.toml"), filepath.Join(dir2, "config.toml")
	second, _, _ := demoCmd(t, dir2) // the first has not signed in yet: its name is held all the same
	login(t, cfg1)
	out, _, code := runGatepass(t, nil, "--config", cfg2, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^demo-2 +signed-out `).MatchString(out) {
		t.Errorf("status of the second demo: exit %d, want its profile demo-2 signed out\n%s", code, out)
	}
	signedIn := func(when string) {
		t.Helper()
		if out, _, code := runGatepass(t, nil, "--config", cfg1, "status"); code != 0 || !regexp.MustCompile(`(?m)^demo +signed-in `).MatchString(out) {
			t.Errorf("the first demo's sign-in %s: exit %d\n%s", when, code, out)
		}
	}
	signedIn("beside the second demo")
	login(t, cfg2)
	_ = second.Process.Signal(os.Interrupt)
	_ = second.Wait()
	signedIn("after the second demo stopped")
	if _, err := keyring.Get("gatepass", "demo-2"); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("the second demo's sign-in after it stopped: %v, want it removed", err)
	}
	_ = first.Process.Signal(os.Interrupt)
	_ = first.Wait()
	if _, err := keyring.Get("gatepass", "demo"); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("the first demo's sign-in after it stopped: %v, want it removed", err)
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
	if _, err := startDemo(context.Background(), dir, freePort(t), demoProfile, demo.Options{}); exitCode(err) != exitUsage {
		t.Errorf("startDemo over a real config: %v, want a usage error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != real {
		t.Errorf("the real config was changed:\n%s", b)
	}

	// An earlier demo's config (the demo leaves it in a --dir) is replaced.
	dir = t.TempDir()
	first, err := startDemo(context.Background(), dir, freePort(t), demoProfile, demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	if first.Provider.ClientID() != demo.DefaultClientID {
		t.Errorf("demo client ID %q, want demo.DefaultClientID %q", first.Provider.ClientID(), demo.DefaultClientID)
	}
	second, err := startDemo(context.Background(), dir, freePort(t), demoProfile, demo.Options{})
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
