package app

import (
	"bufio"
	"context"
	"fmt"
	"github.com/gatepass-dev/gatepass/internal/syncbuf"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/gatepass-dev/gatepass/broker"
)

// The real-tray test runs the app in a child process (the test binary with
// trayHelperEnv set), because Fyne's GLFW driver must own the main thread.
// The child shows the real window and tray on $DISPLAY and a private D-Bus
// session bus where the test plays the tray host: a minimal
// org.kde.StatusNotifierWatcher. The test then reads the menu the way a
// panel does (com.canonical.dbusmenu GetLayout), clicks "Copy token" with
// Event("clicked"), and checks the fake broker's Token call (reported by the
// child on stdout) and the X clipboard (xclip).
const (
	trayHelperEnv   = "GATEPASS_TRAY_HELPER"
	trayHelperToken = "tray-helper-token-value-WXYZ"
)

// requireDesktop skips without a display, unless this is the real desktop
// test run (GATEPASS_REAL_KEYRING=1 from scripts/with-desktop), where a
// missing display is a failure.
func requireDesktop(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv("DISPLAY") == "" {
		if os.Getenv("GATEPASS_REAL_KEYRING") == "1" {
			t.Fatal("DISPLAY is not set in the desktop test run (scripts/with-desktop should provide Xvfb)")
		}
		t.Skip("no DISPLAY; run under scripts/with-desktop")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
}

// helperBroker reports calls on stdout so the parent test can see them.
type helperBroker struct{ *fakeBroker }

func (b helperBroker) FreshToken(ctx context.Context, profile string, kind broker.TokenKind, minTTL time.Duration) (broker.Token, error) {
	fmt.Printf("token-call %s %s %s\n", profile, kind, minTTL)
	return b.fakeBroker.FreshToken(ctx, profile, kind, minTTL)
}

func (b helperBroker) Login(ctx context.Context, profile string, browserFailed func(url string, err error)) error {
	fmt.Printf("login-call %s\n", profile)
	return b.fakeBroker.Login(ctx, profile, browserFailed)
}

// runTrayHelper is the child: the real app with a fake broker and proxy.
func runTrayHelper() {
	exp := time.Now().Add(time.Hour)
	sts := []broker.ProfileStatus{
		{Profile: "work", Issuer: "https://accounts.google.com", Email: "ada@team.example", State: broker.StateSignedIn,
			Expiry: exp, Inject: broker.IDToken, Gateways: []string{"api.team.example"}},
	}
	fb := newFakeBroker(sts...)
	fb.token = broker.Token{Kind: broker.IDToken, Value: trayHelperToken, Expiry: exp}
	fmt.Printf("expiry %s\n", exp.Format("15:04"))
	err := Run(context.Background(), Options{Broker: helperBroker{fb}, Proxy: newFakeProxy(), Version: "test"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
	fmt.Println("quit")
	os.Exit(0)
}

// watcher is a minimal org.kde.StatusNotifierWatcher.
type watcher struct{ registered chan string }

func (w *watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	w.registered <- string(sender) + " " + service
	return nil
}

func (w *watcher) RegisterStatusNotifierHost(string) *dbus.Error { return nil }

// startSessionBus starts a private dbus-daemon and returns its address.
func startSessionBus(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read dbus-daemon address: %v", err)
	}
	return strings.TrimSpace(addr)
}

type menuItem struct {
	ID               int32
	Label, Type      string
	Enabled, Visible bool
}

// readMenu calls com.canonical.dbusmenu.GetLayout as a tray host does.
func readMenu(conn *dbus.Conn, dest string) ([]menuItem, error) {
	var rev uint32
	var layout struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	err := conn.Object(dest, "/StatusNotifierMenu").Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&rev, &layout)
	if err != nil {
		return nil, err
	}
	var items []menuItem
	for _, c := range layout.Children {
		// Each child is a (ia{sv}av) struct.
		fields, ok := c.Value().([]any)
		if !ok || len(fields) < 2 {
			return nil, fmt.Errorf("unexpected menu child %v", c)
		}
		it := menuItem{ID: fields[0].(int32), Enabled: true, Visible: true}
		for k, v := range fields[1].(map[string]dbus.Variant) {
			switch k {
			case "label":
				it.Label, _ = v.Value().(string)
			case "type":
				it.Type, _ = v.Value().(string)
			case "enabled":
				it.Enabled, _ = v.Value().(bool)
			case "visible":
				it.Visible, _ = v.Value().(bool)
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// syncBuffer collects what another goroutine writes (a child's output, log lines)
// while the test reads it.
type syncBuffer = syncbuf.Buffer

// lines collects the child's stdout lines.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		l.mu.Lock()
		l.all = append(l.all, s.Text())
		l.mu.Unlock()
	}
}

func (l *lines) find(prefix string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.all {
		if strings.HasPrefix(s, prefix) {
			return s, true
		}
	}
	return "", false
}

func TestTrayOverDBus(t *testing.T) {
	requireDesktop(t, "dbus-daemon", "xclip")
	addr := startSessionBus(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to private bus: %v", err)
	}
	defer conn.Close()
	w := &watcher{registered: make(chan string, 4)}
	if err := conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own watcher name: %v %v", reply, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), trayHelperEnv+"=1", "DBUS_SESSION_BUS_ADDRESS="+addr)
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	child.Stderr = stderr
	start := time.Now()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	out := &lines{}
	readDone := make(chan struct{})
	go func() { out.read(stdout); close(readDone) }()
	exited := make(chan error, 1)
	go func() { <-readDone; exited <- child.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	}()

	var item string
	select {
	case item = <-w.registered:
		t.Logf("tray registered after %v: %s", time.Since(start).Round(time.Millisecond), item)
	case err := <-exited:
		t.Fatalf("app exited before registering its tray item: %v", err)
	case <-ctx.Done():
		t.Fatal("the app never called RegisterStatusNotifierItem")
	}
	sender := strings.Fields(item)[0]
	// Hosts show the item's Title as its name and tooltip (a bare binary has
	// no FyneApp.toml metadata, so Run supplies it).
	if v, err := conn.Object(sender, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.Title"); err != nil || v.Value() != "gatepass" {
		t.Errorf("tray item Title = %v, %v; want \"gatepass\"", v.Value(), err)
	}

	exp, _ := out.find("expiry ")
	want := []string{
		"ada@team.example · expires " + strings.TrimPrefix(exp, "expiry ") + " enabled=false",
		"Sign out enabled=true",
		"Copy token enabled=true",
		"---",
		"Open gatepass enabled=true",
		"---",
		"Quit enabled=true",
	}
	render := func(menu []menuItem) ([]string, map[string]int32) {
		var got []string
		ids := map[string]int32{}
		for _, m := range menu {
			if m.Type == "separator" {
				got = append(got, "---")
				continue
			}
			got = append(got, fmt.Sprintf("%s enabled=%v", m.Label, m.Enabled))
			ids[m.Label] = m.ID
		}
		return got, ids
	}
	// The menu is filled in item by item once the app's event loop runs;
	// poll until it is complete (or the deadline says it never will be).
	var got []string
	var ids map[string]int32
	deadline := time.Now().Add(20 * time.Second)
	for {
		menu, err := readMenu(conn, sender)
		if err == nil {
			got, ids = render(menu)
			if strings.Join(got, "\n") == strings.Join(want, "\n") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tray menu (err %v):\n%s\nwant:\n%s", err, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	menuObj := conn.Object(sender, "/StatusNotifierMenu")
	// click clicks the item labelled label, with its ID read afresh for each try: the
	// app rebuilds its menu on every change, with new item IDs, so an ID read a moment
	// before may name no item when the click arrives ("no menu item with ID 3", a CI
	// flake). It tries again until done sees the click's effect.
	click := func(label string, flags dbus.Flags, done func() bool) {
		t.Helper()
		for range 5 {
			if menu, err := readMenu(conn, sender); err == nil {
				_, ids = render(menu)
				if err := menuObj.Call("com.canonical.dbusmenu.Event", flags, ids[label], "clicked", dbus.MakeVariant(""), uint32(0)).Err; err != nil {
					t.Fatalf("click %s: %v", label, err)
				}
			}
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if done() {
					return
				}
			}
		}
		t.Fatalf("clicking %s in the tray menu had no effect", label)
	}
	click("Copy token", 0, func() bool { _, ok := out.find("token-call "); return ok })
	if call, _ := out.find("token-call "); call != "token-call work id_token "+copyMinTTL.String() {
		t.Errorf("broker call %q", call)
	}
	var clip string
	deadline = time.Now().Add(10 * time.Second)
	for clip != trayHelperToken && time.Now().Before(deadline) {
		b, _ := exec.Command("xclip", "-o", "-selection", "clipboard").Output()
		clip = string(b)
		time.Sleep(100 * time.Millisecond)
	}
	if clip != trayHelperToken {
		t.Errorf("clipboard holds %q, want the token", clip)
	}

	// Quit from the tray ends the app. The app may leave the bus before
	// answering, so the click expects no reply.
	var exitErr error
	gone := false
	click("Quit", dbus.FlagNoReplyExpected, func() bool {
		select {
		case exitErr = <-exited:
			gone = true
		default:
		}
		return gone
	})
	if exitErr != nil {
		t.Errorf("app exited with %v", exitErr)
	}
	if _, ok := out.find("quit"); !ok {
		t.Error("Run did not return after Quit")
	}
	if strings.Contains(stderr.String(), "Error in Fyne call thread") {
		t.Errorf("Fyne thread error on the way out:\n%s", stderr.String())
	}
}
