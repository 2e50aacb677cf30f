package app

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/gatepass-dev/gatepass/broker"
)

const (
	// maxRequests is how many proxied requests the window lists.
	maxRequests = 200
	// requestRows is how many rows of the request log stay in view (when it
	// has them) in a window too short for the log and the cards: the window
	// scrolls, the log keeps this height.
	requestRows = 3
	// copyMinTTL is the least lifetime a copied token has left, so a pasted
	// token does not expire mid-command (a quarter of a shorter lifetime).
	copyMinTTL = 2 * time.Minute
	// requestBatch is how long the request pump gathers rows before one
	// list refresh, so a burst of requests costs one redraw.
	requestBatch = 200 * time.Millisecond
)

// tray is the part of desktop.App the UI drives; tests pass a fake.
type tray interface {
	SetSystemTrayMenu(*fyne.Menu)
	SetSystemTrayIcon(fyne.Resource)
}

// ui is the window and tray state.
//
// Threading: the fields under "owned by the Fyne goroutine" are read and
// written only on the Fyne main goroutine (widget callbacks and functions
// passed to u.do). Background goroutines (event and request pumps, broker
// calls, the ticker) never touch them; they hand results over with u.do.
type ui struct {
	ctx      context.Context
	app      fyne.App
	win      fyne.Window
	opts     Options
	clock    broker.Clock
	do       func(func()) // fyne.Do; tests substitute a queue they drain
	trayHost bool
	visible  atomic.Bool // window shown; read by the ticker goroutine
	freePort func() (int, error)
	trimmer  *idleTrimmer

	stopMu sync.Mutex
	stops  []func() // cancels subscriptions and in-flight calls; guarded by stopMu

	// Owned by the Fyne goroutine.
	br        Broker
	px        Proxy
	statuses  []broker.ProfileStatus
	pending   map[string]context.CancelFunc // profile → cancel of its in-flight sign-in
	lastState map[string]broker.State       // last state seen but signing-in, for the one notification (notifyBaseline)
	cards     map[string]*card
	cardBox   *fyne.Container
	notices   *notices
	proxyBar  *proxyBar
	requests  []RequestRow // newest first
	reqList   *widget.List
	reqDetail *widget.Label // the selected request, in full
	reqEmpty  *widget.Label
	mainView  *container.Scroll // the profile view; it scrolls as one
	setup     *setupForm
	tray      tray // nil when the platform has no tray
	shownMenu []menuEntry
	shownIcon string
	trayNoted bool
	inSetup   bool
	copied    *copiedToken // the last token put on the clipboard, to clear it later
	caShown   string       // the NewCA reason already shown
	// A config that failed to load: its error and file stamp, to reload it
	// when the file changes; reloading while a reload runs.
	waiting     *widget.Label // "Reading the keychain…", while the first statuses are out
	attachGen   int           // counts attach calls: late statuses of a replaced broker are dropped
	demo        *Demo         // the running demo, nil for a real config
	configErr   error
	configStamp string
	reloading   bool
}

// copiedToken remembers a token the user copied — its hash, not the token —
// so that the clipboard can be cleared when the token expires, its profile
// signs out, or gatepass quits, and only if the clipboard still holds it.
type copiedToken struct {
	profile string
	sum     [sha256.Size]byte
	expiry  time.Time
}

// clearCopied empties the clipboard if it still holds the copied token.
func (u *ui) clearCopied() {
	c := u.copied
	if c == nil {
		return
	}
	u.copied = nil
	if cb := u.app.Clipboard(); cb != nil && sha256.Sum256([]byte(cb.Content())) == c.sum {
		cb.SetContent("")
	}
}

func newUI(ctx context.Context, a fyne.App, opts Options, clock broker.Clock) *ui {
	u := &ui{
		ctx:       ctx,
		app:       a,
		opts:      opts,
		clock:     clock,
		do:        fyne.Do,
		trayHost:  true,
		freePort:  freeLoopbackPort,
		br:        opts.Broker,
		px:        opts.Proxy,
		pending:   map[string]context.CancelFunc{},
		lastState: map[string]broker.State{},
		cards:     map[string]*card{},
	}
	u.trimmer = newIdleTrimmer(clock.Now)
	if d, ok := a.(desktop.App); ok {
		u.tray = d
	}
	u.win = a.NewWindow("gatepass")
	u.win.SetIcon(appIcon())
	u.win.SetCloseIntercept(u.closeWindow)
	u.visible.Store(true)
	u.notices = newNotices()
	u.notices.changed = u.relayout
	u.build()
	return u
}

// relayout lays the window's content out again after a part of it appeared,
// went or changed height (Fyne's window canvas also does this itself each
// frame; the explicit refresh keeps the test canvas, and so the goldens,
// exact).
func (u *ui) relayout() {
	if c := u.win.Content(); c != nil {
		c.Refresh()
	}
}

// build creates the main view and shows it, or the setup form on first run.
func (u *ui) build() {
	u.cardBox = container.NewVBox()
	u.waiting = widget.NewLabel("Reading the keychain… (it has not answered yet: is it locked, or asking for a password in another window?)")
	u.waiting.Wrapping = fyne.TextWrapWord
	u.proxyBar = newProxyBar(u)
	u.reqEmpty = widget.NewLabel("No proxied requests yet.")
	u.reqList = widget.NewList(
		func() int { return len(u.requests) },
		newRequestRowObject,
		func(id widget.ListItemID, o fyne.CanvasObject) {
			if id < len(u.requests) {
				setRequestRowObject(o, u.requests[id])
			}
		},
	)
	// A selected row is shown in full below the list: the host's port and a long
	// path, which the columns cut short, and why it failed, which a window user
	// would otherwise never see (it is only in the log on stderr).
	u.reqDetail = widget.NewLabel("")
	u.reqDetail.Wrapping = fyne.TextWrapWord
	u.reqDetail.Hide()
	u.reqList.OnSelected = func(id widget.ListItemID) {
		if id < len(u.requests) {
			u.reqDetail.SetText(requestDetail(u.requests[id]))
			u.reqDetail.Show()
		}
	}
	// The columns keep their widths and scroll sideways in a narrow window;
	// the list shows a few rows at least, and grows into the height left.
	rowHeight := requestHeader().MinSize().Height + theme.Padding()
	table := container.NewBorder(container.NewVBox(requestHeader(), u.reqEmpty), nil, nil, nil,
		container.New(atLeast(func() float32 { return float32(min(len(u.requests), requestRows)) * rowHeight }), u.reqList))
	log := container.NewBorder(
		widget.NewLabelWithStyle("Recent proxied requests", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		u.reqDetail, nil, nil, container.NewHScroll(table))
	// One scroll for the whole window, not a box of fixed height per part:
	// a card grows with its message, so its curl line stays under it, and
	// the notices wrap at the window's width, however narrow.
	u.mainView = container.NewVScroll(container.NewBorder(
		container.NewVBox(u.notices.box, u.proxyBar.obj, u.cardBox), nil, nil, nil, log))

	if u.br == nil {
		if u.opts.ConfigErr != nil {
			u.showConfigError(u.opts.ConfigErr)
		}
		u.showSetup()
		return
	}
	if u.opts.ConfigErr != nil {
		u.showConfigError(u.opts.ConfigErr)
	}
	u.win.SetContent(u.mainView)
}

// start subscribes to the broker and the proxy and draws the first state.
// Called on the Fyne goroutine once the app runs.
func (u *ui) start() {
	if ch := u.opts.ShowRequests; ch != nil {
		go func() {
			for {
				select {
				case <-u.ctx.Done():
					return
				case <-ch:
					u.do(u.showWindow)
				}
			}
		}()
	}
	if !u.trayHost && !u.trayNoted {
		u.trayNoted = true
		u.notices.set(noticeTray, &problem{
			Title:  "No system tray found: closing this window quits gatepass",
			Detail: "This desktop shows no tray icons (GNOME needs the AppIndicator extension); gatepass keeps working from this window.",
		})
	}
	if u.br != nil {
		u.demo = u.opts.Demo
		u.attach(u.br, u.px)
		u.showDemo(u.opts.Demo)
		return
	}
	u.updateTray()
}

// statusWait is how long attach waits for the first statuses on the UI
// goroutine before it shows "Reading the keychain…" instead.
var statusWait = 300 * time.Millisecond

// attach connects a broker and proxy (at start, after the setup form or
// the demo) and starts the pumps.
func (u *ui) attach(br Broker, px Proxy) {
	u.br, u.px = br, px
	events, cancelEvents := br.Subscribe()
	u.addStop(cancelEvents)
	go u.pumpEvents(events)
	if px != nil {
		rows, cancelRows := px.Requests()
		u.addStop(cancelRows)
		go u.pumpRequests(rows)
	}
	u.statuses = nil
	u.attachGen++ // statuses still out for an earlier attach are dropped, and its label goes
	gen := u.attachGen
	u.cardBox.Remove(u.waiting)
	// Statuses reads the keychain; one that hangs (locked behind a prompt)
	// must not hold up the window: past a moment the window says what it
	// waits for, and the cards come when the keychain answers.
	got := make(chan []broker.ProfileStatus, 1)
	go func() { got <- br.Statuses() }()
	select {
	case sts := <-got:
		for _, st := range sts {
			u.applyStatus(st)
		}
	case <-time.After(statusWait):
		u.cardBox.Add(u.waiting)
		go func() {
			sts := <-got
			u.do(func() {
				if gen != u.attachGen {
					return // a later attach replaced br: its statuses are stale
				}
				u.cardBox.Remove(u.waiting)
				for _, st := range sts {
					if _, seen := u.status(st.Profile); !seen { // events may have come first
						u.applyStatus(st)
					}
				}
				u.refresh()
			})
		}()
	}
	u.proxyBar.update()
	u.showNewCA()
	if px != nil && !px.Running() {
		// It did not start (port taken?): try again, so the window says
		// why at once and offers a free port, not only when the switch
		// is flipped.
		u.setProxy(true)
	}
	if u.inSetup {
		u.inSetup = false
		u.win.SetContent(u.mainView)
	}
	u.refresh()
}

func (u *ui) addStop(f func()) {
	u.stopMu.Lock()
	defer u.stopMu.Unlock()
	u.stops = append(u.stops, f)
}

// stop cancels the subscriptions; safe from any goroutine.
func (u *ui) stop() {
	u.stopMu.Lock()
	stops := u.stops
	u.stops = nil
	u.stopMu.Unlock()
	for _, f := range stops {
		f()
	}
}

func (u *ui) pumpEvents(events <-chan broker.Event) {
	for ev := range events {
		u.trimmer.touch()
		st := ev.Status
		u.do(func() { u.applyStatus(st); u.refreshProfile(st.Profile) })
	}
}

// pumpRequests gathers rows for requestBatch and hands each batch to the
// Fyne goroutine at once.
func (u *ui) pumpRequests(rows <-chan RequestRow) {
	for {
		r, ok := <-rows
		if !ok {
			return
		}
		batch := []RequestRow{r}
		deadline := time.NewTimer(requestBatch)
	gather:
		for {
			select {
			case r, ok := <-rows:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			case <-deadline.C:
				break gather
			}
		}
		deadline.Stop()
		u.trimmer.touch()
		u.do(func() { u.addRequests(batch) })
		if !ok {
			return
		}
	}
}

// addRequests puts rows (oldest first) at the top of the log.
func (u *ui) addRequests(rows []RequestRow) {
	// New rows move the selected one down: the highlight would mark another row,
	// so it goes (the detail below the list stays as it was).
	u.reqList.UnselectAll()
	grows := len(u.requests) < requestRows // the log's least height, see build
	for _, r := range rows {
		u.requests = append([]RequestRow{r}, u.requests...)
	}
	if len(u.requests) > maxRequests {
		u.requests = u.requests[:maxRequests]
	}
	if len(u.requests) > 0 {
		u.reqEmpty.Hide()
	}
	u.reqList.Refresh()
	if grows {
		u.relayout()
	}
}

// applyStatus records a profile's new status, raises the sign-in
// notification on entering sign-in-required (a sign-in attempt that ends where
// it began does not count: notifyBaseline), and creates its card.
func (u *ui) applyStatus(st broker.ProfileStatus) {
	i := slices.IndexFunc(u.statuses, func(s broker.ProfileStatus) bool { return s.Profile == st.Profile })
	if i < 0 {
		u.statuses = append(u.statuses, st)
	} else {
		u.statuses[i] = st
	}
	prev := u.lastState[st.Profile]
	u.lastState[st.Profile] = notifyBaseline(prev, st.State)
	if c := u.copied; c != nil && c.profile == st.Profile && st.State != broker.StateSignedIn && st.State != broker.StateUnknown {
		u.clearCopied() // signed out, or the issuer ended the sign-in
	}
	if needsNotification(prev, st.State) {
		body := "Profile " + st.Profile + " needs you to sign in again"
		if st.Reason != "" {
			body += " (" + st.Reason + ")"
		}
		u.app.SendNotification(fyne.NewNotification("gatepass: sign-in required", body+". Use Sign in in the gatepass window or tray."))
	}
	if _, ok := u.cards[st.Profile]; !ok {
		c := newCard(u, st.Profile)
		u.cards[st.Profile] = c
		u.cardBox.Add(c.obj)
	}
}

// notifyBaseline returns the state that the sign-in notification compares a
// profile's next status with, once its status went from prev (itself a
// baseline) to next. It is next, except for signing-in: a sign-in attempt
// leaves the baseline as it was before the attempt, so the notification
// (needsNotification) compares the state before the attempt with the state
// after it:
//
//   - sign-in-required → signing-in → sign-in-required (the user cancelled,
//     closed the browser, or the sign-in failed or timed out; the broker puts
//     the old state back): no notification. The user was told once already and
//     has just acted on it; the card still shows the current reason.
//   - signed-in (or refreshing, signed-out, unknown) → signing-in →
//     sign-in-required: one notification, as for any first entry into
//     sign-in-required; the profile was not known to need sign-in.
//   - "" (first seen) → signing-in → sign-in-required: one notification, like
//     a first-seen sign-in-required.
//   - any → signing-in → signed-in: no notification; the baseline becomes
//     signed-in, so a later refusal notifies once again.
//
// Every other state (signed-out, signed-in, refreshing, sign-in-required,
// unknown) is what the broker says the profile is, not the user's own attempt,
// so it becomes the baseline. In particular a refresh that ends in
// sign-in-required (signed-in → refreshing → sign-in-required) notifies once.
func notifyBaseline(prev, next broker.State) broker.State {
	if next == broker.StateSigningIn {
		return prev
	}
	return next
}

func (u *ui) status(profile string) (broker.ProfileStatus, bool) {
	i := slices.IndexFunc(u.statuses, func(s broker.ProfileStatus) bool { return s.Profile == profile })
	if i < 0 {
		return broker.ProfileStatus{}, false
	}
	return u.statuses[i], true
}

// refresh redraws every card and the tray from the snapshot.
func (u *ui) refresh() {
	now := u.clock.Now()
	for _, st := range u.statuses {
		u.cards[st.Profile].update(st, now)
	}
	u.updateTray()
}

func (u *ui) refreshProfile(profile string) {
	if st, ok := u.status(profile); ok {
		u.cards[profile].update(st, u.clock.Now())
	}
	u.updateTray()
}

// tick runs once a second while the window is visible: it updates the
// countdown labels (one SetText per changed label, no re-layout) and the
// tray icon if a token got close to expiry.
func (u *ui) tick() {
	u.checkConfigFile()
	if c := u.copied; c != nil && !c.expiry.IsZero() && !u.clock.Now().Before(c.expiry) {
		u.clearCopied()
	}
	if u.visible.Load() {
		now := u.clock.Now()
		for _, st := range u.statuses {
			u.cards[st.Profile].tick(st, now)
		}
	}
	u.updateTray()
}

func (u *ui) tickLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			u.trimmer.check()
			// Hidden: only the tray icon needs checking, every 15 s.
			if u.visible.Load() || n%15 == 0 {
				u.do(u.tick)
			}
		}
	}
}

// updateTray rebuilds the tray menu and icon only when they changed.
func (u *ui) updateTray() {
	if u.tray == nil {
		return
	}
	now := u.clock.Now()
	pending := u.pendingSet()
	if icon := trayIconName(u.statuses, now, pending); icon != u.shownIcon {
		u.shownIcon = icon
		u.tray.SetSystemTrayIcon(trayIcons[icon])
	}
	note := ""
	switch {
	case u.br != nil:
	case u.configErr != nil || u.opts.ConfigErr != nil:
		note = "The configuration has an error"
	default:
		note = "gatepass is not set up yet"
	}
	entries := trayMenu(u.statuses, now, pending, note)
	if slices.Equal(entries, u.shownMenu) {
		return
	}
	u.shownMenu = entries
	u.tray.SetSystemTrayMenu(u.menuFor(entries))
}

func (u *ui) pendingSet() map[string]bool {
	m := make(map[string]bool, len(u.pending))
	for p := range u.pending {
		m[p] = true
	}
	return m
}

func (u *ui) menuFor(entries []menuEntry) *fyne.Menu {
	items := make([]*fyne.MenuItem, 0, len(entries))
	for _, e := range entries {
		if e.Separator {
			items = append(items, fyne.NewMenuItemSeparator())
			continue
		}
		it := fyne.NewMenuItem(e.Label, u.menuAction(e))
		it.Disabled = e.Disabled
		if e.Action == actQuit {
			it.IsQuit = true
		}
		items = append(items, it)
	}
	return fyne.NewMenu("gatepass", items...)
}

func (u *ui) menuAction(e menuEntry) func() {
	p := e.Profile
	switch e.Action {
	case actSignIn:
		return func() { u.signIn(p) }
	case actSignOut:
		return func() { u.signOut(p) }
	case actCopyToken:
		return func() { u.copyToken(p) }
	case actOpen:
		return u.showWindow
	case actQuit:
		return u.quit
	}
	return func() {}
}

func (u *ui) quit() {
	u.clearCopied()
	u.stop()
	u.app.Quit()
}

func (u *ui) showWindow() {
	u.trimmer.touch()
	u.visible.Store(true)
	u.win.Show()
	u.win.RequestFocus()
	u.tick()
}

// closeWindow hides the window; the tray and the proxy keep running. With
// no tray host there would be no way back, so it quits instead.
func (u *ui) closeWindow() {
	if !u.trayHost || u.tray == nil {
		u.quit()
		return
	}
	u.trimmer.touch()
	u.visible.Store(false)
	u.win.Hide()
}

// signIn starts one sign-in for the profile; further clicks while it runs
// do nothing (the buttons and the tray item are disabled meanwhile), so the
// browser opens exactly once per click.
func (u *ui) signIn(profile string) {
	if _, busy := u.pending[profile]; busy || u.br == nil {
		return
	}
	if st, ok := u.status(profile); ok && st.State == broker.StateSigningIn {
		return
	}
	ctx, cancel := context.WithCancel(u.ctx)
	u.pending[profile] = cancel
	u.cards[profile].clearMessage()
	u.refreshProfile(profile)
	br := u.br
	address := func(url string, err error) {
		u.do(func() {
			if _, waiting := u.pending[profile]; waiting {
				u.cards[profile].showSignInURL(url, err)
			}
		})
	}
	go func() {
		err := br.Login(ctx, profile, address)
		u.do(func() {
			cancel()
			delete(u.pending, profile)
			if p, ok := describeError("sign in", err); ok {
				u.cards[profile].showProblem(p, func() { u.signIn(profile) })
			} else {
				u.cards[profile].clearMessage() // the sign-in URL, if it was shown
			}
			u.refreshProfile(profile)
		})
	}()
}

// cancelSignIn abandons a sign-in waiting for the browser.
func (u *ui) cancelSignIn(profile string) {
	if cancel, ok := u.pending[profile]; ok {
		cancel()
	}
}

func (u *ui) signOut(profile string) {
	if u.br == nil {
		return
	}
	br := u.br
	c := u.cards[profile]
	c.clearMessage()
	c.signOut.Disable()
	go func() {
		err := br.Logout(u.ctx, profile)
		u.do(func() {
			if p, ok := describeError("sign out", err); ok {
				c.showProblem(p, func() { u.signOut(profile) })
			}
			u.refreshProfile(profile)
		})
	}()
}

// copyToken asks the broker for the profile's inject token and puts it on
// the clipboard. The token goes nowhere else: the message names only its
// kind and expiry.
func (u *ui) copyToken(profile string) {
	st, ok := u.status(profile)
	if !ok || u.br == nil {
		return
	}
	kind := st.Inject
	if kind == "" {
		kind = broker.IDToken
	}
	br := u.br
	c := u.cards[profile]
	c.clearMessage()
	go func() {
		tok, err := br.FreshToken(u.ctx, profile, kind, copyMinTTL)
		u.do(func() {
			if p, ok := describeError("get a token", err); ok {
				c.showProblem(p, func() { u.copyToken(profile) })
				return
			}
			u.putOnClipboard(tok.Value, func(ok bool) {
				if !ok {
					p := clipboardProblem("the " + tokenKindLabel(kind))
					p.Hint = "Run `gatepass token --profile " + profile + "` in a terminal instead, or try again once a clipboard is available."
					c.showProblem(p, func() { u.copyToken(profile) })
					u.app.SendNotification(fyne.NewNotification("gatepass: could not copy the token", p.Detail+"."))
					return
				}
				u.copied = &copiedToken{profile: profile, sum: sha256.Sum256([]byte(tok.Value)), expiry: tok.Expiry}
				msg := "Copied the " + tokenKindLabel(kind) + " to the clipboard"
				if !tok.Expiry.IsZero() {
					msg += "; valid until " + tok.Expiry.Local().Format("15:04:05")
				}
				c.showInfo(msg + ". gatepass clears it from the clipboard when it expires, when you sign out, or when gatepass quits.")
				c.copied = true
			})
		})
	}()
}

// copyText copies a proxy address or curl line; the labels are selectable,
// so without a clipboard the hint says to copy them by hand.
func (u *ui) copyText(s string) {
	u.putOnClipboard(s, func(ok bool) {
		if ok {
			u.notices.set(noticeClipboard, nil)
			// The clipboard no longer holds a copied token: its confirmation goes, and
			// there is nothing left to clear from the clipboard later.
			if cp := u.copied; cp != nil {
				if c := u.cards[cp.profile]; c != nil && c.copied {
					c.clearMessage()
				}
				u.copied = nil
			}
			return
		}
		p := clipboardProblem("it")
		p.Hint = "Select the text in the window and copy it with Ctrl+C, or try again once a clipboard is available."
		u.notices.set(noticeClipboard, &p)
	})
}

// How long putOnClipboard keeps reading back before it calls a copy failed.
var (
	clipboardChecks     = 8
	clipboardCheckEvery = 100 * time.Millisecond
)

// putOnClipboard sets the clipboard, then reads it back and calls done on
// the UI goroutine with whether the text arrived. Fyne reports no error
// when the session has no clipboard (no clipboard owner, a compositor
// without data-device support), so reading back is the only way to know.
// On Wayland the text reads back only after the compositor has announced
// the new selection, which takes an event round trip: so the read-back is
// retried for a while, off the UI goroutine's back, before giving up.
func (u *ui) putOnClipboard(s string, done func(ok bool)) {
	cb := u.app.Clipboard()
	if cb == nil {
		done(false)
		return
	}
	cb.SetContent(s)
	u.confirmClipboard(cb, s, clipboardChecks, done)
}

func (u *ui) confirmClipboard(cb fyne.Clipboard, s string, left int, done func(ok bool)) {
	if cb.Content() == s {
		done(true)
		return
	}
	if left <= 0 {
		done(false)
		return
	}
	time.AfterFunc(clipboardCheckEvery, func() {
		u.do(func() { u.confirmClipboard(cb, s, left-1, done) })
	})
}

// clipboardProblem describes a copy that did not reach the clipboard; what
// names the text, and the caller adds the way around it.
func clipboardProblem(what string) problem {
	return problem{
		Title:  "Could not copy",
		Detail: "no clipboard is available in this desktop session, so " + what + " was not copied",
		Retry:  true,
	}
}

// setProxy switches the proxy on or off off the Fyne goroutine (binding a
// port may take a moment) and reports a failure with a fix.
func (u *ui) setProxy(on bool) {
	px := u.px
	if px == nil {
		return
	}
	u.notices.set(noticeProxy, nil)
	go func() {
		err := px.SetRunning(on)
		u.do(func() { u.proxyDone(px, err, func() { u.setProxy(on) }) })
	}()
}

// useProxyAddr moves the proxy to addr (the free port offered when its own
// was taken) and switches it on there.
func (u *ui) useProxyAddr(addr string) {
	px := u.px
	if px == nil {
		return
	}
	u.notices.set(noticeProxy, nil)
	go func() {
		err := px.SetAddr(addr)
		if err == nil && !px.Running() {
			err = px.SetRunning(true)
		}
		u.do(func() {
			u.proxyDone(px, err, func() { u.useProxyAddr(addr) })
			if err == nil {
				u.notices.set(noticeProxy, &problem{
					Info:  true,
					Title: "The proxy now listens on " + px.Addr(),
					Hint:  fmt.Sprintf("This lasts until gatepass restarts; set listen = %q in the config to keep it.", px.Addr()),
				})
			}
			u.refresh() // the cards' curl lines name the address
		})
	}()
}

// proxyDone shows the outcome of a proxy switch: on failure the problem
// with Retry and, when the port was taken, a button to use a free one.
func (u *ui) proxyDone(px Proxy, err error, retry func()) {
	if err != nil {
		p, alt := proxyProblem(px.Addr(), err, u.freePort)
		buttons := []fyne.CanvasObject{widget.NewButton("Retry", retry)}
		if alt != "" {
			use := widget.NewButton("Use "+alt, func() { u.useProxyAddr(alt) })
			use.Importance = widget.HighImportance
			buttons = append([]fyne.CanvasObject{use}, buttons...)
		}
		u.notices.set(noticeProxy, &p, buttons...)
	}
	u.showNewCA()
	u.proxyBar.update()
}

// showNewCA says so when this run generated the local CA: until clients trust
// the new certificate, HTTPS calls to gateways fail on it.
func (u *ui) showNewCA() {
	if u.px == nil || u.demo != nil { // a demo's CA lives as long as the demo
		return
	}
	reason, path := u.px.NewCA(), u.px.CACertPath()
	if reason == "" || path == "" || u.caShown == reason {
		return
	}
	u.caShown = reason
	title := "gatepass made a new local CA for your HTTPS gateways"
	if reason == "no CA stored yet" {
		title = "gatepass made its local CA for your HTTPS gateways"
	}
	u.notices.set(noticeCA, &problem{
		Info:   true,
		Title:  title,
		Detail: "Why: " + reason + ". Its certificate is " + path + "; it can sign only for your gateway hosts.",
		Hint: "Clients must trust it for HTTPS gateway calls: curl --cacert " + ShellQuote(path) +
			", Postman: Settings → Certificates → CA certificates, or add it to the OS trust store (see the README).",
	}, widget.NewButtonWithIcon("Copy path", theme.ContentCopyIcon(), func() { u.copyText(path) }))
}

func (u *ui) showConfigError(err error) {
	p, _ := describeError("load the config", err)
	var buttons []fyne.CanvasObject
	if u.br == nil && u.opts.LoadConfig != nil && u.opts.Open != nil {
		p.Hint = "Fix the file (gatepass reloads it when it changes), or write a new one with the setup form."
		buttons = append(buttons, widget.NewButtonWithIcon("Reload", theme.ViewRefreshIcon(), u.reloadConfig))
		u.configErr, u.configStamp = err, fileStamp(u.opts.ConfigPath)
	}
	if u.br != nil {
		buttons = append(buttons, widget.NewButton("Open setup form", u.showSetup))
	}
	u.notices.set(noticeConfig, &p, buttons...)
}

// reloadConfig reads the config again after an error and, when it is good
// now, starts with it as if the setup form had written it.
func (u *ui) reloadConfig() {
	if u.br != nil || u.reloading || u.opts.LoadConfig == nil || u.opts.Open == nil {
		return
	}
	u.reloading = true
	load, open := u.opts.LoadConfig, u.opts.Open
	go func() {
		cfg, err := load()
		var br Broker
		var px Proxy
		if err == nil {
			br, px, err = open(u.ctx, cfg)
		}
		u.do(func() {
			u.reloading = false
			if err != nil {
				u.showConfigError(err)
				return
			}
			u.configErr = nil
			u.notices.set(noticeConfig, nil)
			u.attach(br, px)
		})
	}()
}

// checkConfigFile reloads a config that had an error once the file changes.
func (u *ui) checkConfigFile() {
	if u.configErr == nil || u.br != nil || u.reloading {
		return
	}
	if st := fileStamp(u.opts.ConfigPath); st != u.configStamp {
		u.configStamp = st
		u.reloadConfig()
	}
}

// fileStamp is what tells a file changed: size and modification time.
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}
