package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
	"github.com/google/go-cmp/cmp"

	"github.com/gatepass-dev/gatepass/assets"
	"github.com/gatepass-dev/gatepass/broker"
)

func TestMain(m *testing.M) {
	// Request rows and tray lines show local times; pin them for goldens.
	time.Local = time.UTC
	if os.Getenv(trayHelperEnv) != "" {
		runTrayHelper() // the real-tray test's child process; exits
	}
	os.Exit(m.Run())
}

func workStatus(state broker.State) broker.ProfileStatus {
	return broker.ProfileStatus{
		Profile:  "work",
		Issuer:   "https://accounts.google.com",
		ClientID: "1234-abc.apps.googleusercontent.com",
		State:    state,
		Inject:   broker.IDToken,
		Gateways: []string{"*.gw.team.example", "api.team.example"},
	}
}

func signedIn(expiresIn time.Duration) broker.ProfileStatus {
	st := workStatus(broker.StateSignedIn)
	st.Email = "ada@team.example"
	st.Subject = "1001"
	st.Expiry = testStart.Add(expiresIn)
	return st
}

// TestNewCAShown: a CA generated in this run is announced in the window, with
// its file and how to trust it; a stored CA is not.
func TestNewCAShown(t *testing.T) {
	px := newFakeProxy()
	px.caPath = "/home/ada/.config/gatepass/gatepass-ca.pem"
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px})
	if e.u.notices.shown(noticeCA) {
		t.Error("CA notice for a stored CA")
	}
	px2 := newFakeProxy()
	px2.caPath = px.caPath
	px2.newCA = "gateway names changed (CA was for a.example, now b.example)"
	e2 := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px2})
	if !e2.u.notices.shown(noticeCA) {
		t.Fatal("new CA not announced")
	}
	text := markupText(e2.win.Canvas())
	for _, want := range []string{"gatepass made a new local CA", "gateway names changed", "curl --cacert /home/ada/.config/gatepass/gatepass-ca.pem", "Postman"} {
		if !strings.Contains(text, want) {
			t.Errorf("window lacks %q:\n%s", want, text)
		}
	}
	test.Tap(findButton(t, e2.u.notices.box, "Copy path"))
	if got := e2.u.app.Clipboard().Content(); got != px.caPath {
		t.Errorf("clipboard %q", got)
	}
}

// TestSlowKeychainWindow: while the keychain does not answer, the window is
// up and says what it waits for; the cards come when it answers.
func TestSlowKeychainWindow(t *testing.T) {
	br := newFakeBroker(signedIn(time.Hour))
	br.statusGate = make(chan struct{})
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	if len(e.u.cards) != 0 || !strings.Contains(markupText(e.win.Canvas()), "Reading the keychain") {
		t.Fatalf("during the wait: %d cards, window:\n%s", len(e.u.cards), markupText(e.win.Canvas()))
	}
	close(br.statusGate)
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if e.u.cards["work"] == nil || strings.Contains(markupText(e.win.Canvas()), "Reading the keychain") {
		t.Errorf("after the keychain answered: card %v, window:\n%s", e.u.cards["work"] != nil, markupText(e.win.Canvas()))
	}
}

// TestShowRequest: another gatepass started for the same config brings the
// hidden window back.
func TestShowRequest(t *testing.T) {
	show := make(chan struct{}, 1)
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: newFakeProxy(), ShowRequests: show})
	e.u.trayHost = true // closing only hides
	e.u.closeWindow()
	if e.u.visible.Load() {
		t.Fatal("window still visible after close")
	}
	show <- struct{}{}
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if !e.u.visible.Load() {
		t.Error("window not shown on a show request")
	}
}

// TestCardCurlTrustsCA: for an HTTPS gateway the card's curl line trusts the
// local CA (without --cacert curl fails on the proxy's certificate).
func TestCardCurlTrustsCA(t *testing.T) {
	px := newFakeProxy()
	px.caPath = "/home/ada/.config/gatepass/gatepass-ca.pem"
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px})
	got := e.u.cards["work"].curl.Text
	if !strings.HasPrefix(got, "curl --cacert /home/ada/.config/gatepass/gatepass-ca.pem -x http://127.0.0.1:8787 https://") {
		t.Errorf("curl line %q does not trust the CA", got)
	}
}

func TestSignedOutCard(t *testing.T) {
	br := newFakeBroker(workStatus(broker.StateSignedOut))
	br.release = make(chan struct{})
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]

	test.AssertRendersToMarkup(t, "signed_out.xml", e.win.Canvas())
	if !c.signIn.Visible() || c.signIn.Disabled() || c.signOut.Visible() || !c.copyTok.Disabled() {
		t.Errorf("signed out: sign in shown=%v disabled=%v, sign out shown=%v, copy disabled=%v; want true, false, false, true",
			c.signIn.Visible(), c.signIn.Disabled(), c.signOut.Visible(), c.copyTok.Disabled())
	}
	if got, want := e.tray.icons[len(e.tray.icons)-1], "gatepass-"+assets.TraySignedOut+".png"; got != want {
		t.Errorf("tray icon %q, want %q", got, want)
	}

	// One click opens one sign-in; while it runs, the tray item is
	// disabled and clicking it again starts nothing.
	test.Tap(c.signIn)
	if got := c.state.Text; got != "Signing in…" {
		t.Errorf("state while signing in = %q", got)
	}
	if c.signIn.Text != "Cancel sign-in" {
		t.Errorf("sign-in button reads %q while signing in, want Cancel sign-in", c.signIn.Text)
	}
	item := e.tray.item(t, "Signing in…")
	if !item.Disabled {
		t.Error("tray Signing in… item is enabled")
	}
	item.Action()
	e.u.signIn("work")
	waitFor(t, func() bool { l, _, _ := br.calls(); return len(l) > 0 })
	e.q.run(t) // the sign-in address, shown while it waits
	close(br.release)
	e.q.run(t) // Login returned
	if logins, _, _ := br.calls(); !cmp.Equal(logins, []string{"work"}) {
		t.Errorf("Login calls = %v, want exactly one for work", logins)
	}
	if item := e.tray.item(t, "Sign in"); item.Disabled {
		t.Error("tray Sign in still disabled after the sign-in ended")
	}
}

func TestCancelSignIn(t *testing.T) {
	br := newFakeBroker(workStatus(broker.StateSignedOut))
	br.release = make(chan struct{}) // never released: only cancel ends it
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	test.Tap(c.signIn)
	waitFor(t, func() bool { l, _, _ := br.calls(); return len(l) == 1 })
	// While it waits, the card offers the sign-in address: a browser that was asked
	// to open it may still show nothing (another display, a command that only logs).
	e.q.run(t)
	if !c.msg.Visible() || !strings.Contains(c.msg.Text, "If no browser window opened, copy the sign-in address") ||
		!c.retry.Visible() || c.retry.Text != "Copy address" {
		t.Fatalf("while waiting for the browser: message shown %v (%q), button %q; want the address offered", c.msg.Visible(), c.msg.Text, c.retry.Text)
	}
	test.Tap(c.retry)
	if got := e.u.app.Clipboard().Content(); got != "https://idp.example/authorize?client_id=x" {
		t.Errorf("clipboard %q, want the sign-in address", got)
	}
	test.Tap(c.signIn) // "Cancel sign-in"
	e.q.run(t)
	if c.signIn.Text != "Sign in" || c.msg.Visible() {
		t.Errorf("after cancel: button %q, message shown %v (%q); want Sign in and no message", c.signIn.Text, c.msg.Visible(), c.msg.Text)
	}
}

// TestSignInWithoutBrowser: when no browser opens, the window (whose user never
// sees stderr) shows the sign-in address with a button that copies it, until the
// sign-in ends.
func TestSignInWithoutBrowser(t *testing.T) {
	br := newFakeBroker(workStatus(broker.StateSignedOut))
	br.noBrowser = errors.New("xdg-open: no method available")
	br.release = make(chan struct{})
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	test.Tap(c.signIn)
	waitFor(t, func() bool { l, _, _ := br.calls(); return len(l) == 1 })
	e.q.run(t)
	const url = "https://idp.example/authorize?client_id=x"
	if !c.msg.Visible() || !strings.Contains(c.msg.Text, "Could not open a browser (xdg-open: no method available)") || !strings.Contains(c.msg.Text, "Copy the sign-in address") {
		t.Fatalf("message shown %v: %q; want what to do", c.msg.Visible(), c.msg.Text)
	}
	if !c.retry.Visible() || c.retry.Text != "Copy address" {
		t.Fatalf("button shown %v: %q; want Copy address", c.retry.Visible(), c.retry.Text)
	}
	test.Tap(c.retry)
	if got := e.u.app.Clipboard().Content(); got != url {
		t.Errorf("clipboard %q, want the sign-in address", got)
	}
	close(br.release)
	e.q.run(t) // Login returned
	if c.msg.Visible() {
		t.Errorf("the address is still shown after the sign-in: %q", c.msg.Text)
	}
}

func TestSignedInCardCountdown(t *testing.T) {
	br := newFakeBroker(signedIn(9*time.Minute + 10*time.Second))
	br.token = broker.Token{Kind: broker.IDToken, Value: "eyJhbGciOiJSUzI1NiJ9.payload.SIGNATUREabcd", Expiry: testStart.Add(9 * time.Minute)}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]

	test.AssertRendersToMarkup(t, "signed_in.xml", e.win.Canvas())
	if got, want := c.countdown.Text, "expires in 9m 10s"; got != want {
		t.Errorf("countdown %q, want %q", got, want)
	}
	e.clock.Add(time.Second)
	e.u.tick()
	if got, want := c.countdown.Text, "expires in 9m 09s"; got != want {
		t.Errorf("countdown after 1s %q, want %q", got, want)
	}
	// Near expiry the tray turns amber without any broker event.
	e.clock.Add(5 * time.Minute)
	e.u.tick()
	if got, want := e.tray.icons[len(e.tray.icons)-1], "gatepass-"+assets.TrayExpiring+".png"; got != want {
		t.Errorf("tray icon %q, want %q", got, want)
	}
	// Hidden window: the countdown stops.
	e.u.closeWindow()
	before := c.countdown.Text
	e.clock.Add(time.Minute)
	e.u.tick()
	if c.countdown.Text != before {
		t.Errorf("countdown ticked while hidden: %q → %q", before, c.countdown.Text)
	}

	test.Tap(c.copyTok)
	e.q.run(t)
	if got := e.u.app.Clipboard().Content(); got != br.token.Value {
		t.Errorf("clipboard %q, want the token", got)
	}
	_, _, calls := br.calls()
	if want := []tokenCall{{"work", broker.IDToken, copyMinTTL}}; !cmp.Equal(calls, want) {
		t.Errorf("Token calls %v, want %v", calls, want)
	}
	if strings.Contains(c.msg.Text, "abcd") || !strings.Contains(c.msg.Text, "Copied the ID token") {
		t.Errorf("copy message %q: want a confirmation without any part of the token", c.msg.Text)
	}
	// Copying the curl line replaces the token on the clipboard: the confirmation,
	// which says the token is there, goes.
	e.u.copyText(c.curl.Text)
	if got := e.u.app.Clipboard().Content(); got != c.curl.Text || c.msg.Visible() || e.u.copied != nil {
		t.Errorf("after copying the curl line: clipboard %q, token message shown %v (%q), copied %v", got, c.msg.Visible(), c.msg.Text, e.u.copied)
	}
}

// TestCopiedTokenLeavesClipboard: a copied token is cleared from the clipboard
// when its profile signs out and when it expires — but only while the
// clipboard still holds it: what the user copied since is left alone.
func TestCopiedTokenLeavesClipboard(t *testing.T) {
	const value = "eyJhbGciOiJSUzI1NiJ9.payload.SIGNATUREabcd"
	br := newFakeBroker(signedIn(time.Hour))
	br.token = broker.Token{Kind: broker.IDToken, Value: value, Expiry: testStart.Add(10 * time.Minute)}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	cb := e.u.app.Clipboard()
	copyNow := func() {
		t.Helper()
		test.Tap(e.u.cards["work"].copyTok)
		e.q.run(t)
		if cb.Content() != value {
			t.Fatalf("clipboard %q after Copy, want the token", cb.Content())
		}
	}

	copyNow()
	if !strings.Contains(e.u.cards["work"].msg.Text, "clears it from the clipboard") {
		t.Errorf("copy message %q does not say the token will be cleared", e.u.cards["work"].msg.Text)
	}
	e.u.applyStatus(workStatus(broker.StateSignedOut)) // signed out in a terminal
	if cb.Content() != "" {
		t.Error("the token stayed on the clipboard after sign-out")
	}

	e.u.applyStatus(signedIn(time.Hour))
	copyNow()
	e.clock.Add(9 * time.Minute)
	e.u.tick()
	if cb.Content() != value {
		t.Fatal("cleared before the token expired")
	}
	e.clock.Add(time.Minute)
	e.u.tick()
	if cb.Content() != "" {
		t.Error("the token stayed on the clipboard after it expired")
	}

	copyNow()
	cb.SetContent("something the user copied later")
	e.u.applyStatus(workStatus(broker.StateSignedOut))
	if cb.Content() != "something the user copied later" {
		t.Errorf("clipboard %q: gatepass cleared what it had not put there", cb.Content())
	}
}

func TestSignInRequiredCard(t *testing.T) {
	st := workStatus(broker.StateSignInRequired)
	st.Email = "ada@team.example"
	st.Reason = "invalid_grant: token has been expired or revoked"
	want := fyne.NewNotification("gatepass: sign-in required",
		"Profile work needs you to sign in again (invalid_grant: token has been expired or revoked). Use Sign in in the gatepass window or tray.")
	br := newFakeBroker(workStatus(broker.StateSignedIn))
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})

	test.AssertNotificationSent(t, want, func() {
		br.events <- broker.Event{Status: st}
		e.q.run(t)
	})
	test.AssertRendersToMarkup(t, "sign_in_required.xml", e.win.Canvas())
	// The same state again (e.g. every failed proxied request): no second notification.
	test.AssertNotificationSent(t, nil, func() {
		br.events <- broker.Event{Status: st}
		e.q.run(t)
	})
	c := e.u.cards["work"]
	if c.signIn.Disabled() || !c.reason.Visible() || !strings.Contains(c.reason.Text, "invalid_grant") {
		t.Errorf("sign-in required card: sign in disabled=%v, reason %q shown=%v", c.signIn.Disabled(), c.reason.Text, c.reason.Visible())
	}
	if got, want := e.tray.icons[len(e.tray.icons)-1], "gatepass-"+assets.TraySignInRequired+".png"; got != want {
		t.Errorf("tray icon %q, want %q", got, want)
	}
}

// TestSignInNotificationSequences: the desktop notification comes once per
// entry into sign-in-required (DESIGN.md §4: one notification, no storms). A
// sign-in attempt (signing-in) that the user cancels, or that fails, puts the
// broker back in the state it left (broker/login.go); back in sign-in-required,
// that is no new entry, and the card shows the current reason anyway.
func TestSignInNotificationSequences(t *testing.T) {
	const (
		out      = broker.StateSignedOut
		in       = broker.StateSignedIn
		refresh  = broker.StateRefreshing
		signing  = broker.StateSigningIn
		required = broker.StateSignInRequired
		unknown  = broker.StateUnknown
	)
	type step struct {
		state  broker.State
		reason string
		notify bool
	}
	const (
		expired = "invalid_grant: token has been expired or revoked"
		rapt    = "invalid_rapt: reauth related error"
	)
	tests := map[string][]step{
		"cancelled sign-in while required": {
			{required, expired, true}, {signing, "", false}, {required, expired, false},
		},
		"failed sign-in, new reason shown, not notified": {
			{required, expired, true}, {signing, "", false}, {required, rapt, false},
		},
		"repeated cancelled sign-ins": {
			{in, "", false}, {required, expired, true},
			{signing, "", false}, {required, expired, false},
			{signing, "", false}, {required, expired, false},
			{signing, "", false}, {required, expired, false},
		},
		"signed in, then refused": {
			{in, "", false}, {required, expired, true}, {required, expired, false},
		},
		"refresh refused": {
			{in, "", false}, {refresh, "", false}, {required, expired, true},
		},
		"sign-in from signed in ends required": {
			{in, "", false}, {signing, "", false}, {required, expired, true},
		},
		"sign-in succeeds, later refused": {
			{required, expired, true}, {signing, "", false}, {in, "", false},
			{refresh, "", false}, {required, rapt, true},
		},
		"first seen signing in, then required": {
			{signing, "", false}, {required, expired, true},
		},
		"cancelled sign-in while signed out": {
			{out, "", false}, {signing, "", false}, {out, "", false}, {required, expired, true},
		},
		"keychain unknown, then refused": {
			{unknown, "keychain locked", false}, {required, expired, true},
		},
		"signed out by you, then signed in again": {
			{required, expired, true}, {out, "", false}, {signing, "", false}, {in, "", false},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			br := newFakeBroker() // no profile yet: the first step is its first status
			e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
			for i, s := range steps {
				st := workStatus(s.state)
				st.Reason = s.reason
				var want *fyne.Notification
				if s.notify {
					body := "Profile work needs you to sign in again"
					if s.reason != "" {
						body += " (" + s.reason + ")"
					}
					want = fyne.NewNotification("gatepass: sign-in required", body+". Use Sign in in the gatepass window or tray.")
				}
				ok := t.Run(fmt.Sprintf("%d %s", i, s.state), func(t *testing.T) {
					test.AssertNotificationSent(t, want, func() {
						br.events <- broker.Event{Status: st}
						e.q.run(t)
					})
				})
				if !ok {
					t.Fatalf("step %d (%s, reason %q): want notification %v; the steps after it depend on it", i, s.state, s.reason, s.notify)
				}
				if c := e.u.cards["work"]; s.state == required && (!c.reason.Visible() || !strings.Contains(c.reason.Text, s.reason)) {
					t.Errorf("step %d: card reason %q (shown %v), want it to show %q", i, c.reason.Text, c.reason.Visible(), s.reason)
				}
			}
		})
	}
}

func TestCopyTokenKeychainLockedOffersRetry(t *testing.T) {
	br := newFakeBroker(signedIn(time.Hour))
	br.tokenErr = &broker.KeychainError{Op: "read", Account: "work", Kind: broker.KeychainLocked}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	test.Tap(c.copyTok)
	e.q.run(t)
	if !c.retry.Visible() || !strings.Contains(c.msg.Text, "The keychain is locked") {
		t.Fatalf("message %q, retry shown %v; want the locked keychain explained with Retry", c.msg.Text, c.retry.Visible())
	}
	if e.u.app.Clipboard().Content() != "" {
		t.Error("clipboard written despite the error")
	}
	br.mu.Lock()
	br.tokenErr, br.token = nil, broker.Token{Value: "tok-after-unlock-1234"}
	br.mu.Unlock()
	test.Tap(c.retry)
	e.q.run(t)
	if got := e.u.app.Clipboard().Content(); got != "tok-after-unlock-1234" {
		t.Errorf("clipboard after retry %q", got)
	}
}

func TestRequestLogRows(t *testing.T) {
	px := newFakeProxy()
	br := newFakeBroker(signedIn(time.Hour))
	e := newTestEnv(t, Options{Broker: br, Proxy: px})
	at := testStart.Add(-time.Minute)
	rows := []RequestRow{
		{Time: at, Method: "GET", Host: "api.team.example", Path: "/v1/items", Status: 200, Injected: true, Profile: "work", Duration: 42 * time.Millisecond},
		{Time: at.Add(time.Second), Method: "CONNECT", Host: "example.org:443", Status: 200, Duration: 1500 * time.Millisecond},
		{Time: at.Add(2 * time.Second), Method: "POST", Host: "api.team.example", Path: "/v1/items?page=2", Status: 401, Profile: "work", Duration: 3 * time.Millisecond},
		{Time: at.Add(3 * time.Second), Method: "GET", Host: "x.gw.team.example", Path: "/", Err: "dial tcp: connection refused"},
	}
	for _, r := range rows {
		px.rows <- r
	}
	e.q.run(t) // one batch
	if len(e.u.requests) != len(rows) {
		t.Fatalf("log holds %d rows, want %d", len(e.u.requests), len(rows))
	}
	if e.u.requests[0].Err == "" {
		t.Error("newest row is not first")
	}
	test.AssertRendersToMarkup(t, "request_log.xml", e.win.Canvas())

	// A selected row shows in full below the list, with why it failed: the window's
	// only way to learn what a 502 or an "error" row was.
	if e.u.reqDetail.Visible() {
		t.Fatalf("request detail shown before any row was selected: %q", e.u.reqDetail.Text)
	}
	e.u.reqList.Select(0)
	if d := e.u.reqDetail.Text; !e.u.reqDetail.Visible() || !strings.Contains(d, "GET x.gw.team.example/") ||
		!strings.Contains(d, "error") || !strings.Contains(d, "no token") || !strings.HasSuffix(d, ": dial tcp: connection refused") {
		t.Errorf("detail of the failed row: shown %v, %q", e.u.reqDetail.Visible(), d)
	}
	e.u.reqList.Select(3)
	if d := e.u.reqDetail.Text; !strings.Contains(d, "GET api.team.example/v1/items") || !strings.Contains(d, "200, token of profile work, 42ms") {
		t.Errorf("detail of the injected row: %q", d)
	}
	// A new row unselects (the highlight would move to another row); the detail stays.
	px.rows <- RequestRow{Time: at.Add(4 * time.Second), Method: "GET", Host: "api.team.example", Path: "/new", Status: 200}
	e.q.run(t)
	if !e.u.reqDetail.Visible() || !strings.Contains(e.u.reqDetail.Text, "/v1/items") {
		t.Errorf("the detail changed with a new row: %q", e.u.reqDetail.Text)
	}
}

func TestRequestLogKeepsLastN(t *testing.T) {
	e := newTestEnv(t, Options{Broker: newFakeBroker(), Proxy: newFakeProxy()})
	var rows []RequestRow
	for i := range maxRequests + 25 {
		rows = append(rows, RequestRow{Method: "GET", Host: "h", Path: fmt.Sprint("/", i), Status: 200})
	}
	e.u.addRequests(rows)
	if len(e.u.requests) != maxRequests || e.u.requests[0].Path != fmt.Sprint("/", maxRequests+24) {
		t.Errorf("kept %d rows, newest %q; want %d, newest last added", len(e.u.requests), e.u.requests[0].Path, maxRequests)
	}
}

func TestSetupFormValidation(t *testing.T) {
	var written []*broker.Config
	path := "/home/ada/.config/gatepass/config.toml"
	e := newTestEnv(t, Options{ConfigPath: path, WriteConfig: func(c *broker.Config) (string, error) {
		written = append(written, c)
		return "", nil
	}, StartDemo: func(context.Context) (Broker, Proxy, *Demo, error) { return nil, nil, nil, errors.New("unused") }})
	f := e.u.setup
	if f == nil || !e.u.inSetup {
		t.Fatal("first run does not show the setup form")
	}
	if f.issuer.Text != googleIssuer {
		t.Errorf("issuer pre-filled with %q", f.issuer.Text)
	}
	test.Type(f.issuer, "") // keep Google
	test.Type(f.gws, "api.team.example\nbad host!")
	test.Tap(f.save)
	test.AssertRendersToMarkup(t, "setup_errors.xml", e.win.Canvas())
	if len(written) != 0 {
		t.Fatal("invalid config written")
	}
	// Google's issuer without a client secret: said now, not after the consent.
	for field, wantShown := range map[string]bool{fieldClient: true, fieldGateway: true, fieldSecret: true, fieldIssuer: false, fieldName: false} {
		if got := f.errs[field].Visible(); got != wantShown {
			t.Errorf("error under %s shown=%v (%q), want %v", field, got, f.errs[field].Text, wantShown)
		}
	}

	// An http issuer off loopback is rejected by the same rules as the CLI.
	f.client.SetText("1234-abc.apps.googleusercontent.com")
	f.gws.SetText("api.team.example, *.gw.team.example")
	f.issuer.SetText("http://login.team.example")
	test.Tap(f.save)
	if len(written) != 0 || !f.errs[fieldIssuer].Visible() {
		t.Fatalf("http issuer accepted (error shown %v)", f.errs[fieldIssuer].Visible())
	}

	f.issuer.SetText(googleIssuer)
	f.secret.SetText("GOCSPX-secret")
	f.inject.SetSelected(injectChoices[1])
	test.Tap(f.save)
	if len(written) != 1 {
		t.Fatalf("valid config not written; errors: %v", visibleErrors(f))
	}
	p := written[0].Profiles[0]
	got := []string{written[0].Path, written[0].Listen, written[0].DefaultProfile, p.Name, p.Issuer, p.ClientID, p.ClientSecret, string(p.Inject), fmt.Sprint(p.Gateways)}
	want := []string{path, broker.DefaultListen, "work", "work", googleIssuer, "1234-abc.apps.googleusercontent.com", "GOCSPX-secret", "access_token", "[api.team.example *.gw.team.example]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("written config (-want +got):\n%s", diff)
	}
	if !strings.Contains(f.status.Text, "Saved to "+path) {
		t.Errorf("status %q", f.status.Text)
	}
}

// TestSetupFormListen: gatepass gui --listen ADDR offers ADDR in the form, so the
// config it writes names the address the proxy binds (it offered the default).
func TestSetupFormListen(t *testing.T) {
	var written *broker.Config
	e := newTestEnv(t, Options{ConfigPath: "/home/ada/.config/gatepass/config.toml", Listen: "127.0.0.1:9999",
		WriteConfig: func(c *broker.Config) (string, error) { written = c; return "", nil }})
	f := e.u.setup
	if f.listen.Text != "127.0.0.1:9999" {
		t.Fatalf("proxy address offered %q, want --listen's 127.0.0.1:9999", f.listen.Text)
	}
	f.client.SetText("1234-abc.apps.googleusercontent.com")
	f.secret.SetText("GOCSPX-secret")
	f.gws.SetText("api.team.example")
	test.Tap(f.save)
	if written == nil || written.Listen != "127.0.0.1:9999" {
		t.Fatalf("written config %+v (errors %v), want listen 127.0.0.1:9999", written, visibleErrors(f))
	}
}

func visibleErrors(f *setupForm) map[string]string {
	m := map[string]string{}
	for k, l := range f.errs {
		if l.Visible() {
			m[k] = l.Text
		}
	}
	return m
}

func TestTryTheDemo(t *testing.T) {
	br := newFakeBroker(workStatus(broker.StateSignedOut))
	px := newFakeProxy()
	d := &Demo{Issuer: "http://127.0.0.1:41234", GatewayURL: "http://127.0.0.1:41235", ConfigPath: "/tmp/gatepass-demo-1/config.toml"}
	e := newTestEnv(t, Options{StartDemo: func(context.Context) (Broker, Proxy, *Demo, error) { return br, px, d, nil }})
	test.Tap(e.u.setup.demo)
	if !e.u.setup.demo.Disabled() {
		t.Error("demo button enabled while the demo starts")
	}
	e.q.run(t)
	if e.u.inSetup || e.u.cards["work"] == nil {
		t.Fatal("window did not switch to the demo profile")
	}
	if e.win.Content() != e.u.mainView {
		t.Error("main view not shown")
	}
	if e.tray.item(t, "Sign in").Disabled {
		t.Error("tray Sign in disabled for the demo profile")
	}
	// The window says how to use the demo from a terminal.
	text := markupText(e.win.Canvas())
	for _, want := range []string{"export GATEPASS_CONFIG=/tmp/gatepass-demo-1/config.toml", "Demo running on this machine"} {
		if !strings.Contains(text, want) {
			t.Errorf("window lacks %q:\n%s", want, text)
		}
	}
	test.Tap(findButton(t, e.u.notices.box, "Copy export line"))
	if got := e.u.app.Clipboard().Content(); got != "export GATEPASS_CONFIG=/tmp/gatepass-demo-1/config.toml" {
		t.Errorf("clipboard %q", got)
	}
}

func TestConfigErrorShown(t *testing.T) {
	cerr := &broker.ConfigError{File: "/home/ada/.config/gatepass/config.toml", Line: 7, Key: "profiles.work.gateways[1]", Msg: `"*" is not a valid pattern`}
	e := newTestEnv(t, Options{ConfigErr: cerr, ConfigPath: cerr.File})
	if !e.u.notices.shown(noticeConfig) {
		t.Fatal("config error not shown")
	}
	text := markupText(e.win.Canvas())
	if !strings.Contains(text, "config.toml:7: profiles.work.gateways[1]") {
		t.Errorf("window does not name the file, line and key:\n%s", text)
	}
	if !e.u.inSetup {
		t.Error("setup form not offered")
	}
}

// TestSetupOverExistingConfig: a config with an error sends the user to the
// setup form; the form says saving replaces that file and keeps a copy, and
// after saving it says where the copy is.
func TestSetupOverExistingConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("[profiles.a]\n[profiles.b]\nlisten =\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cerr := &broker.ConfigError{File: path, Line: 3, Key: "listen", Msg: "no value"}
	var wrote int
	e := newTestEnv(t, Options{ConfigErr: cerr, ConfigPath: path, WriteConfig: func(*broker.Config) (string, error) {
		wrote++
		return path + ".bak-20261203-072301", nil
	}})
	text := markupText(e.win.Canvas())
	if !strings.Contains(text, "A configuration already exists at "+path) || !strings.Contains(text, "kept next to it as a backup") {
		t.Errorf("the form does not warn that saving replaces the file:\n%s", text)
	}
	f := e.u.setup
	f.client.SetText("1234-abc.apps.googleusercontent.com")
	f.secret.SetText("GOCSPX-secret")
	f.gws.SetText("api.team.example")
	test.Tap(f.save)
	if wrote != 1 {
		t.Fatalf("not written; errors %v", visibleErrors(f))
	}
	if !strings.Contains(f.status.Text, "The previous file is kept as "+path+".bak-20261203-072301") {
		t.Errorf("status %q does not name the backup", f.status.Text)
	}
	// No file: the plain sentence.
	if got := whereText(filepath.Join(t.TempDir(), "none.toml")); !strings.HasPrefix(got, "The configuration is written to ") {
		t.Errorf("whereText for a new file: %q", got)
	}
}

// TestConfigErrorReload: a config with an error is reloaded when the file
// changes (fixed in an editor), and the window and tray move on to its
// profiles; Reload on a file still broken shows the new error.
func TestConfigErrorReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("listen = \"0.0.0.0:8787\"\n")
	_, cerr := broker.LoadConfig(path)
	if cerr == nil {
		t.Fatal("the broken config loads")
	}
	br, px := newFakeBroker(signedIn(time.Hour)), newFakeProxy()
	var opened []*broker.Config
	e := newTestEnv(t, Options{ConfigErr: cerr, ConfigPath: path,
		LoadConfig: func() (*broker.Config, error) { return broker.LoadConfig(path) },
		Open: func(_ context.Context, c *broker.Config) (Broker, Proxy, error) {
			opened = append(opened, c)
			return br, px, nil
		}})
	if got := e.tray.item(t, "The configuration has an error"); !got.Disabled {
		t.Error("tray line not disabled")
	}

	write("listen = \"192.168.1.2:8787\"\n[profiles.work]\n")
	test.Tap(findButton(t, e.u.notices.box, "Reload"))
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if len(opened) != 0 || !strings.Contains(markupText(e.win.Canvas()), "192.168.1.2:8787") {
		t.Fatalf("Reload of a still-broken file: opened %d, window:\n%s", len(opened), markupText(e.win.Canvas()))
	}

	write("[profiles.work]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\ngateways = [\"api.team.example\"]\n")
	e.u.tick() // the file changed: reload without a click
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if len(opened) != 1 || opened[0].Profiles[0].Name != "work" {
		t.Fatalf("fixed config not opened (%d opens)", len(opened))
	}
	if e.u.inSetup || e.u.cards["work"] == nil || e.u.notices.shown(noticeConfig) {
		t.Errorf("after the fix: inSetup %v, card %v, config notice %v", e.u.inSetup, e.u.cards["work"] != nil, e.u.notices.shown(noticeConfig))
	}
	e.u.tick()
	if len(opened) != 1 {
		t.Errorf("opened again on a later tick: %d", len(opened))
	}
}

func TestProxyPortTaken(t *testing.T) {
	px := newFakeProxy()
	px.running = false
	px.setErr = fmt.Errorf("listen tcp 127.0.0.1:8787: %w", syscall.EADDRINUSE)
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px})
	e.q.run(t) // the window retries a proxy that did not start
	if !e.u.notices.shown(noticeProxy) {
		t.Fatal("port conflict not shown at start")
	}
	e.u.notices.set(noticeProxy, nil)
	e.u.proxyBar.toggle.SetChecked(true)
	e.q.run(t)
	if !e.u.notices.shown(noticeProxy) {
		t.Fatal("port conflict not shown")
	}
	text := markupText(e.win.Canvas())
	for _, want := range []string{"127.0.0.1:8787 is already in use", `listen = "127.0.0.1:8788"`} {
		if !strings.Contains(text, want) {
			t.Errorf("window lacks %q", want)
		}
	}
	if e.u.proxyBar.toggle.Checked {
		t.Error("switch shows on though the proxy did not start")
	}
	px.mu.Lock()
	px.setErr = nil
	px.mu.Unlock()
	e.u.proxyBar.toggle.SetChecked(true)
	e.q.run(t)
	if !px.Running() || e.u.notices.shown(noticeProxy) || e.u.proxyBar.state.Text != "running" {
		t.Errorf("after retry: running=%v notice=%v state=%q", px.Running(), e.u.notices.shown(noticeProxy), e.u.proxyBar.state.Text)
	}
}

func TestProxyPortTakenUseOtherPort(t *testing.T) {
	px := newFakeProxy()
	px.running = false
	px.taken["127.0.0.1:8787"] = true
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px})
	ports := []int{8788, 8789}
	e.u.freePort = func() (int, error) {
		p := ports[0]
		if len(ports) > 1 {
			ports = ports[1:]
		}
		return p, nil
	}
	e.q.run(t) // shown at start, without touching the switch
	test.AssertRendersToMarkup(t, "proxy_port_taken.xml", e.win.Canvas())
	use := findButton(t, e.u.notices.box, "Use 127.0.0.1:8788")

	// The offered port is taken too by the time it is used: the window
	// says so and offers the next free one; the proxy stays off.
	px.mu.Lock()
	px.taken["127.0.0.1:8788"] = true
	px.mu.Unlock()
	test.Tap(use)
	e.q.run(t)
	if px.Running() || !strings.Contains(markupText(e.win.Canvas()), "127.0.0.1:8788 is already in use") {
		t.Fatalf("second conflict: running=%v, window:\n%s", px.Running(), markupText(e.win.Canvas()))
	}
	use = findButton(t, e.u.notices.box, "Use 127.0.0.1:8789")

	test.Tap(use)
	e.q.run(t)
	px.mu.Lock()
	calls := append([]string(nil), px.setAddrs...)
	px.mu.Unlock()
	if want := []string{"127.0.0.1:8788", "127.0.0.1:8789"}; !cmp.Equal(calls, want) {
		t.Errorf("SetAddr calls %v, want %v", calls, want)
	}
	if !px.Running() || px.Addr() != "127.0.0.1:8789" {
		t.Fatalf("proxy running=%v at %s, want running at 127.0.0.1:8789", px.Running(), px.Addr())
	}
	if got := e.u.proxyBar.addr.Text; got != "http://127.0.0.1:8789" {
		t.Errorf("proxy bar shows %q", got)
	}
	if !e.u.proxyBar.toggle.Checked || e.u.proxyBar.state.Text != "running" {
		t.Errorf("switch checked=%v state %q, want on and running", e.u.proxyBar.toggle.Checked, e.u.proxyBar.state.Text)
	}
	if got := e.u.cards["work"].curl.Text; !strings.Contains(got, "-x http://127.0.0.1:8789 ") {
		t.Errorf("curl example %q does not use the new address", got)
	}
	text := markupText(e.win.Canvas())
	for _, want := range []string{"The proxy now listens on 127.0.0.1:8789", `listen = "127.0.0.1:8789"`} {
		if !strings.Contains(text, want) {
			t.Errorf("window lacks %q", want)
		}
	}
	if strings.Contains(text, "already in use") {
		t.Error("the port conflict is still shown after the switch")
	}
}

// findButton returns the visible button labelled text under o.
func findButton(t *testing.T, o fyne.CanvasObject, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	var walk func(fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if found != nil || !o.Visible() {
			return
		}
		switch v := o.(type) {
		case *widget.Button:
			if v.Text == text {
				found = v
			}
		case *fyne.Container:
			for _, c := range v.Objects {
				walk(c)
			}
		}
	}
	walk(o)
	if found == nil {
		t.Fatalf("no button %q", text)
	}
	return found
}

func TestTrayMenuCopyToken(t *testing.T) {
	br := newFakeBroker(signedIn(time.Hour))
	br.token = broker.Token{Value: "tray-token-value-9876"}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	var got []string
	for _, it := range e.tray.last().Items {
		if !it.IsSeparator {
			got = append(got, fmt.Sprintf("%s|%v", it.Label, it.Disabled))
		}
	}
	want := []string{"ada@team.example · expires 10:00|true", "Sign out|false", "Copy token|false", "Open gatepass|false", "Quit|false"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tray menu (-want +got):\n%s", diff)
	}
	e.tray.item(t, "Copy token").Action()
	e.q.run(t)
	if c := e.u.app.Clipboard().Content(); c != "tray-token-value-9876" {
		t.Errorf("clipboard %q", c)
	}
	// A status event that changes nothing visible does not rebuild the menu.
	n := len(e.tray.menus)
	br.events <- broker.Event{Status: signedIn(time.Hour)}
	e.q.run(t)
	if len(e.tray.menus) != n {
		t.Errorf("menu rebuilt %d times for an unchanged state", len(e.tray.menus)-n)
	}
}

func TestCloseWindow(t *testing.T) {
	tests := map[string]struct {
		trayHost    bool
		wantVisible bool
	}{
		"tray host: hides":    {trayHost: true, wantVisible: false},
		"no tray host: quits": {trayHost: false, wantVisible: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: newFakeProxy()})
			e.u.trayHost = tc.trayHost
			e.win.Show()
			e.u.closeWindow()
			if e.u.visible.Load() != tc.wantVisible {
				t.Errorf("visible = %v", e.u.visible.Load())
			}
			// Quitting cancels the subscriptions (the fake closes its channel).
			e.br.mu.Lock()
			cancelled := e.br.cancelled
			e.br.mu.Unlock()
			if cancelled == tc.trayHost {
				t.Errorf("subscriptions cancelled = %v, want %v", cancelled, !tc.trayHost)
			}
		})
	}
}

func TestNoTrayHostNotice(t *testing.T) {
	a := test.NewTempApp(t)
	u := newUI(context.Background(), a, Options{Broker: newFakeBroker(), Proxy: newFakeProxy()}, &fakeClock{t: testStart})
	u.do = func(func()) {}
	u.trayHost = false
	u.start()
	defer u.stop()
	if !u.notices.shown(noticeTray) {
		t.Error("missing tray host not explained")
	}
}

// markupText returns the window's rendered markup, for text assertions.
func markupText(c fyne.Canvas) string { return test.RenderToMarkup(c) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// noClipboardApp is a Fyne app whose clipboard keeps nothing, like a
// session without a clipboard owner; with lag set, it is a clipboard that
// reads back what was set only after that many reads (Wayland, where the
// compositor announces the new selection an event round trip later).
type noClipboardApp struct {
	fyne.App
	cb *laggyClipboard
}

func (a noClipboardApp) Clipboard() fyne.Clipboard { return a.cb }

type laggyClipboard struct {
	lag     int // -1: never reads back
	content string
	reads   int
}

func (c *laggyClipboard) SetContent(s string) { c.content, c.reads = s, 0 }
func (c *laggyClipboard) Content() string {
	c.reads++
	if c.lag < 0 || c.reads <= c.lag {
		return ""
	}
	return c.content
}

// runUntil runs queued UI updates until cond holds, at most n of them.
func (q queue) runUntil(t *testing.T, n int, cond func() bool) {
	t.Helper()
	for i := 0; i < n && !cond(); i++ {
		q.run(t)
	}
}

func TestCopyWithoutClipboard(t *testing.T) {
	every := clipboardCheckEvery
	clipboardCheckEvery = time.Millisecond
	t.Cleanup(func() { clipboardCheckEvery = every })
	br := newFakeBroker(signedIn(9 * time.Minute))
	br.token = broker.Token{Kind: broker.IDToken, Value: "eyJhbGciOiJSUzI1NiJ9.payload.SIGNATUREabcd", Expiry: testStart.Add(9 * time.Minute)}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	real := e.u.app
	dead := &laggyClipboard{lag: -1}
	e.u.app = noClipboardApp{real, dead}
	c := e.u.cards["work"]
	failed := func() bool { return c.msg.Visible() && strings.Contains(c.msg.Text, "Could not copy") }

	want := fyne.NewNotification("gatepass: could not copy the token",
		"no clipboard is available in this desktop session, so the ID token was not copied.")
	test.AssertNotificationSent(t, want, func() {
		test.Tap(c.copyTok)
		e.q.runUntil(t, clipboardChecks+2, failed)
	})
	if !failed() || !strings.Contains(c.msg.Text, "gatepass token --profile work") || strings.Contains(c.msg.Text, "abcd") {
		t.Errorf("card message %q (shown %v): want the failure, the CLI way around it, and no part of the token", c.msg.Text, c.msg.Visible())
	}
	if dead.reads != clipboardChecks+1 {
		t.Errorf("read the clipboard back %d times before giving up, want %d", dead.reads, clipboardChecks+1)
	}

	// The proxy address: a window notice that says to copy it by hand.
	if e.u.notices.shown(noticeClipboard) {
		t.Fatal("clipboard notice shown before any copy")
	}
	e.u.copyText("http://127.0.0.1:8787")
	e.q.runUntil(t, clipboardChecks+1, func() bool { return e.u.notices.shown(noticeClipboard) })
	if !e.u.notices.shown(noticeClipboard) {
		t.Error("copying the proxy address without a clipboard showed no notice")
	}

	// A clipboard that reads back late (Wayland): a success, no notification.
	e.u.app = noClipboardApp{real, &laggyClipboard{lag: 3}}
	test.AssertNotificationSent(t, nil, func() {
		test.Tap(c.copyTok)
		e.q.runUntil(t, clipboardChecks+2, func() bool { return strings.Contains(c.msg.Text, "Copied the ID token") })
	})
	if !strings.Contains(c.msg.Text, "Copied the ID token") {
		t.Errorf("late clipboard: message %q, want Copied", c.msg.Text)
	}

	// With a clipboard again, the next copy works and clears the notice.
	e.u.app = real
	e.u.copyText("http://127.0.0.1:8787")
	if e.u.notices.shown(noticeClipboard) || real.Clipboard().Content() != "http://127.0.0.1:8787" {
		t.Errorf("with a clipboard: notice shown %v, clipboard %q", e.u.notices.shown(noticeClipboard), real.Clipboard().Content())
	}
	test.Tap(c.copyTok)
	e.q.run(t)
	if real.Clipboard().Content() != br.token.Value || !strings.Contains(c.msg.Text, "Copied the ID token") {
		t.Errorf("with a clipboard: clipboard holds the token %v, message %q", real.Clipboard().Content() == br.token.Value, c.msg.Text)
	}
}

// TestConfigReloadOpenFails: a fixed config that cannot be opened (another
// gatepass already serves it, say) keeps the notice with Open's error and
// its Reload button; the next Reload that opens it moves on to the cards.
func TestConfigReloadOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte("[profiles.work]\nissuer = \"https://accounts.google.com\"\nclient_id = \"x\"\ngateways = [\"api.team.example\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	br, px := newFakeBroker(signedIn(time.Hour)), newFakeProxy()
	openErr := errors.New("another gatepass already serves this config (process 4321)")
	opens := 0
	e := newTestEnv(t, Options{ConfigErr: errors.New("config.toml:1: profiles: missing"), ConfigPath: path,
		LoadConfig: func() (*broker.Config, error) { return broker.LoadConfig(path) },
		Open: func(context.Context, *broker.Config) (Broker, Proxy, error) {
			opens++
			if opens == 1 {
				return nil, nil, openErr
			}
			return br, px, nil
		}})
	test.Tap(findButton(t, e.u.notices.box, "Reload"))
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	text := markupText(e.win.Canvas())
	if opens != 1 || !e.u.notices.shown(noticeConfig) || !strings.Contains(text, "another gatepass already serves this config") || e.u.cards["work"] != nil {
		t.Fatalf("after a Reload whose Open failed: %d opens, config notice %v, card %v, window:\n%s", opens, e.u.notices.shown(noticeConfig), e.u.cards["work"] != nil, text)
	}
	test.Tap(findButton(t, e.u.notices.box, "Reload")) // the button is still there
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if opens != 2 || e.u.notices.shown(noticeConfig) || e.u.cards["work"] == nil {
		t.Errorf("after the second Reload: %d opens, config notice %v, card %v", opens, e.u.notices.shown(noticeConfig), e.u.cards["work"] != nil)
	}
}

// TestReattachWhileKeychainWaits: a second attach (a new config) while the
// first broker's keychain has not answered shows one waiting label, drops the
// first broker's late statuses, and shows the second's.
func TestReattachWhileKeychainWaits(t *testing.T) {
	old := newFakeBroker(workStatus(broker.StateSignedOut))
	old.statusGate = make(chan struct{})
	e := newTestEnv(t, Options{Broker: old, Proxy: newFakeProxy()})
	cur := newFakeBroker(signedIn(time.Hour))
	cur.statusGate = make(chan struct{})
	e.u.attach(cur, newFakeProxy())
	if n := strings.Count(markupText(e.win.Canvas()), "Reading the keychain"); n != 1 {
		t.Fatalf("%d waiting labels after the second attach, want 1", n)
	}
	close(old.statusGate)
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if st, seen := e.u.status("work"); seen || !strings.Contains(markupText(e.win.Canvas()), "Reading the keychain") {
		t.Fatalf("the replaced broker's late statuses were applied (%v, %+v), or the label went", seen, st)
	}
	close(cur.statusGate)
	waitFor(t, func() bool { return len(e.q) > 0 })
	e.q.run(t)
	if st, seen := e.u.status("work"); !seen || st.State != broker.StateSignedIn || strings.Contains(markupText(e.win.Canvas()), "Reading the keychain") {
		t.Errorf("after the second broker answered: %v %+v, window:\n%s", seen, st, markupText(e.win.Canvas()))
	}
}

// TestWindowLayoutKeepsEverythingInView: at the window's default size and at a
// narrow one, with two notices up and a message on the card (the sign-in
// address, offered while the browser does not open), the notices and the
// message wrap inside the window and the card's curl line is in view: the
// card grows with its message instead of pushing the curl line below the fold
// of a fixed-height box.
func TestWindowLayoutKeepsEverythingInView(t *testing.T) {
	for name, size := range map[string]fyne.Size{
		"default": fyne.NewSize(760, 680), // Run's size
		"narrow":  fyne.NewSize(480, 680),
	} {
		t.Run(name, func(t *testing.T) {
			px := newFakeProxy()
			px.caPath = "/home/ada/.config/gatepass/gatepass-ca.pem"
			px.newCA = "no CA stored yet"
			br := newFakeBroker(workStatus(broker.StateSignedOut))
			br.noBrowser = errors.New(`browser command "xdg-open" failed: exit status 3`)
			br.release = make(chan struct{})
			defer close(br.release)
			e := newTestEnv(t, Options{Broker: br, Proxy: px})
			e.u.showDemo(&Demo{ConfigPath: "/tmp/gatepass-demo-2663844248/config.toml"})
			c := e.u.cards["work"]
			test.Tap(c.signIn)
			waitFor(t, func() bool { l, _, _ := br.calls(); return len(l) == 1 })
			e.q.run(t) // the sign-in address
			if !c.msg.Visible() || !c.retry.Visible() {
				t.Fatal("no sign-in address on the card")
			}
			e.win.Resize(size)

			// A real window is never narrower than its content's minimum
			// width (a window manager that makes it so clips the content).
			if min := e.win.Content().MinSize(); min.Width > size.Width {
				t.Errorf("the content needs %v px of width, more than the window's %v", min.Width, size.Width)
			}
			var labels []fyne.CanvasObject
			for _, slot := range e.u.notices.slots {
				walkVisible(slot, func(o fyne.CanvasObject) {
					if _, ok := o.(*widget.Label); ok {
						labels = append(labels, o)
					}
				})
			}
			if len(labels) < 4 {
				t.Fatalf("%d notice labels, want the CA's and the demo's", len(labels))
			}
			// At the default size all of it is in view at once; in a narrow
			// window, where the wrapped notices take more height, scrolling
			// the window brings each part wholly into view (no inner box of
			// fixed height hides it, no part is wider than the window).
			for _, o := range append(labels, c.msg, c.retry, c.curlRow) {
				r, clip, ok := boundsIn(e.win.Canvas(), o)
				if !ok {
					t.Errorf("%T %q not on the canvas", o, textOf(o))
					continue
				}
				if clip.contains(r) {
					continue
				}
				if s, ok := e.win.Content().(*container.Scroll); ok && name != "default" {
					before := s.Offset
					s.ScrollToOffset(fyne.NewPos(0, s.Offset.Y+r.pos.Height+r.size.Height-clip.pos.Height-clip.size.Height))
					r, clip, _ = boundsIn(e.win.Canvas(), o)
					s.ScrollToOffset(before)
				}
				if !clip.contains(r) {
					t.Errorf("%T %q at %v is not wholly in view (%v): the window shows %v",
						o, textOf(o), r, size, clip)
				}
			}
		})
	}
}

// rect is an area of the canvas, in canvas coordinates.
type rect struct{ pos, size fyne.Size }

func (r rect) String() string {
	return fmt.Sprintf("x %.0f–%.0f, y %.0f–%.0f", r.pos.Width, r.pos.Width+r.size.Width, r.pos.Height, r.pos.Height+r.size.Height)
}

func (r rect) contains(o rect) bool {
	const slack = 0.5 // rounding of wrapped text heights
	return o.pos.Width >= r.pos.Width-slack && o.pos.Height >= r.pos.Height-slack &&
		o.pos.Width+o.size.Width <= r.pos.Width+r.size.Width+slack &&
		o.pos.Height+o.size.Height <= r.pos.Height+r.size.Height+slack
}

func (r rect) intersect(o rect) rect {
	x0, y0 := max(r.pos.Width, o.pos.Width), max(r.pos.Height, o.pos.Height)
	x1 := min(r.pos.Width+r.size.Width, o.pos.Width+o.size.Width)
	y1 := min(r.pos.Height+r.size.Height, o.pos.Height+o.size.Height)
	return rect{fyne.NewSize(x0, y0), fyne.NewSize(max(0, x1-x0), max(0, y1-y0))}
}

// boundsIn finds target among the canvas's visible objects and returns its
// area and the part of the canvas that shows it: the window, cut down to the
// viewport of each scroll container it is in.
func boundsIn(c fyne.Canvas, target fyne.CanvasObject) (r, clip rect, found bool) {
	var walk func(o fyne.CanvasObject, origin fyne.Position, clip rect) bool
	walk = func(o fyne.CanvasObject, origin fyne.Position, cl rect) bool {
		if !o.Visible() {
			return false
		}
		p := origin.Add(o.Position())
		here := rect{fyne.NewSize(p.X, p.Y), o.Size()}
		if o == target {
			r, clip = here, cl
			return true
		}
		if _, ok := o.(*container.Scroll); ok {
			cl = cl.intersect(here)
		}
		for _, ch := range childrenOf(o) {
			if walk(ch, p, cl) {
				return true
			}
		}
		return false
	}
	win := rect{size: c.Size()}
	found = walk(c.Content(), fyne.NewPos(0, 0), win)
	return r, clip, found
}

// walkVisible calls f for o and every visible object under it.
func walkVisible(o fyne.CanvasObject, f func(fyne.CanvasObject)) {
	if !o.Visible() {
		return
	}
	f(o)
	for _, ch := range childrenOf(o) {
		walkVisible(ch, f)
	}
}

func childrenOf(o fyne.CanvasObject) []fyne.CanvasObject {
	switch v := o.(type) {
	case *fyne.Container:
		return v.Objects
	case fyne.Widget:
		return test.WidgetRenderer(v).Objects()
	}
	return nil
}

func textOf(o fyne.CanvasObject) string {
	switch v := o.(type) {
	case *widget.Label:
		return v.Text
	case *widget.Button:
		return v.Text
	case *fyne.Container:
		var s []string
		walkVisible(v, func(o fyne.CanvasObject) {
			if l, ok := o.(*widget.Label); ok {
				s = append(s, l.Text)
			}
		})
		return strings.Join(s, " ")
	}
	return ""
}

// TestCardDotTurnsAmberOnTick: the card's status dot turns amber as the token
// nears expiry by the clock alone, with no broker event, as the tray icon does.
func TestCardDotTurnsAmberOnTick(t *testing.T) {
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(6 * time.Minute)), Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	if c.dotColor != theme.ColorNameSuccess {
		t.Fatalf("dot %q with 6 minutes left, want %q", c.dotColor, theme.ColorNameSuccess)
	}
	e.clock.Add(2 * time.Minute)
	e.u.tick()
	if c.dotColor != theme.ColorNameWarning || c.dot.FillColor != theme.Color(theme.ColorNameWarning) {
		t.Errorf("dot %q (fill %v) with 4 minutes left, want %q", c.dotColor, c.dot.FillColor, theme.ColorNameWarning)
	}
}

// TestCopyAccessToken: a profile that injects the access token copies the
// access token, with at least 2 minutes left (README "Copy token"), and says so.
func TestCopyAccessToken(t *testing.T) {
	st := signedIn(time.Hour)
	st.Inject = broker.AccessToken
	br := newFakeBroker(st)
	br.token = broker.Token{Kind: broker.AccessToken, Value: "ya29.access-token-value", Expiry: testStart.Add(time.Hour)}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	if c.copyTok.Text != "Copy access token" {
		t.Errorf("button reads %q, want Copy access token", c.copyTok.Text)
	}
	test.Tap(c.copyTok)
	e.q.run(t)
	_, _, calls := br.calls()
	if want := []tokenCall{{"work", broker.AccessToken, 2 * time.Minute}}; !cmp.Equal(calls, want) {
		t.Errorf("Token calls %v, want %v", calls, want)
	}
	if got := e.u.app.Clipboard().Content(); got != br.token.Value {
		t.Errorf("clipboard %q, want the access token", got)
	}
	if !strings.Contains(c.msg.Text, "Copied the access token") {
		t.Errorf("copy message %q, want it to name the access token", c.msg.Text)
	}
}

// TestCopyConfirmationShowsNoTokenPart: the confirmation names the token's kind
// and expiry, and no piece of the token, from its start or anywhere else.
func TestCopyConfirmationShowsNoTokenPart(t *testing.T) {
	const value = "Q7xZ9mK2pL4vR8wN3jH5tY6uB1cD0eF"
	br := newFakeBroker(signedIn(time.Hour))
	br.token = broker.Token{Kind: broker.IDToken, Value: value, Expiry: testStart.Add(time.Hour)}
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	test.Tap(c.copyTok)
	e.q.run(t)
	if e.u.app.Clipboard().Content() != value || !strings.Contains(c.msg.Text, "Copied the ID token") {
		t.Fatalf("clipboard holds the token %v, message %q", e.u.app.Clipboard().Content() == value, c.msg.Text)
	}
	for i := 0; i+5 <= len(value); i++ {
		if piece := value[i : i+5]; strings.Contains(c.msg.Text, piece) || strings.Contains(markupText(e.win.Canvas()), piece) {
			t.Fatalf("the window shows %q, a piece of the token: %q", piece, c.msg.Text)
		}
	}
}

// TestSignOut: Sign out on the card and in the tray signs the profile out
// through the broker, once per click; the button is disabled while it runs,
// and the signed-out status brings Sign in back.
func TestSignOut(t *testing.T) {
	br := newFakeBroker(signedIn(time.Hour))
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	c := e.u.cards["work"]
	test.Tap(c.signOut)
	if !c.signOut.Disabled() {
		t.Error("Sign out still enabled while the sign-out runs")
	}
	e.q.run(t)
	if _, logouts, _ := br.calls(); !cmp.Equal(logouts, []string{"work"}) {
		t.Fatalf("Logout calls %v, want one for work", logouts)
	}
	if c.msg.Visible() {
		t.Errorf("message after a sign-out that worked: %q", c.msg.Text)
	}
	br.events <- broker.Event{Status: workStatus(broker.StateSignedOut)}
	e.q.run(t)
	if !c.signIn.Visible() || c.signOut.Visible() || !c.copyTok.Disabled() || c.state.Text != "Signed out" {
		t.Errorf("after sign-out: sign in shown %v, sign out shown %v, copy disabled %v, state %q", c.signIn.Visible(), c.signOut.Visible(), c.copyTok.Disabled(), c.state.Text)
	}
	e.tray.item(t, "Sign in")

	// From the tray.
	br.events <- broker.Event{Status: signedIn(time.Hour)}
	e.q.run(t)
	e.tray.item(t, "Sign out").Action()
	e.q.run(t)
	if _, logouts, _ := br.calls(); !cmp.Equal(logouts, []string{"work", "work"}) {
		t.Errorf("Logout calls %v after the tray's Sign out, want two for work", logouts)
	}
}

// TestProxySwitchOff: unticking the switch stops the proxy, and the bar says
// so; ticking it again starts it.
func TestProxySwitchOff(t *testing.T) {
	px := newFakeProxy()
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: px})
	b := e.u.proxyBar
	if !b.toggle.Checked || b.state.Text != "running" {
		t.Fatalf("at start: switch %v, state %q; want on, running", b.toggle.Checked, b.state.Text)
	}
	b.toggle.SetChecked(false)
	e.q.run(t)
	if px.Running() || b.toggle.Checked || b.state.Text != "stopped" {
		t.Fatalf("after switching off: proxy running %v, switch %v, state %q", px.Running(), b.toggle.Checked, b.state.Text)
	}
	b.toggle.SetChecked(true)
	e.q.run(t)
	if !px.Running() || !b.toggle.Checked || b.state.Text != "running" {
		t.Errorf("after switching on again: proxy running %v, switch %v, state %q", px.Running(), b.toggle.Checked, b.state.Text)
	}
}

// TestRequestLogSelectAfterNewRows: new rows move the selected one down; a
// click on the row now at the old place shows that row's detail (the old
// highlight must not linger there, or the click would do nothing).
func TestRequestLogSelectAfterNewRows(t *testing.T) {
	e := newTestEnv(t, Options{Broker: newFakeBroker(signedIn(time.Hour)), Proxy: newFakeProxy()})
	e.u.addRequests([]RequestRow{
		{Method: "GET", Host: "api.team.example", Path: "/first", Status: 200},
		{Method: "GET", Host: "api.team.example", Path: "/second", Status: 200},
	})
	e.u.reqList.Select(0) // /second
	if !strings.Contains(e.u.reqDetail.Text, "/second") {
		t.Fatalf("detail %q, want /second", e.u.reqDetail.Text)
	}
	e.u.addRequests([]RequestRow{{Method: "POST", Host: "api.team.example", Path: "/third", Status: 201}})
	e.u.reqList.Select(0) // /third, now on top
	if d := e.u.reqDetail.Text; !strings.Contains(d, "/third") {
		t.Errorf("selecting the new top row shows %q, want /third", d)
	}
}

// TestRequestLogKeepsExactlyMax: one row past the limit drops the oldest.
func TestRequestLogKeepsExactlyMax(t *testing.T) {
	e := newTestEnv(t, Options{Broker: newFakeBroker(), Proxy: newFakeProxy()})
	for i := range maxRequests + 1 {
		e.u.addRequests([]RequestRow{{Method: "GET", Host: "h", Path: fmt.Sprint("/", i), Status: 200}})
	}
	if n := len(e.u.requests); n != maxRequests || e.u.requests[n-1].Path != "/1" {
		t.Errorf("kept %d rows, oldest %q; want %d, oldest /1", n, e.u.requests[n-1].Path, maxRequests)
	}
}
