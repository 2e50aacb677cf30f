package app

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/gatepass-dev/gatepass/broker"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type tokenCall struct {
	Profile string
	Kind    broker.TokenKind
	MinTTL  time.Duration
}

// fakeBroker records calls. Login blocks until release is closed (when set)
// or ctx is done.
type fakeBroker struct {
	mu         sync.Mutex
	statuses   []broker.ProfileStatus
	events     chan broker.Event
	cancelled  bool
	logins     []string
	logouts    []string
	tokenCalls []tokenCall
	loginErr   error
	noBrowser  error // Login reports that the browser could not be opened
	release    chan struct{}
	token      broker.Token
	tokenErr   error
	statusGate chan struct{} // Statuses waits for it to close when set
}

func newFakeBroker(sts ...broker.ProfileStatus) *fakeBroker {
	return &fakeBroker{statuses: sts, events: make(chan broker.Event, 16)}
}

func (b *fakeBroker) Statuses() []broker.ProfileStatus {
	if b.statusGate != nil {
		<-b.statusGate // a keychain that takes its time
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]broker.ProfileStatus(nil), b.statuses...)
}

func (b *fakeBroker) Subscribe() (<-chan broker.Event, func()) {
	return b.events, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.cancelled {
			b.cancelled = true
			close(b.events)
		}
	}
}

func (b *fakeBroker) Login(ctx context.Context, profile string, address func(url string, err error)) error {
	b.mu.Lock()
	b.logins = append(b.logins, profile)
	release, err, noBrowser := b.release, b.loginErr, b.noBrowser
	b.mu.Unlock()
	address("https://idp.example/authorize?client_id=x", noBrowser) // as the broker does once the browser was asked
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (b *fakeBroker) Logout(_ context.Context, profile string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logouts = append(b.logouts, profile)
	return nil
}

func (b *fakeBroker) FreshToken(_ context.Context, profile string, kind broker.TokenKind, minTTL time.Duration) (broker.Token, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokenCalls = append(b.tokenCalls, tokenCall{profile, kind, minTTL})
	return b.token, b.tokenErr
}

func (b *fakeBroker) calls() (logins, logouts []string, tokens []tokenCall) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logins...), append([]string(nil), b.logouts...), append([]tokenCall(nil), b.tokenCalls...)
}

// fakeProxy is a proxy whose SetRunning fails with setErr, or with
// EADDRINUSE when switched on at an address in taken.
type fakeProxy struct {
	mu       sync.Mutex
	addr     string
	running  bool
	setErr   error
	taken    map[string]bool
	setAddrs []string // SetAddr calls
	rows     chan RequestRow
	caPath   string
	newCA    string
}

func (p *fakeProxy) CACertPath() string { return p.caPath }
func (p *fakeProxy) NewCA() string      { return p.newCA }

func newFakeProxy() *fakeProxy {
	return &fakeProxy{addr: "127.0.0.1:8787", running: true, taken: map[string]bool{}, rows: make(chan RequestRow, 64)}
}

func (p *fakeProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *fakeProxy) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

func (p *fakeProxy) SetRunning(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.setErr != nil {
		return p.setErr
	}
	if on && p.taken[p.addr] {
		return fmt.Errorf("listen tcp %s: bind: %w", p.addr, syscall.EADDRINUSE)
	}
	p.running = on
	return nil
}

// SetAddr behaves as the contract says: validated, and a running proxy
// restarts at the new address or keeps the old one on failure.
func (p *fakeProxy) SetAddr(addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setAddrs = append(p.setAddrs, addr)
	if err := CheckProxyAddr(addr); err != nil {
		return err
	}
	if p.running && p.taken[addr] {
		return fmt.Errorf("listen tcp %s: bind: %w", addr, syscall.EADDRINUSE)
	}
	p.addr = addr
	return nil
}

func (p *fakeProxy) Requests() (<-chan RequestRow, func()) { return p.rows, func() {} }

// fakeTray records what the UI put in the tray.
type fakeTray struct {
	menus []*fyne.Menu
	icons []string
}

func (t *fakeTray) SetSystemTrayMenu(m *fyne.Menu)    { t.menus = append(t.menus, m) }
func (t *fakeTray) SetSystemTrayIcon(r fyne.Resource) { t.icons = append(t.icons, r.Name()) }

func (t *fakeTray) last() *fyne.Menu { return t.menus[len(t.menus)-1] }

func (t *fakeTray) item(tb testing.TB, label string) *fyne.MenuItem {
	tb.Helper()
	for _, it := range t.last().Items {
		if it.Label == label {
			return it
		}
	}
	tb.Fatalf("tray menu has no item %q", label)
	return nil
}

// queue replaces fyne.Do in tests: background goroutines enqueue, the test
// goroutine runs the functions, so UI state stays on one goroutine.
type queue chan func()

// run waits for one queued function and runs it.
func (q queue) run(t *testing.T) {
	t.Helper()
	select {
	case f := <-q:
		f()
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a UI update")
	}
}

var testStart = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

type testEnv struct {
	u     *ui
	clock *fakeClock
	q     queue
	tray  *fakeTray
	br    *fakeBroker
	px    *fakeProxy
	win   fyne.Window
}

// newTestEnv builds the UI on a Fyne test app, with fakes, and starts it.
func newTestEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	a := test.NewTempApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &testEnv{clock: &fakeClock{t: testStart}, q: make(queue, 64), tray: &fakeTray{}}
	e.br, _ = opts.Broker.(*fakeBroker)
	e.px, _ = opts.Proxy.(*fakeProxy)
	e.u = newUI(ctx, a, opts, e.clock)
	e.u.do = func(f func()) { e.q <- f }
	e.u.tray = e.tray
	e.u.freePort = func() (int, error) { return 8788, nil }
	e.win = e.u.win
	e.win.Resize(fyne.NewSize(760, 640))
	e.u.start()
	t.Cleanup(e.u.stop)
	return e
}
