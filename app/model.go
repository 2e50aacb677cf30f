package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"

	"github.com/gatepass-dev/gatepass/assets"
	"github.com/gatepass-dev/gatepass/broker"
)

// This file holds the pure functions the UI is drawn from: labels, colours,
// countdown text, the tray icon and the tray menu. They take the state
// snapshot and the time and return values; the widgets only display them.

// expiringSoon is how close to expiry a token must be for the tray to show
// the amber "expiring" icon. The broker refreshes at about 80% of a token's
// lifetime, so a signed-in profile normally never gets this close.
const expiringSoon = 5 * time.Minute

// stateLabel is the short state shown on a card and in the tray.
func stateLabel(s broker.State, pending bool) string {
	if pending || s == broker.StateSigningIn {
		return "Signing in…"
	}
	switch s {
	case broker.StateSignedIn:
		return "Signed in"
	case broker.StateRefreshing:
		return "Refreshing…"
	case broker.StateSignInRequired:
		return "Sign-in required"
	case broker.StateSignedOut:
		return "Signed out"
	case broker.StateUnknown:
		return "Keychain unavailable"
	}
	return "Unknown state"
}

// stateColor is the theme colour of a card's status dot.
func stateColor(st broker.ProfileStatus, now time.Time, pending bool) fyne.ThemeColorName {
	switch {
	case pending || st.State == broker.StateSigningIn:
		return theme.ColorNamePrimary
	case st.State == broker.StateSignInRequired:
		return theme.ColorNameError
	case st.State == broker.StateRefreshing, st.State == broker.StateUnknown:
		return theme.ColorNameWarning
	case st.State == broker.StateSignedIn:
		if isExpiring(st.Expiry, now) {
			return theme.ColorNameWarning
		}
		return theme.ColorNameSuccess
	}
	return theme.ColorNameDisabled
}

func isExpiring(expiry, now time.Time) bool {
	return !expiry.IsZero() && expiry.Sub(now) < expiringSoon
}

// secondsBelow is when the countdown starts showing seconds. Above it the
// text changes once a minute: Fyne repaints the whole window for any change,
// and with software GL a repaint a second costs about 1.5% CPU (bench/app.sh),
// so an idle window with an hour-long token stays at ~0 extra CPU.
const secondsBelow = 10 * time.Minute

// countdownText is the ticking "expires in" text of a signed-in card. The
// ticker asks every second; the text (and so the label) changes once a
// minute, and every second in the last secondsBelow.
func countdownText(st broker.ProfileStatus, now time.Time) string {
	if st.Expiry.IsZero() || (st.State != broker.StateSignedIn && st.State != broker.StateRefreshing) {
		return ""
	}
	d := st.Expiry.Sub(now).Truncate(time.Second)
	if d <= 0 {
		return "token expired"
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case d >= secondsBelow && h > 0:
		return fmt.Sprintf("expires in %dh %02dm", h, m)
	case d >= secondsBelow:
		return fmt.Sprintf("expires in %d min", m)
	case m > 0:
		return fmt.Sprintf("expires in %dm %02ds", m, s)
	}
	return fmt.Sprintf("expires in %ds", s)
}

// identityText is the card's identity line.
func identityText(st broker.ProfileStatus) string {
	switch {
	case st.Email != "":
		return st.Email
	case st.Subject != "" && st.State != broker.StateSignedOut:
		return "subject " + st.Subject
	}
	return "Not signed in"
}

// tokenKindLabel names the token a profile injects, for button labels.
func tokenKindLabel(k broker.TokenKind) string {
	if k == broker.AccessToken {
		return "access token"
	}
	return "ID token"
}

// actions says which of Sign in / Sign out / Copy token a profile offers.
type actions struct {
	signIn, signOut, copyToken bool
}

func profileActions(st broker.ProfileStatus, pending bool) actions {
	if pending || st.State == broker.StateSigningIn {
		return actions{}
	}
	switch st.State {
	case broker.StateSignedIn, broker.StateRefreshing:
		return actions{signOut: true, copyToken: true}
	case broker.StateSignInRequired:
		// Sign out still clears the stale keychain entry.
		return actions{signIn: true, signOut: true}
	}
	return actions{signIn: true}
}

// trayIconName picks the tray icon from all profiles: the worst state wins,
// in the order sign-in required, expiring/refreshing/signing in, signed in,
// signed out.
func trayIconName(sts []broker.ProfileStatus, now time.Time, pending map[string]bool) string {
	rank := map[string]int{assets.TraySignedOut: 0, assets.TraySignedIn: 1, assets.TrayExpiring: 2, assets.TraySignInRequired: 3}
	best := assets.TraySignedOut
	for _, st := range sts {
		name := assets.TraySignedOut
		switch {
		case st.State == broker.StateSignInRequired:
			name = assets.TraySignInRequired
		case pending[st.Profile] || st.State == broker.StateSigningIn || st.State == broker.StateRefreshing:
			name = assets.TrayExpiring
		case st.State == broker.StateSignedIn && isExpiring(st.Expiry, now):
			name = assets.TrayExpiring
		case st.State == broker.StateSignedIn:
			name = assets.TraySignedIn
		}
		if rank[name] > rank[best] {
			best = name
		}
	}
	return best
}

// statusLine is a profile's line in the tray menu. It shows the expiry as a
// clock time rather than a countdown so the menu does not change every
// second (each change is a D-Bus LayoutUpdated round trip).
func statusLine(st broker.ProfileStatus, now time.Time, pending bool) string {
	who := st.Email
	if who == "" {
		who = st.Profile
	}
	switch {
	case pending || st.State == broker.StateSigningIn:
		return st.Profile + ": signing in…"
	case st.State == broker.StateSignInRequired:
		line := st.Profile + ": sign-in required"
		if st.Reason != "" {
			line += " (" + st.Reason + ")"
		}
		return line
	case st.State == broker.StateRefreshing:
		return who + " · refreshing"
	case st.State == broker.StateSignedIn:
		if st.Expiry.IsZero() {
			return who + " · signed in"
		}
		if !st.Expiry.After(now) {
			return who + " · token expired"
		}
		return who + " · expires " + st.Expiry.Local().Format("15:04")
	}
	if st.State == broker.StateUnknown {
		return st.Profile + ": keychain unavailable"
	}
	return st.Profile + ": signed out"
}

// menuAction is what a tray menu entry does.
type menuAction int

const (
	actNone menuAction = iota
	actSignIn
	actSignOut
	actCopyToken
	actOpen
	actQuit
)

// menuEntry is one tray menu item. Entries are comparable, so the tray is
// rebuilt only when the computed menu differs from the one shown.
type menuEntry struct {
	Label     string
	Disabled  bool
	Separator bool
	Action    menuAction
	Profile   string
}

// trayMenu computes the tray menu from the snapshot. With several profiles
// the action labels name the profile.
// unset, when not "", is why there are no profiles to show (not set up yet,
// a config with an error).
func trayMenu(sts []broker.ProfileStatus, now time.Time, pending map[string]bool, unset string) []menuEntry {
	var m []menuEntry
	if unset != "" {
		m = append(m, menuEntry{Label: unset, Disabled: true})
	}
	for i, st := range sts {
		if i > 0 {
			m = append(m, menuEntry{Separator: true})
		}
		suffix := ""
		if len(sts) > 1 {
			suffix = " (" + st.Profile + ")"
		}
		p := pending[st.Profile]
		a := profileActions(st, p)
		m = append(m, menuEntry{Label: statusLine(st, now, p), Disabled: true})
		switch {
		case p || st.State == broker.StateSigningIn:
			m = append(m, menuEntry{Label: "Signing in…" + suffix, Disabled: true, Action: actSignIn, Profile: st.Profile})
		case a.signOut && !a.signIn:
			m = append(m, menuEntry{Label: "Sign out" + suffix, Action: actSignOut, Profile: st.Profile})
		default:
			m = append(m, menuEntry{Label: "Sign in" + suffix, Action: actSignIn, Profile: st.Profile})
		}
		m = append(m, menuEntry{Label: "Copy token" + suffix, Disabled: !a.copyToken, Action: actCopyToken, Profile: st.Profile})
	}
	return append(m,
		menuEntry{Separator: true},
		menuEntry{Label: "Open gatepass", Action: actOpen},
		menuEntry{Separator: true},
		menuEntry{Label: "Quit", Action: actQuit},
	)
}

// needsNotification reports whether a status change should raise the one
// desktop notification: only on entering sign-in-required (DESIGN.md §4: one
// notification, no storms).
func needsNotification(prev, next broker.State) bool {
	return next == broker.StateSignInRequired && prev != broker.StateSignInRequired
}

// curlExample is a ready-to-paste curl line that goes through the proxy to
// the profile's first gateway. A wildcard pattern gets an "api" label; a
// gateway listed in plainHTTP gets an http:// URL (it is served without TLS).
func curlExample(proxyAddr string, gateways, plainHTTP []string, caPath string) string {
	if proxyAddr == "" || len(gateways) == 0 {
		return ""
	}
	host := gateways[0]
	for _, g := range gateways {
		if !strings.HasPrefix(g, "*.") {
			host = g
			break
		}
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		host = "api." + rest
	}
	if slices.Contains(plainHTTP, host) {
		return "curl -x http://" + proxyAddr + " http://" + host + "/"
	}
	// HTTPS to a gateway meets gatepass's local CA: curl must trust it.
	ca := ""
	if caPath != "" {
		ca = "--cacert " + ShellQuote(caPath) + " "
	}
	return "curl " + ca + "-x http://" + proxyAddr + " https://" + host + "/"
}

// ShellQuote quotes s for a POSIX shell when it holds anything but plain
// path characters ("~" too: after "=" or ":" in an export line the shell
// expands it).
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// requestCells renders one proxied request as the log's columns: time,
// method, host, path, status, injected, duration. RequestRow holds no token.
func requestCells(r RequestRow) [7]string {
	status := strconv.Itoa(r.Status)
	if r.Err != "" && r.Status == 0 {
		status = "error"
	}
	injected := "—"
	if r.Injected {
		injected = "token"
		if r.Profile != "" {
			injected += " (" + r.Profile + ")"
		}
	}
	return [7]string{
		r.Time.Local().Format("15:04:05"),
		r.Method,
		r.Host,
		ellipsize(r.Path, 60),
		status,
		injected,
		formatDuration(r.Duration),
	}
}

// requestDetail is a request row in full, as the window shows the selected one:
// what the columns cut short, and the reason a request failed.
func requestDetail(r RequestRow) string {
	c := requestCells(r)
	s := c[0] + "  " + r.Method + " " + r.Host + r.Path + "  →  " + c[4]
	if r.Injected {
		s += ", token of profile " + r.Profile
	} else {
		s += ", no token"
	}
	s += ", " + c[6]
	if r.Err != "" {
		s += ": " + r.Err
	}
	return s
}

func ellipsize(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return strconv.Itoa(int(d/time.Millisecond)) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// problem is an error turned into words for the window: what happened, the
// details, and what to do. retry says whether a Retry button makes sense.
type problem struct {
	Title, Detail, Hint string
	Retry               bool
	Info                bool // good news (shown in the success colour), not a problem
}

// describeError explains an action's error; op is what the user tried
// ("sign in", "copy the token", …). A cancelled context is not a problem.
func describeError(op string, err error) (problem, bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return problem{}, false
	}
	var kc *broker.KeychainError
	var sr *broker.SignInRequiredError
	var cfg *broker.ConfigError
	var az *broker.AuthorizationError
	var lt *broker.LoginTimeoutError
	switch {
	// The broker's messages end in CLI advice (run `gatepass login`); the
	// window says what to press instead.
	case errors.As(err, &lt):
		return problem{Title: "The sign-in timed out", Detail: "Nothing came back from the browser within " + lt.After.String() + ".",
			Hint: "Press Retry to sign in again. If no browser window opens, copy the sign-in address while it waits.", Retry: true}, true
	case errors.As(err, &az) && az.Code == "access_denied":
		return problem{Title: "Sign-in cancelled", Detail: "The sign-in was cancelled or denied in the browser.", Hint: "Press Sign in to try again."}, true
	case errors.As(err, &az):
		detail := "The identity provider answered " + az.Code
		if az.Description != "" {
			detail += ": " + az.Description
		}
		return problem{Title: "The identity provider refused the sign-in", Detail: detail + ".",
			Hint: "Check client_id, the scopes and the OAuth client's type (Desktop app) in the configuration, then press Sign in."}, true
	case errors.As(err, &kc):
		title := "The keychain is unavailable"
		if kc.Kind == broker.KeychainLocked || kc.Kind == broker.KeychainTimeout {
			title = "The keychain is locked"
		}
		return problem{Title: title, Detail: err.Error(), Hint: "Unlock your keychain, then press Retry.", Retry: true}, true
	case errors.As(err, &sr) || errors.Is(err, broker.ErrSignInRequired):
		detail := "This profile has no usable sign-in."
		if sr != nil && sr.Reason != "" {
			detail = "This profile has no usable sign-in: " + sr.Reason + "."
		}
		return problem{Title: "Sign-in required", Detail: detail, Hint: "Press Sign in to sign in again."}, true
	case errors.As(err, &cfg):
		return problem{Title: "The configuration has an error", Detail: err.Error(), Hint: "Fix the file, or open the setup form to write a new one."}, true
	case errors.Is(err, context.DeadlineExceeded):
		return problem{Title: "Could not " + op + ": timed out", Detail: err.Error(), Hint: "Check your network, then press Retry.", Retry: true}, true
	}
	return problem{Title: "Could not " + op, Detail: err.Error(), Hint: "Press Retry, or run `gatepass doctor` to check the setup.", Retry: true}, true
}

// proxyProblem explains a failure to switch the proxy on, naming the port.
// When the address is taken and the OS offers a free loopback port, it also
// returns that address (altAddr) for a "Use …" button.
func proxyProblem(addr string, err error, freePort func() (int, error)) (p problem, altAddr string) {
	if errors.Is(err, syscall.EADDRINUSE) {
		hint := "Stop the program using it, or set another `listen` address in the config."
		if port, ferr := freePort(); ferr == nil {
			host, _, _ := net.SplitHostPort(addr)
			if host == "" || CheckProxyAddr(net.JoinHostPort(host, "1")) != nil {
				host = "127.0.0.1"
			}
			altAddr = net.JoinHostPort(host, strconv.Itoa(port))
			hint = fmt.Sprintf("Stop the program using it, or press Use %s to run the proxy there now (set listen = %q in the config to keep it).", altAddr, altAddr)
		}
		return problem{Title: "The proxy port " + addr + " is already in use", Detail: err.Error(), Hint: hint, Retry: true}, altAddr
	}
	return problem{Title: "Could not start the proxy on " + addr, Detail: err.Error(), Hint: "Press Retry, or run `gatepass doctor`.", Retry: true}, ""
}

// CheckProxyAddr accepts only a loopback HOST:PORT (localhost, 127.0.0.0/8
// or ::1, port 1-65535): the proxy hands out tokens to whoever reaches it,
// so it must never listen on a network interface.
func CheckProxyAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("proxy address %q is not HOST:PORT; use a loopback address like 127.0.0.1:8787", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("proxy address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("proxy address %q is not a loopback address, so other machines could use your tokens through the proxy; use 127.0.0.1 or [::1]", addr)
}

// freeLoopbackPort asks the OS for a free loopback port.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// displayError says why no window can be opened, or nil. On Linux and the
// BSDs Fyne needs an X11 or Wayland display.
func displayError(goos string, getenv func(string) string) error {
	switch goos {
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly":
	default:
		return nil
	}
	if getenv("DISPLAY") != "" || getenv("WAYLAND_DISPLAY") != "" {
		return nil
	}
	return ErrNoDisplay
}

// ErrNoDisplay is returned by Run when there is no graphical display.
var ErrNoDisplay = errors.New("no display: neither DISPLAY nor WAYLAND_DISPLAY is set, so the gatepass window cannot open; for headless use run `gatepass proxy`")
