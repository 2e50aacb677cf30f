package app

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// proxyBar shows the proxy address with a copy button and the on/off switch.
type proxyBar struct {
	u      *ui
	obj    *fyne.Container
	addr   *widget.Label
	state  *widget.Label
	toggle *widget.Check
}

func newProxyBar(u *ui) *proxyBar {
	b := &proxyBar{u: u}
	b.addr = widget.NewLabel("") // regular, not monospace: see card.curl
	b.addr.Selectable = true
	b.state = widget.NewLabel("")
	b.toggle = widget.NewCheck("Proxy on", nil)
	copyAddr := widget.NewButtonWithIcon("", theme.ContentCopyIcon(), func() {
		if u.px != nil {
			u.copyText("http://" + u.px.Addr())
		}
	})
	b.obj = container.NewHBox(widget.NewLabelWithStyle("Proxy", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		b.addr, copyAddr, layout.NewSpacer(), b.state, b.toggle)
	b.update()
	return b
}

// update reads the proxy's state. The check's callback is detached while
// it is set, so drawing the state never switches the proxy.
func (b *proxyBar) update() {
	px := b.u.px
	if px == nil {
		b.obj.Hide()
		return
	}
	b.obj.Show()
	setText(b.addr, "http://"+px.Addr())
	on := px.Running()
	b.toggle.OnChanged = nil
	b.toggle.SetChecked(on)
	b.toggle.OnChanged = b.u.setProxy
	if on {
		setText(b.state, "running")
	} else {
		setText(b.state, "stopped")
	}
}

// Notice slots, top to bottom.
const (
	noticeConfig = iota
	noticeDemo
	noticeProxy
	noticeCA
	noticeTray
	noticeSetup
	noticeClipboard
	noticeCount
)

// notices is the stack of window-wide messages (config error, proxy port
// taken, no tray host …), each with its own buttons.
type notices struct {
	box     *fyne.Container
	slots   [noticeCount]*fyne.Container
	changed func() // lays the window out again: a notice came, went or was replaced
}

func newNotices() *notices {
	n := &notices{box: container.NewVBox()}
	for i := range n.slots {
		n.slots[i] = container.NewVBox()
		n.slots[i].Hide()
		n.box.Add(n.slots[i])
	}
	return n
}

// set shows p in the slot, or clears the slot when p is nil.
func (n *notices) set(slot int, p *problem, buttons ...fyne.CanvasObject) {
	s := n.slots[slot]
	s.RemoveAll()
	if p == nil {
		if s.Visible() {
			s.Hide()
			n.refresh()
		}
		return
	}
	title := widget.NewLabelWithStyle(p.Title, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	title.Importance = widget.WarningImportance
	if p.Info {
		title.Importance = widget.SuccessImportance
	}
	title.Wrapping = fyne.TextWrapWord
	// The buttons sit on the title's row, not on a row of their own, so that
	// a few notices still leave the profile cards in view.
	dismiss := widget.NewButtonWithIcon("", theme.CancelIcon(), func() { n.set(slot, nil) })
	s.Add(container.NewBorder(nil, nil, nil, container.NewHBox(append(buttons, dismiss)...), title))
	if p.Detail != "" {
		d := widget.NewLabel(p.Detail)
		d.Wrapping = fyne.TextWrapWord
		s.Add(d)
	}
	if p.Hint != "" {
		h := widget.NewLabel(p.Hint)
		h.Wrapping = fyne.TextWrapWord
		s.Add(h)
	}
	s.Add(widget.NewSeparator())
	s.Show()
	n.refresh()
}

func (n *notices) refresh() {
	if n.changed != nil {
		n.changed()
		return
	}
	n.box.Refresh()
}

// shown reports whether the slot holds a notice (for tests).
func (n *notices) shown(slot int) bool { return n.slots[slot].Visible() }

// requestColumns is the width of each column of the request log; host and
// path share what is left.
var requestColumns = [7]float32{80, 84, 0, 0, 64, 120, 64}

// columns lays out seven cells: fixed-width columns from requestColumns,
// the zero-width ones (host, path) sharing the remaining width.
type columns struct{}

func (columns) layout(size fyne.Size) (xs, ws [7]float32) {
	fixed, flex := float32(0), 0
	for _, w := range requestColumns {
		if w == 0 {
			flex++
		}
		fixed += w
	}
	pad := theme.Padding()
	rest := size.Width - fixed - pad*6
	if rest < 0 {
		rest = 0
	}
	x := float32(0)
	for i, w := range requestColumns {
		if w == 0 {
			w = rest / float32(flex)
		}
		xs[i], ws[i] = x, w
		x += w + pad
	}
	return xs, ws
}

func (c columns) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	xs, ws := c.layout(size)
	for i, o := range objs {
		if i >= 7 {
			break
		}
		o.Move(fyne.NewPos(xs[i], 0))
		o.Resize(fyne.NewSize(ws[i], size.Height))
	}
}

func (columns) MinSize(objs []fyne.CanvasObject) fyne.Size {
	h := float32(0)
	for _, o := range objs {
		h = max(h, o.MinSize().Height)
	}
	w := float32(0)
	for _, cw := range requestColumns {
		w += cw
	}
	return fyne.NewSize(w+200, h)
}

func newRequestRowObject() fyne.CanvasObject {
	cells := make([]fyne.CanvasObject, 7)
	for i := range cells {
		l := widget.NewLabel("")
		l.Truncation = fyne.TextTruncateEllipsis
		cells[i] = l
	}
	return container.New(columns{}, cells...)
}

func setRequestRowObject(o fyne.CanvasObject, r RequestRow) {
	cells := requestCells(r)
	objs := o.(*fyne.Container).Objects
	for i, s := range cells {
		l := objs[i].(*widget.Label)
		imp := widget.MediumImportance
		switch {
		case i == 4 && (r.Status >= 400 || r.Err != ""):
			imp = widget.DangerImportance
		case i == 5 && r.Injected:
			imp = widget.SuccessImportance
		}
		if l.Text != s || l.Importance != imp {
			l.Text, l.Importance = s, imp
			l.Refresh()
		}
	}
}

func requestHeader() fyne.CanvasObject {
	o := newRequestRowObject()
	for i, h := range []string{"Time", "Method", "Host", "Path", "Status", "Injected", "Took"} {
		l := o.(*fyne.Container).Objects[i].(*widget.Label)
		l.Text = h
		l.TextStyle = fyne.TextStyle{Bold: true}
	}
	return o
}

// atLeast lays its objects over its whole area and asks for at least the
// height it returns: a list asks for one row only.
type atLeast func() float32

func (atLeast) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	for _, o := range objs {
		o.Move(fyne.NewPos(0, 0))
		o.Resize(size)
	}
}

func (l atLeast) MinSize(objs []fyne.CanvasObject) fyne.Size {
	m := fyne.NewSize(0, l())
	for _, o := range objs {
		m = m.Max(o.MinSize())
	}
	return m
}
