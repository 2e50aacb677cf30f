package app

import (
	"image/color"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/gatepass-dev/gatepass/broker"
)

// card is one profile's panel. Its widgets are created once; updates set
// texts and enable/disable buttons, so a status change or a countdown tick
// never rebuilds the tree.
type card struct {
	u       *ui
	profile string
	obj     *widget.Card

	dot       *canvas.Circle
	dotColor  fyne.ThemeColorName
	state     *widget.Label
	countdown *widget.Label
	identity  *widget.Label
	reason    *widget.Label
	signIn    *widget.Button
	signOut   *widget.Button
	copyTok   *widget.Button
	curl      *widget.Label
	curlRow   *fyne.Container
	msg       *widget.Label
	retry     *widget.Button
	retryFn   func()
	// copied is set while msg is copyToken's confirmation, which another copy
	// (the curl line, the proxy address) makes untrue.
	copied bool
	body   *fyne.Container
}

func newCard(u *ui, profile string) *card {
	c := &card{u: u, profile: profile}
	c.dot = canvas.NewCircle(color.Transparent)
	c.state = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	c.countdown = widget.NewLabel("")
	c.identity = widget.NewLabel("")
	c.identity.Selectable = true
	c.reason = widget.NewLabel("")
	c.reason.Wrapping = fyne.TextWrapWord
	c.reason.Importance = widget.DangerImportance
	c.reason.Hide()
	c.signIn = widget.NewButtonWithIcon("Sign in", theme.LoginIcon(), c.onSignIn)
	c.signIn.Importance = widget.HighImportance
	c.signOut = widget.NewButtonWithIcon("Sign out", theme.LogoutIcon(), func() { u.signOut(profile) })
	c.copyTok = widget.NewButtonWithIcon("Copy token", theme.ContentCopyIcon(), func() { u.copyToken(profile) })
	// Regular, not monospace: each text style Fyne draws loads its own
	// font faces (~7 MB of heap, bench/README.md "Desktop app"); the
	// buttons already need regular and bold.
	c.curl = widget.NewLabel("")
	c.curl.Selectable = true
	c.curl.Truncation = fyne.TextTruncateEllipsis
	copyCurl := widget.NewButtonWithIcon("", theme.ContentCopyIcon(), func() { u.copyText(c.curl.Text) })
	c.curlRow = container.NewBorder(nil, nil, nil, copyCurl, c.curl)
	c.msg = widget.NewLabel("")
	c.msg.Wrapping = fyne.TextWrapWord
	c.msg.Hide()
	c.retry = widget.NewButton("Retry", func() {
		if c.retryFn != nil {
			c.retryFn()
		}
	})
	c.retry.Hide()

	dot := container.NewCenter(container.NewGridWrap(fyne.NewSize(12, 12), c.dot))
	head := container.NewHBox(dot, c.state, layout.NewSpacer(), c.countdown)
	buttons := container.NewHBox(c.signIn, c.signOut, c.copyTok)
	c.body = container.NewVBox(
		head,
		c.identity,
		c.reason,
		buttons,
		// An action's outcome right under its button, before the curl line.
		container.NewBorder(nil, nil, nil, c.retry, c.msg),
		c.curlRow,
	)
	c.obj = widget.NewCard(profile, "", c.body)
	return c
}

func (c *card) onSignIn() {
	if _, busy := c.u.pending[c.profile]; busy {
		c.u.cancelSignIn(c.profile)
		return
	}
	c.u.signIn(c.profile)
}

// update draws the card from the profile's status.
func (c *card) update(st broker.ProfileStatus, now time.Time) {
	before := c.visibility()
	defer func() {
		if c.visibility() != before {
			c.relayout()
		}
	}()
	_, pending := c.u.pending[st.Profile]
	c.obj.SetSubTitle(st.Issuer)
	setText(c.state, stateLabel(st.State, pending))
	setText(c.identity, identityText(st))
	c.setDot(stateColor(st, now, pending))
	setText(c.countdown, countdownText(st, now))

	if st.State == broker.StateSignInRequired {
		r := "Sign in again to continue."
		if st.Reason != "" {
			r = st.Reason + ". " + r
		}
		setText(c.reason, r)
		c.reason.Show()
	} else if st.State == broker.StateUnknown && st.Reason != "" {
		setText(c.reason, st.Reason)
		c.reason.Show()
	} else {
		c.reason.Hide()
	}

	a := profileActions(st, pending)
	switch {
	case pending:
		c.signIn.SetText("Cancel sign-in")
		c.signIn.SetIcon(theme.CancelIcon())
		c.signIn.Importance = widget.MediumImportance
		c.signIn.Show()
	default:
		c.signIn.SetText("Sign in")
		c.signIn.SetIcon(theme.LoginIcon())
		c.signIn.Importance = widget.HighImportance
		setVisible(c.signIn, a.signIn)
	}
	c.signIn.Refresh()
	setVisible(c.signOut, a.signOut)
	setEnabled(c.signOut, a.signOut)
	c.copyTok.SetText("Copy " + tokenKindLabel(st.Inject))
	setEnabled(c.copyTok, a.copyToken)

	addr, caPath := "", ""
	if c.u.px != nil {
		addr, caPath = c.u.px.Addr(), c.u.px.CACertPath()
	}
	if line := curlExample(addr, st.Gateways, st.PlainHTTP, caPath); line != "" {
		setText(c.curl, line)
		c.curlRow.Show()
	} else {
		c.curlRow.Hide()
	}
}

// visibility is a fingerprint of which optional parts are shown.
func (c *card) visibility() [6]bool {
	return [6]bool{c.reason.Visible(), c.signIn.Visible(), c.signOut.Visible(), c.curlRow.Visible(), c.msg.Visible(), c.retry.Visible()}
}

// relayout lays the window out again after a part of the card appeared or
// went: the card takes its new height, and what is below it moves.
func (c *card) relayout() { c.u.relayout() }

// tick updates only the countdown label and the dot colour.
func (c *card) tick(st broker.ProfileStatus, now time.Time) {
	_, pending := c.u.pending[st.Profile]
	setText(c.countdown, countdownText(st, now))
	c.setDot(stateColor(st, now, pending))
}

func (c *card) setDot(name fyne.ThemeColorName) {
	if name == c.dotColor {
		return
	}
	c.dotColor = name
	c.dot.FillColor = theme.Color(name)
	c.dot.Refresh()
}

func (c *card) showProblem(p problem, retry func()) {
	c.copied = false
	text := p.Title
	if p.Detail != "" {
		text += ": " + p.Detail
	}
	if p.Hint != "" {
		text += "\n" + p.Hint
	}
	c.msg.Importance = widget.DangerImportance
	setText(c.msg, text)
	c.msg.Refresh()
	c.msg.Show()
	if p.Retry && retry != nil {
		c.retry.SetText("Retry")
		c.retryFn = retry
		c.retry.Show()
	} else {
		c.retry.Hide()
	}
	c.relayout()
}

// showSignInURL offers the sign-in address while a sign-in waits for the browser,
// with a button that copies it (the message's button, as for Retry): err says why
// no browser could be opened, and is nil when one was asked to and may still show
// nothing (another display, a command that only logs).
func (c *card) showSignInURL(url string, err error) {
	c.copied = false
	// The address itself is long and does not wrap: the button copies it.
	if err != nil {
		c.msg.Importance = widget.WarningImportance
		setText(c.msg, "Could not open a browser ("+err.Error()+"). Copy the sign-in address and open it in a browser.")
	} else {
		c.msg.Importance = widget.MediumImportance
		setText(c.msg, "Waiting for the sign-in in your browser. If no browser window opened, copy the sign-in address and open it yourself.")
	}
	c.msg.Refresh()
	c.msg.Show()
	c.retry.SetText("Copy address")
	c.retryFn = func() { c.u.copyText(url) }
	c.retry.Show()
	c.relayout()
}

func (c *card) showInfo(text string) {
	c.copied = false
	c.msg.Importance = widget.SuccessImportance
	setText(c.msg, text)
	c.msg.Refresh()
	c.msg.Show()
	c.retry.Hide()
	c.relayout()
}

func (c *card) clearMessage() {
	c.copied = false
	shown := c.msg.Visible()
	c.msg.Hide()
	c.retry.Hide()
	c.retryFn = nil
	if shown {
		c.relayout()
	}
}

// setText changes a label only when its text differs, so an unchanged
// countdown costs nothing.
func setText(l *widget.Label, s string) {
	if l.Text != s {
		l.SetText(s)
	}
}

func setVisible(o fyne.CanvasObject, on bool) {
	if on {
		o.Show()
	} else {
		o.Hide()
	}
}

func setEnabled(b *widget.Button, on bool) {
	if on && b.Disabled() {
		b.Enable()
	} else if !on && !b.Disabled() {
		b.Disable()
	}
}
