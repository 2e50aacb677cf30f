package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	keyring "github.com/zalando/go-keyring"
)

// DefaultKeychainTimeout bounds one keychain call when SystemKeychain.Timeout
// is zero. A Secret Service that shows an unlock prompt nobody answers never
// replies at all; gatepass reports that instead of hanging.
const DefaultKeychainTimeout = 10 * time.Second

// KeychainErrorKind says what went wrong with the OS keychain, so callers
// (doctor, the UI, exit codes) can branch without reading strings.
type KeychainErrorKind int

const (
	// KeychainOther is any failure not classified below.
	KeychainOther KeychainErrorKind = iota
	// KeychainUnavailable: there is no keychain to talk to (Linux: no D-Bus
	// session bus, or nothing owns org.freedesktop.secrets on it).
	KeychainUnavailable
	// KeychainLocked: the keychain exists but is locked and could not be
	// unlocked (prompt dismissed or impossible to show).
	KeychainLocked
	// KeychainTooBig: the OS refused the entry's size (go-keyring's
	// ErrSetDataTooBig; macOS and Windows cap an entry near 2.5–3 KB).
	KeychainTooBig
	// KeychainTimeout: the keychain did not answer in time, typically because
	// an unlock prompt is waiting on the screen.
	KeychainTimeout
)

// String returns a short lowercase name of the kind.
func (k KeychainErrorKind) String() string {
	switch k {
	case KeychainUnavailable:
		return "unavailable"
	case KeychainLocked:
		return "locked"
	case KeychainTooBig:
		return "too-big"
	case KeychainTimeout:
		return "timeout"
	}
	return "other"
}

// KeychainError is a classified OS keychain failure. Its message is one
// sentence saying what to do; it never contains the secret.
type KeychainError struct {
	Op      string // "read", "write" or "delete"
	Account string // the profile name (keychain account)
	Kind    KeychainErrorKind
	Err     error // the underlying go-keyring / D-Bus error, if any
}

func (e *KeychainError) Error() string {
	what := fmt.Sprintf("cannot %s keychain entry %q", e.Op, e.Account)
	cause := ""
	if e.Err != nil {
		cause = " (" + e.Err.Error() + ")"
	}
	return what + ": " + kindReason(e.Kind) + cause + "; " + kindHint(e.Kind, runtime.GOOS)
}

// Unwrap returns the underlying error.
func (e *KeychainError) Unwrap() error { return e.Err }

func kindReason(k KeychainErrorKind) string {
	switch k {
	case KeychainUnavailable:
		return "no OS keychain is available"
	case KeychainLocked:
		return "the keychain is locked"
	case KeychainTooBig:
		return "the OS keychain refused an entry this large"
	case KeychainTimeout:
		return "the keychain did not answer in time"
	}
	return "the OS keychain failed"
}

// kindHint says how to fix the condition on the given OS.
func kindHint(k KeychainErrorKind, goos string) string {
	switch k {
	case KeychainUnavailable:
		switch goos {
		case "darwin":
			return "run gatepass from a logged-in macOS desktop session (the login keychain is not reachable from a plain SSH session)"
		case "windows":
			return "run gatepass in an interactive Windows sign-in session so Windows Credential Manager is available"
		}
		return "install and start a Secret Service, e.g. `sudo apt install gnome-keyring` and log in to a desktop session, or run `dbus-run-session` + `gnome-keyring-daemon --unlock`"
	case KeychainLocked:
		switch goos {
		case "darwin":
			return "unlock your login keychain (`security unlock-keychain`) and retry"
		case "windows":
			return "sign in to Windows interactively and retry"
		}
		return "unlock your login keyring and retry"
	case KeychainTooBig:
		return "request fewer scopes or report this issuer's unusually large refresh token"
	case KeychainTimeout:
		switch goos {
		case "darwin":
			return "answer the keychain access prompt on your screen (or unlock your login keychain) and retry"
		case "windows":
			return "check for a Windows credential prompt and retry"
		}
		return "an unlock prompt may be waiting on your screen: unlock your login keyring and retry"
	}
	return "run `gatepass doctor` to check the keychain"
}

// keyringBackend is the part of go-keyring SystemKeychain uses; tests swap it.
type keyringBackend interface {
	Get(service, user string) (string, error)
	Set(service, user, password string) error
	Delete(service, user string) error
}

type goKeyring struct{}

func (goKeyring) Get(s, u string) (string, error) { return keyring.Get(s, u) }
func (goKeyring) Set(s, u, p string) error        { return keyring.Set(s, u, p) }
func (goKeyring) Delete(s, u string) error        { return keyring.Delete(s, u) }

// SystemKeychain is the OS keychain (Secret Service on Linux, Keychain on
// macOS, Credential Manager on Windows) through github.com/zalando/go-keyring.
// The zero value is ready to use.
//
// Each call runs with a deadline (Timeout, default DefaultKeychainTimeout):
// go-keyring waits forever for an unlock prompt, so a call that times out
// leaves one goroutine blocked until the Secret Service answers or the D-Bus
// connection closes. Set updates an existing entry in place (Secret Service
// CreateItem with replace=true), which keeps its access rules.
type SystemKeychain struct {
	// Timeout bounds each call; zero means DefaultKeychainTimeout.
	Timeout time.Duration

	backend keyringBackend // nil: go-keyring, after the D-Bus pre-check
}

// Get returns the secret, ErrNotFound, or a *KeychainError.
func (k SystemKeychain) Get(service, account string) (string, error) {
	v, err := k.call("read", account, func(b keyringBackend) (string, error) {
		return b.Get(service, account)
	})
	return v, err
}

// Set creates or updates the entry in place, or returns a *KeychainError.
func (k SystemKeychain) Set(service, account, secret string) error {
	_, err := k.call("write", account, func(b keyringBackend) (string, error) {
		return "", b.Set(service, account, secret)
	})
	return err
}

// Delete removes the entry, or returns ErrNotFound or a *KeychainError.
func (k SystemKeychain) Delete(service, account string) error {
	_, err := k.call("delete", account, func(b keyringBackend) (string, error) {
		return "", b.Delete(service, account)
	})
	return err
}

type callResult struct {
	v   string
	err error
}

func (k SystemKeychain) call(op, account string, f func(keyringBackend) (string, error)) (string, error) {
	b := k.backend
	if b == nil {
		if err := checkSessionBus(runtime.GOOS, os.Getenv, os.Getuid(), fileExists); err != nil {
			return "", &KeychainError{Op: op, Account: account, Kind: KeychainUnavailable, Err: err}
		}
		b = goKeyring{}
	}
	d := k.Timeout
	if d <= 0 {
		d = DefaultKeychainTimeout
	}
	done := make(chan callResult, 1) // buffered: an abandoned call must not block forever on send
	go func() {
		v, err := f(b)
		done <- callResult{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return "", classifyKeychainError(op, account, r.err)
		}
		return r.v, nil
	case <-timer.C:
		return "", &KeychainError{Op: op, Account: account, Kind: KeychainTimeout,
			Err: fmt.Errorf("no answer after %s", d)}
	}
}

// errNoSessionBus is returned before go-keyring is called when the session
// bus address cannot be found. Without this check godbus would run
// `dbus-launch`, leaving a new bus daemon (and an activated, locked
// gnome-keyring) behind on every call, and report a confusing "failed to
// unlock correct collection" error.
var errNoSessionBus = errors.New("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus")

// checkSessionBus reports errNoSessionBus on Unix-like systems (other than
// macOS) when neither DBUS_SESSION_BUS_ADDRESS nor the systemd user bus
// socket (the places godbus looks before autolaunching) exists.
func checkSessionBus(goos string, getenv func(string) string, uid int, exists func(string) bool) error {
	if goos == "darwin" || goos == "windows" || goos == "ios" || goos == "android" {
		return nil
	}
	if a := getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return nil
	}
	dir := getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = "/run/user/" + strconv.Itoa(uid)
	}
	if exists(filepath.Join(dir, "bus")) || exists(filepath.Join(dir, "dbus-session")) {
		return nil
	}
	return errNoSessionBus
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// classifyKeychainError maps go-keyring errors, as observed with go-keyring
// v0.2.8 against gnome-keyring 42 on Debian 12, to ErrNotFound or a
// *KeychainError:
//
//   - bus address points nowhere: *net.OpError "dial unix …: connect: no such
//     file or directory" → unavailable
//   - bus without org.freedesktop.secrets: dbus.Error
//     org.freedesktop.DBus.Error.ServiceUnknown → unavailable
//   - no default collection, or a locked one whose unlock prompt was
//     dismissed or could not be shown: "failed to unlock correct collection
//     '/org/freedesktop/secrets/…'" (a plain string, nothing else to match)
//     → locked
//   - prompt shown but never answered: go-keyring blocks forever; the
//     timeout in SystemKeychain.call reports it.
func classifyKeychainError(op, account string, err error) error {
	if errors.Is(err, keyring.ErrNotFound) || errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	var ke *KeychainError
	if errors.As(err, &ke) {
		return err
	}
	kind := KeychainOther
	var dbusErr dbus.Error
	var dbusErrP *dbus.Error
	var opErr *net.OpError
	var errno syscall.Errno
	switch {
	case errors.Is(err, keyring.ErrSetDataTooBig):
		kind = KeychainTooBig
	case errors.Is(err, keyring.ErrUnsupportedPlatform), errors.Is(err, errNoSessionBus):
		kind = KeychainUnavailable
	case errors.As(err, &dbusErr):
		kind = classifyDBusName(dbusErr.Name)
	case errors.As(err, &dbusErrP) && dbusErrP != nil:
		kind = classifyDBusName(dbusErrP.Name)
	case errors.As(err, &opErr):
		kind = KeychainUnavailable // cannot reach the bus socket
	case strings.Contains(err.Error(), "failed to unlock correct collection"):
		kind = KeychainLocked
	case strings.HasPrefix(err.Error(), "dbus: "):
		// godbus transport/auth failures ("dbus: couldn't determine address
		// of session bus", "dbus: authentication failed").
		kind = KeychainUnavailable
	case errors.As(err, &errno) && runtime.GOOS == "windows" && errno == 1312:
		kind = KeychainUnavailable // ERROR_NO_SUCH_LOGON_SESSION: no interactive session
	case runtime.GOOS == "darwin" && strings.Contains(err.Error(), "exit status 36"):
		kind = KeychainLocked // security(1): "User interaction is not allowed"
	}
	return &KeychainError{Op: op, Account: account, Kind: kind, Err: err}
}

func classifyDBusName(name string) KeychainErrorKind {
	switch name {
	case "org.freedesktop.DBus.Error.ServiceUnknown",
		"org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.NoServer",
		"org.freedesktop.DBus.Error.Disconnected",
		"org.freedesktop.DBus.Error.Spawn.ChildExited",
		"org.freedesktop.DBus.Error.Spawn.ExecFailed":
		return KeychainUnavailable
	case "org.freedesktop.Secret.Error.IsLocked":
		return KeychainLocked
	case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
		return KeychainTimeout
	}
	return KeychainOther
}
