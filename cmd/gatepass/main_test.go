package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatepassBin is the real binary, built once in TestMain; end-to-end tests
// run it as a subprocess, as a user would.
var gatepassBin string

var (
	browsersMu sync.Mutex
	browsers   = map[string]func(ctx context.Context, authURL string) error{}
)

// registerBrowser names a scripted browser that browserCommand can start.
// Call it from an init function so the re-executed test binary has it too.
func registerBrowser(name string, fn func(ctx context.Context, authURL string) error) {
	browsersMu.Lock()
	defer browsersMu.Unlock()
	browsers[name] = fn
}

// browserCommand returns a --browser-command value that re-executes this
// test binary as the scripted browser `name`; gatepass appends the URL.
func browserCommand(name string) string {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return exe + " browse:" + name
}

func TestMain(m *testing.M) {
	// Re-executed as a scripted browser: `<test binary> browse:NAME URL`.
	if len(os.Args) == 3 && strings.HasPrefix(os.Args[1], "browse:") {
		os.Exit(runBrowser(strings.TrimPrefix(os.Args[1], "browse:"), os.Args[2]))
	}
	dir, err := os.MkdirTemp("", "gatepass-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatepassBin = filepath.Join(dir, "gatepass")
	// no_emoji: the window shows no emoji; Fyne then skips its 4 MB emoji font (bench/README.md, Desktop app).
	build := exec.Command("go", "build", "-race", "-tags", "no_emoji", "-o", gatepassBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gatepass:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func runBrowser(name, url string) int {
	browsersMu.Lock()
	fn := browsers[name]
	browsersMu.Unlock()
	logf := func(format string, a ...any) {
		if p := os.Getenv("GATEPASS_TEST_BROWSER_LOG"); p != "" {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				fmt.Fprintf(f, format+"\n", a...)
				_ = f.Close()
			}
		}
	}
	if fn == nil {
		logf("no scripted browser %q", name)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := fn(ctx, url); err != nil {
		logf("browser %s: %v", name, err)
		return 1
	}
	logf("browser %s: ok", name)
	return 0
}

// requireKeychain fails the test in the real test run (GATEPASS_REAL_KEYRING
// set by scripts/with-desktop) and skips it in a bare `go test`, where no
// Secret Service is running.
func requireKeychain(t *testing.T) {
	t.Helper()
	if os.Getenv("GATEPASS_REAL_KEYRING") == "" {
		t.Skip("needs the real Secret Service: run under scripts/with-desktop (scripts/test does)")
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Fatal("GATEPASS_REAL_KEYRING is set but there is no D-Bus session bus")
	}
}

// runGatepass runs the binary with args and the test environment plus env.
func runGatepass(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatepassBin, args...)
	cmd.Env = append(testEnv(t), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		// Errorf, not Fatalf: callers may run this from several goroutines.
		t.Errorf("run gatepass %v: %v", args, err)
		code = -1
	}
	return out.String(), errb.String(), code
}

// testEnv is the process environment minus anything that could steer
// gatepass elsewhere, with a private cache dir for lock files and a log
// file for the scripted browser.
func testEnv(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GATEPASS_CONFIG", "BROWSER", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "XDG_CACHE_HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"XDG_CACHE_HOME="+filepath.Join(testDir(t), "cache"),
		"GATEPASS_TEST_BROWSER_LOG="+filepath.Join(testDir(t), "browser.log"))
}

var (
	testDirsMu sync.Mutex
	testDirs   = map[*testing.T]string{}
)

// testDir is one temporary directory per test, shared by the helpers.
func testDir(t *testing.T) string {
	testDirsMu.Lock()
	defer testDirsMu.Unlock()
	if d, ok := testDirs[t]; ok {
		return d
	}
	d := t.TempDir()
	testDirs[t] = d
	t.Cleanup(func() {
		testDirsMu.Lock()
		defer testDirsMu.Unlock()
		delete(testDirs, t)
	})
	return d
}

// browserLog returns what the scripted browser logged, for failure messages.
func browserLog(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(testDir(t), "browser.log"))
	return string(b)
}

// writeConfig writes a config file into the test's directory. A config that sets no
// `listen` gets a free loopback port of its own: with the default (127.0.0.1:8787), the
// developer's own gatepass, running while they test, would answer this test's status,
// doctor and ca commands for a config it does not know.
func writeConfig(t *testing.T, toml string) string {
	t.Helper()
	if !topLevelListen.MatchString(toml) {
		toml = fmt.Sprintf("listen = %q\n", freePort(t)) + toml
	}
	f, err := os.CreateTemp(testDir(t), "config-*.toml")
	if err == nil {
		_, err = f.WriteString(toml)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// topLevelListen finds a `listen` key; the tests put it before any table.
var topLevelListen = regexp.MustCompile(`(?m)^\s*listen\s*=`)

// uniqueProfile returns a profile name no other test (or earlier run on
// the same keyring) uses.
func uniqueProfile(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
