package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"
	keyring "github.com/zalando/go-keyring"
)

// The tests named TestKeychainReal* talk to the real Secret Service. They
// run when GATEPASS_REAL_KEYRING=1 (scripts/with-desktop sets it, with a
// private D-Bus session and an unlocked gnome-keyring) and then FAIL if the
// Secret Service or the tools they need are missing.

const realKeyringEnv = "GATEPASS_REAL_KEYRING"

// testService keeps raw round-trip entries apart from real gatepass entries.
const testService = "gatepass-test"

func realKeyring() bool { return os.Getenv(realKeyringEnv) == "1" }

// requireRealKeyring skips unless GATEPASS_REAL_KEYRING=1, and fails if it is
// set but the Secret Service is not usable.
func requireRealKeyring(t *testing.T) {
	t.Helper()
	if !realKeyring() {
		t.Skipf("set %s=1 (scripts/with-desktop does) to test against the real Secret Service", realKeyringEnv)
	}
	_, err := SystemKeychain{Timeout: 5 * time.Second}.Get(testService, "probe-"+uniqueSuffix(t))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s=1 but the Secret Service is not usable: %v", realKeyringEnv, err)
	}
}

// requireTools fails in real-keyring mode (and skips otherwise) when a
// program a scenario needs is missing.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if realKeyring() {
				t.Fatalf("%s=1 but %s is not installed: %v", realKeyringEnv, n, err)
			}
			t.Skipf("%s not installed", n)
		}
	}
}

func uniqueSuffix(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// uniqueAccount returns an account name no other test uses and deletes its
// entry (under both services) when the test ends.
func uniqueAccount(t *testing.T) string {
	a := "test-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + uniqueSuffix(t)
	t.Cleanup(func() {
		k := SystemKeychain{Timeout: 5 * time.Second}
		_ = k.Delete(testService, a)
		_ = k.Delete(KeychainService, a)
	})
	return a
}

// ---- unit tests: no Secret Service needed ----

// fakeBackend is a keyringBackend returning a fixed error, or blocking until
// release is closed.
type fakeBackend struct {
	err     error
	val     string
	release chan struct{}
}

func (f *fakeBackend) wait() {
	if f.release != nil {
		<-f.release
	}
}
func (f *fakeBackend) Get(s, u string) (string, error) { f.wait(); return f.val, f.err }
func (f *fakeBackend) Set(s, u, p string) error        { f.wait(); return f.err }
func (f *fakeBackend) Delete(s, u string) error        { f.wait(); return f.err }

func TestKeychainClassify(t *testing.T) {
	// The inputs are the errors go-keyring v0.2.8 returned on Debian 12 in
	// each situation (see classifyKeychainError), rebuilt by value.
	tests := map[string]struct {
		err  error
		want KeychainErrorKind // ignored when wantNotFound
		nf   bool
	}{
		"go-keyring not found":  {err: keyring.ErrNotFound, nf: true},
		"wrapped not found":     {err: fmt.Errorf("x: %w", keyring.ErrNotFound), nf: true},
		"data too big":          {err: keyring.ErrSetDataTooBig, want: KeychainTooBig},
		"unsupported platform":  {err: keyring.ErrUnsupportedPlatform, want: KeychainUnavailable},
		"no session bus":        {err: errNoSessionBus, want: KeychainUnavailable},
		"bus socket missing":    {err: &net.OpError{Op: "dial", Net: "unix", Err: os.ErrNotExist}, want: KeychainUnavailable},
		"no secret service":     {err: dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Body: []any{"The name org.freedesktop.secrets was not provided by any .service files"}}, want: KeychainUnavailable},
		"no secret service ptr": {err: &dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown"}, want: KeychainUnavailable},
		"activation failed":     {err: dbus.Error{Name: "org.freedesktop.DBus.Error.Spawn.ChildExited"}, want: KeychainUnavailable},
		"is locked":             {err: dbus.Error{Name: "org.freedesktop.Secret.Error.IsLocked"}, want: KeychainLocked},
		"no reply":              {err: dbus.Error{Name: "org.freedesktop.DBus.Error.NoReply"}, want: KeychainTimeout},
		"no default collection": {err: errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'"), want: KeychainLocked},
		"prompt dismissed":      {err: errors.New("failed to unlock correct collection '/org/freedesktop/secrets/collection/login'"), want: KeychainLocked},
		"godbus address":        {err: errors.New("dbus: couldn't determine address of session bus"), want: KeychainUnavailable},
		"other dbus error":      {err: dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}, want: KeychainOther},
		"anything else":         {err: errors.New("weird"), want: KeychainOther},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := classifyKeychainError("read", "work", tc.err)
			if tc.nf {
				if got != ErrNotFound {
					t.Fatalf("got %v, want ErrNotFound", got)
				}
				return
			}
			var ke *KeychainError
			if !errors.As(got, &ke) {
				t.Fatalf("got %T %v, want *KeychainError", got, got)
			}
			if ke.Kind != tc.want || ke.Op != "read" || ke.Account != "work" {
				t.Errorf("got kind %v op %q account %q, want %v read work", ke.Kind, ke.Op, ke.Account, tc.want)
			}
			if !reflect.DeepEqual(ke.Err, tc.err) {
				t.Errorf("classified error wraps %#v, want the cause %#v", ke.Err, tc.err)
			}
		})
	}
}

func TestKeychainErrorMessages(t *testing.T) {
	tests := map[string]struct {
		kind KeychainErrorKind
		goos string
		want string
	}{
		"linux unavailable":           {KeychainUnavailable, "linux", "sudo apt install gnome-keyring"},
		"linux unavailable, headless": {KeychainUnavailable, "linux", "gnome-keyring-daemon --unlock"},
		"mac unavailable":             {KeychainUnavailable, "darwin", "macOS desktop session"},
		"windows unavailable":         {KeychainUnavailable, "windows", "Credential Manager"},
		"linux locked":                {KeychainLocked, "linux", "unlock your login keyring and retry"},
		"mac locked":                  {KeychainLocked, "darwin", "security unlock-keychain"},
		"timeout":                     {KeychainTimeout, "linux", "unlock prompt may be waiting"},
		"too big":                     {KeychainTooBig, "linux", "fewer scopes"},
		"other":                       {KeychainOther, "linux", "gatepass doctor"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if h := kindHint(tc.kind, tc.goos); !strings.Contains(h, tc.want) {
				t.Errorf("hint %q lacks %q", h, tc.want)
			}
		})
	}
	// Error() on this OS: op, account, reason, cause and hint; one line.
	secret := "1//0SECRET-refresh-token"
	k := SystemKeychain{backend: &fakeBackend{err: errors.New("failed to unlock correct collection '/x'")}}
	err := k.Set(KeychainService, "work", secret)
	msg := err.Error()
	for _, want := range []string{"write", `"work"`, "locked", "failed to unlock", kindHint(KeychainLocked, runtime.GOOS)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "SECRET") || strings.Contains(msg, "\n") {
		t.Errorf("message leaks the secret or spans lines: %q", msg)
	}
}

func TestKeychainBackendPassThrough(t *testing.T) {
	k := SystemKeychain{backend: &fakeBackend{val: "v1"}}
	if v, err := k.Get("s", "a"); v != "v1" || err != nil {
		t.Errorf("Get = %q, %v", v, err)
	}
	k = SystemKeychain{backend: &fakeBackend{err: keyring.ErrNotFound}}
	if _, err := k.Get("s", "a"); err != ErrNotFound {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	if err := k.Delete("s", "a"); err != ErrNotFound {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
	k = SystemKeychain{backend: &fakeBackend{err: keyring.ErrSetDataTooBig}}
	var ke *KeychainError
	if err := k.Set("s", "a", "x"); !errors.As(err, &ke) || ke.Kind != KeychainTooBig {
		t.Errorf("Set = %v, want KeychainTooBig", err)
	}
}

func TestKeychainTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	k := SystemKeychain{Timeout: 100 * time.Millisecond, backend: &fakeBackend{release: release, val: "late"}}
	ops := map[string]func() error{
		"get":    func() error { _, err := k.Get("s", "work"); return err },
		"set":    func() error { return k.Set("s", "work", "x") },
		"delete": func() error { return k.Delete("s", "work") },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := op()
			el := time.Since(start)
			var ke *KeychainError
			if !errors.As(err, &ke) || ke.Kind != KeychainTimeout {
				t.Fatalf("err = %v, want KeychainTimeout", err)
			}
			if el < 100*time.Millisecond || el > 2*time.Second {
				t.Errorf("returned after %v, want about the 100ms timeout", el)
			}
			if !strings.Contains(err.Error(), "100ms") {
				t.Errorf("message %q does not say how long it waited", err)
			}
		})
	}
}

func TestKeychainCheckSessionBus(t *testing.T) {
	tests := map[string]struct {
		goos  string
		env   map[string]string
		files []string
		ok    bool
	}{
		"address set":                {"linux", map[string]string{"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}, nil, true},
		"autolaunch only":            {"linux", map[string]string{"DBUS_SESSION_BUS_ADDRESS": "autolaunch:"}, nil, false},
		"nothing":                    {"linux", nil, nil, false},
		"systemd user bus":           {"linux", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, []string{"/run/user/1000/bus"}, true},
		"default runtime dir by uid": {"linux", nil, []string{"/run/user/1000/bus"}, true},
		"runtime dir without bus":    {"freebsd", map[string]string{"XDG_RUNTIME_DIR": "/tmp/r"}, []string{"/run/user/1000/bus"}, false},
		"macOS needs no bus":         {"darwin", nil, nil, true},
		"windows needs no bus":       {"windows", nil, nil, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			exists := func(p string) bool { return contains(tc.files, p) }
			err := checkSessionBus(tc.goos, func(k string) string { return tc.env[k] }, 1000, exists)
			if (err == nil) != tc.ok {
				t.Errorf("checkSessionBus = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ---- child-process scenarios ----

const childEnv = "GATEPASS_KEYCHAIN_CHILD"

// TestKeychainHelperProcess is not a test: the scenarios below re-execute
// the test binary with GATEPASS_KEYCHAIN_CHILD set to run one keychain check
// inside an environment they built (no bus, a private bus, a locked keyring)
// and report the outcome on stdout.
func TestKeychainHelperProcess(t *testing.T) {
	scenario := os.Getenv(childEnv)
	if scenario == "" {
		return
	}
	timeout, _ := time.ParseDuration(os.Getenv("GATEPASS_KEYCHAIN_CHILD_TIMEOUT"))
	k := SystemKeychain{Timeout: timeout}
	const acct = "child"
	var err error
	switch scenario {
	case "get":
		_, err = k.Get(testService, acct)
	case "lock-then-get":
		if err := waitForSecretService(5 * time.Second); err != nil {
			fmt.Printf("KEYCHAIN-SETUP-FAILED %v\n", err)
			return
		}
		if err := k.Set(testService, acct, "value-1"); err != nil {
			fmt.Printf("KEYCHAIN-SETUP-FAILED set: %v\n", err)
			return
		}
		if err := lockDefaultCollection(); err != nil {
			fmt.Printf("KEYCHAIN-SETUP-FAILED lock: %v\n", err)
			return
		}
		start := time.Now()
		_, err = k.Get(testService, acct)
		fmt.Printf("KEYCHAIN-ELAPSED %d\n", time.Since(start).Milliseconds())
	default:
		fmt.Printf("KEYCHAIN-SETUP-FAILED unknown scenario %q\n", scenario)
		return
	}
	fmt.Printf("KEYCHAIN-RESULT %s\nKEYCHAIN-MSG %s\n", resultKind(err), errString(err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

func resultKind(err error) string {
	var ke *KeychainError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "notfound"
	case errors.As(err, &ke):
		return ke.Kind.String()
	}
	return "unclassified"
}

func waitForSecretService(d time.Duration) error {
	conn, err := dbus.SessionBus()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	for {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.secrets").Store(&has); err != nil {
			return err
		}
		if has {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("org.freedesktop.secrets did not appear on the bus")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockDefaultCollection locks the default keyring through the Secret Service
// API (gnome-keyring locks without a prompt).
func lockDefaultCollection() error {
	conn, err := dbus.SessionBus()
	if err != nil {
		return err
	}
	svc := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets")
	var coll dbus.ObjectPath
	if err := svc.Call("org.freedesktop.Secret.Service.ReadAlias", 0, "default").Store(&coll); err != nil {
		return fmt.Errorf("read alias: %w", err)
	}
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	if err := svc.Call("org.freedesktop.Secret.Service.Lock", 0, []dbus.ObjectPath{coll}).Store(&locked, &prompt); err != nil {
		return fmt.Errorf("lock %s: %w", coll, err)
	}
	if len(locked) != 1 {
		return fmt.Errorf("lock %s: locked %v, prompt %s", coll, locked, prompt)
	}
	return nil
}

type childResult struct {
	kind, msg string
	elapsed   time.Duration // of the checked call, when reported
	output    string
}

// childEnviron is os.Environ without the session, display and home settings,
// plus the given ones.
func childEnviron(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "DBUS_SESSION_BUS_ADDRESS", k == "DISPLAY", k == "HOME", k == "GNOME_KEYRING_CONTROL",
			k == "SSH_AUTH_SOCK", k == childEnv, strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "GATEPASS_KEYCHAIN_CHILD"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// freshHome makes a short-path throwaway HOME with XDG dirs under it (the
// keyring's control socket lives there and unix socket paths are short).
func freshHome(t *testing.T) []string {
	t.Helper()
	home, err := os.MkdirTemp("", "gpkc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	run := filepath.Join(home, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	return []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + run,
		"XDG_DATA_HOME=" + filepath.Join(home, ".local/share"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
}

// runChild runs prefix + the test binary in the helper-process mode.
func runChild(t *testing.T, prefix []string, env []string, scenario string, timeout time.Duration) childResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append([]string{}, prefix...), os.Args[0], "-test.run=^TestKeychainHelperProcess$", "-test.count=1", "-test.timeout=50s")
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(env, childEnv+"="+scenario, "GATEPASS_KEYCHAIN_CHILD_TIMEOUT="+timeout.String())
	out, err := cmd.CombinedOutput()
	r := childResult{output: string(out)}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "KEYCHAIN-RESULT "):
			r.kind = strings.TrimPrefix(line, "KEYCHAIN-RESULT ")
		case strings.HasPrefix(line, "KEYCHAIN-MSG "):
			r.msg = strings.TrimPrefix(line, "KEYCHAIN-MSG ")
		case strings.HasPrefix(line, "KEYCHAIN-ELAPSED "):
			ms, _ := strconv.Atoi(strings.TrimPrefix(line, "KEYCHAIN-ELAPSED "))
			r.elapsed = time.Duration(ms) * time.Millisecond
		}
	}
	if r.kind == "" {
		t.Fatalf("child %q reported no result (exit: %v); output:\n%s", scenario, err, out)
	}
	return r
}

// noSecretsBusConfig writes a session bus configuration without service
// directories: nothing can be D-Bus-activated, so no Secret Service (and no
// prompter) exists unless a test starts one.
func noSecretsBusConfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "session.conf")
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// unlockedKeyringShell starts an unlocked gnome-keyring in a fresh HOME, then
// execs its arguments.
var unlockedKeyringShell = []string{"sh", "-c",
	`eval "$(printf pass | gnome-keyring-daemon --unlock --components=secrets)" || exit 1; export GNOME_KEYRING_CONTROL; exec "$@"`,
	"sh"}

func wantKind(t *testing.T, r childResult, kind string, hint string) {
	t.Helper()
	if r.kind != kind {
		t.Fatalf("result %q, want %q; message: %s\noutput:\n%s", r.kind, kind, r.msg, r.output)
	}
	if hint != "" && !strings.Contains(r.msg, hint) {
		t.Errorf("message %q lacks the hint %q", r.msg, hint)
	}
}

// TestKeychainNoSessionBus: with no D-Bus session at all the keychain says
// so at once, and does not autolaunch a bus daemon (which godbus would do).
func TestKeychainNoSessionBus(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Secret Service scenario")
	}
	env := childEnviron(freshHome(t)...)
	start := time.Now()
	r := runChild(t, nil, env, "get", 5*time.Second)
	wantKind(t, r, "unavailable", "gnome-keyring-daemon --unlock")
	if !strings.Contains(r.msg, "DBUS_SESSION_BUS_ADDRESS") {
		t.Errorf("message %q does not say the session bus is missing", r.msg)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v", el)
	}
}

// TestKeychainBusAddressNowhere: DBUS_SESSION_BUS_ADDRESS points at no socket.
func TestKeychainBusAddressNowhere(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Secret Service scenario")
	}
	home := freshHome(t)
	env := childEnviron(append(home, "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "no-bus"))...)
	r := runChild(t, nil, env, "get", 5*time.Second)
	wantKind(t, r, "unavailable", "sudo apt install gnome-keyring")
}

// TestKeychainRealNoSecretService: a working session bus on which nothing
// provides org.freedesktop.secrets.
func TestKeychainRealNoSecretService(t *testing.T) {
	requireTools(t, "dbus-run-session")
	if !realKeyring() {
		t.Skipf("set %s=1", realKeyringEnv)
	}
	conf := noSecretsBusConfig(t)
	r := runChild(t, []string{"dbus-run-session", "--config-file=" + conf, "--"}, childEnviron(freshHome(t)...), "get", 5*time.Second)
	wantKind(t, r, "unavailable", "install and start a Secret Service")
	if !strings.Contains(r.msg, "org.freedesktop.secrets") {
		t.Errorf("message %q does not name the missing service", r.msg)
	}
}

// TestKeychainRealLocked: gnome-keyring runs but its login keyring is locked
// and no prompter can be started (no service directories on the bus), as on
// a headless session: the call fails fast with "locked".
func TestKeychainRealLocked(t *testing.T) {
	requireTools(t, "dbus-run-session", "gnome-keyring-daemon")
	if !realKeyring() {
		t.Skipf("set %s=1", realKeyringEnv)
	}
	conf := noSecretsBusConfig(t)
	prefix := append([]string{"dbus-run-session", "--config-file=" + conf, "--"}, unlockedKeyringShell...)
	r := runChild(t, prefix, childEnviron(freshHome(t)...), "lock-then-get", 10*time.Second)
	wantKind(t, r, "locked", "unlock your login keyring and retry")
	if r.elapsed > 5*time.Second {
		t.Errorf("locked keyring took %v to report", r.elapsed)
	}
}

// TestKeychainRealPromptTimeout: a locked login keyring on a session with a
// display: gnome-keyring shows a real unlock prompt (gcr-prompter on the
// Xvfb display) that nobody answers; the call must give up after Timeout.
func TestKeychainRealPromptTimeout(t *testing.T) {
	requireTools(t, "dbus-run-session", "gnome-keyring-daemon")
	if !realKeyring() {
		t.Skipf("set %s=1", realKeyringEnv)
	}
	display := os.Getenv("DISPLAY")
	if display == "" {
		t.Fatalf("%s=1 but DISPLAY is not set: run under scripts/with-desktop", realKeyringEnv)
	}
	prefix := append([]string{"dbus-run-session", "--"}, unlockedKeyringShell...)
	const timeout = 2 * time.Second
	r := runChild(t, prefix, childEnviron(append(freshHome(t), "DISPLAY="+display)...), "lock-then-get", timeout)
	wantKind(t, r, "timeout", "unlock prompt may be waiting")
	if r.elapsed < timeout || r.elapsed > timeout+3*time.Second {
		t.Errorf("gave up after %v, want about %v", r.elapsed, timeout)
	}
}

// ---- real Secret Service round trips (the session from scripts/with-desktop) ----

// searchItems returns the Secret Service items with the go-keyring
// attributes for service/account.
func searchItems(t *testing.T, service, account string) []dbus.ObjectPath {
	t.Helper()
	conn, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	var unlocked, locked []dbus.ObjectPath
	err = conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.SearchItems", 0, map[string]string{"service": service, "username": account}).
		Store(&unlocked, &locked)
	if err != nil {
		t.Fatalf("SearchItems: %v", err)
	}
	return append(unlocked, locked...)
}

func TestKeychainRealRoundTrip(t *testing.T) {
	requireRealKeyring(t)
	k := SystemKeychain{}
	acct := uniqueAccount(t)

	if _, err := k.Get(testService, acct); err != ErrNotFound {
		t.Fatalf("Get of a new account = %v, want ErrNotFound", err)
	}
	if err := k.Delete(testService, acct); err != ErrNotFound {
		t.Fatalf("Delete of a new account = %v, want ErrNotFound", err)
	}
	if err := k.Set(testService, acct, "first ☃ value"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, err := k.Get(testService, acct); err != nil || v != "first ☃ value" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	before := searchItems(t, testService, acct)
	if len(before) != 1 {
		t.Fatalf("items after first Set: %v, want 1", before)
	}
	if err := k.Set(testService, acct, "second value"); err != nil {
		t.Fatalf("update: %v", err)
	}
	if v, err := k.Get(testService, acct); err != nil || v != "second value" {
		t.Fatalf("Get after update = %q, %v", v, err)
	}
	after := searchItems(t, testService, acct)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("update did not keep the same single item (update in place) (-before +after):\n%s", diff)
	}
	// A different service with the same account is a different entry.
	if _, err := k.Get(KeychainService, acct); err != ErrNotFound {
		t.Errorf("Get under another service = %v, want ErrNotFound", err)
	}
	if err := k.Delete(testService, acct); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := k.Get(testService, acct); err != ErrNotFound {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if items := searchItems(t, testService, acct); len(items) != 0 {
		t.Errorf("items left after Delete: %v", items)
	}
}

func TestKeychainRealConcurrent(t *testing.T) {
	requireRealKeyring(t)
	k := SystemKeychain{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		acct := uniqueAccount(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("value-%d", i)
			if err := k.Set(testService, acct, want); err != nil {
				errs <- err
				return
			}
			if v, err := k.Get(testService, acct); err != nil || v != want {
				errs <- fmt.Errorf("Get = %q, %v; want %q", v, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStoreRealKeychain(t *testing.T) {
	requireRealKeyring(t)
	s := Store{Keychain: SystemKeychain{}}
	profile := uniqueAccount(t)

	if _, err := s.Load(profile); err != ErrNotFound {
		t.Fatalf("Load before Save = %v, want ErrNotFound", err)
	}
	e := sampleEntry()
	if err := s.Save(profile, e); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := s.Load(profile)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := sampleEntry()
	want.Version = 1
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	items := searchItems(t, KeychainService, profile)
	if len(items) != 1 {
		t.Fatalf("items = %v, want one under service %q", items, KeychainService)
	}

	// Rotation: a second Save updates the same item.
	e.RefreshToken = "1//rotated-refresh-token-0123456789"
	if err := s.Save(profile, e); err != nil {
		t.Fatalf("Save rotated: %v", err)
	}
	if got, err := s.Load(profile); err != nil || got.RefreshToken != e.RefreshToken {
		t.Fatalf("Load after rotation: %v, %v", got, err)
	}
	if diff := cmp.Diff(items, searchItems(t, KeychainService, profile)); diff != "" {
		t.Errorf("rotation re-created the item:\n%s", diff)
	}

	// An entry of exactly MaxEntryBytes is accepted by the real keyring; one
	// byte more is refused before it is touched.
	b, err := encodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	big := *e
	big.RefreshToken += strings.Repeat("z", MaxEntryBytes-len(b))
	if err := s.Save(profile, &big); err != nil {
		t.Fatalf("Save of a %d-byte entry: %v", MaxEntryBytes, err)
	}
	raw, err := SystemKeychain{}.Get(KeychainService, profile)
	if err != nil || len(raw) != MaxEntryBytes {
		t.Fatalf("stored %d bytes (%v), want %d", len(raw), err, MaxEntryBytes)
	}
	tooBig := big
	tooBig.RefreshToken += "z"
	if err := s.Save(profile, &tooBig); !errors.Is(err, ErrEntryTooBig) {
		t.Fatalf("Save over the limit = %v, want ErrEntryTooBig", err)
	}
	if got, err := s.Load(profile); err != nil || got.RefreshToken != big.RefreshToken {
		t.Errorf("refused Save changed the stored entry (err %v)", err)
	}

	// Garbage written by someone else is reported as corrupt.
	if err := (SystemKeychain{}).Set(KeychainService, profile, "not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(profile); !errors.Is(err, ErrCorruptEntry) {
		t.Errorf("Load of garbage = %v, want ErrCorruptEntry", err)
	}

	if err := s.Delete(profile); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(profile); err != ErrNotFound {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Load(profile); err != ErrNotFound {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
}
