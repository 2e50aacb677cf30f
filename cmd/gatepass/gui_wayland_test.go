package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGUIWaylandSignIn is TestGUIRealWindowSignIn on Wayland: the app built
// with -tags wayland (such a binary runs only on Wayland) opens its window
// on a headless sway, and the same person-like steps run against it:
// screenshot with grim, OCR, clicks through sway's seat. Then "Copy ID
// token" must put a JWT on the Wayland clipboard and say so. The signed-in
// window with its request row is kept in docs/screenshot-wayland.png when
// GATEPASS_UPDATE_SCREENSHOT=1.
func TestGUIWaylandSignIn(t *testing.T) {
	requireKeychain(t)
	tools := []string{"sway", "swaymsg", "wayvnc", "grim", "wl-paste", "tesseract", "convert", "curl"}
	if os.Getuid() == 0 {
		tools = append(tools, "setpriv") // sway refuses to run as root
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for the Wayland test (scripts/deps installs it)", tool)
		}
	}
	bin := buildWaylandBinary(t)
	sw := startSway(t)
	sw.addSeatDevices(t)

	listen := freePort(t)
	var stderr syncBuffer
	app := exec.Command(bin, "gui", "--demo", "--listen", listen, "--browser-command", browserCommand("demo-allow"))
	// No DISPLAY: the window must come up on Wayland, not fall back to X.
	// The app keeps its own XDG_RUNTIME_DIR (its agent socket is there);
	// libwayland takes sway's socket by absolute path.
	for _, kv := range testEnv(t) {
		if k, _, _ := strings.Cut(kv, "="); k != "DISPLAY" && k != "WAYLAND_DISPLAY" {
			app.Env = append(app.Env, kv)
		}
	}
	app.Env = append(app.Env, "WAYLAND_DISPLAY="+sw.display, "LANG=en_US.UTF-8", "LIBGL_ALWAYS_SOFTWARE=1",
		"XDG_CONFIG_HOME="+filepath.Join(testDir(t), "config"))
	app.Stderr = &stderr
	stopApp, _ := startGroup(t, app, "gatepass gui")
	defer stopApp()

	// The window exists: sway maps it (Fyne also maps a "SystrayMonitor"
	// window on Wayland, so match by name).
	var rect swayRect
	found := false
	deadline := time.Now().Add(60 * time.Second)
	for !found && time.Now().Before(deadline) {
		if rect, found = sw.window(t, "gatepass"); !found {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if !found {
		t.Fatalf("no gatepass window appeared on sway within 60s; sway's windows: %s\nstderr:\n%s", sw.windowNames(t), stderr.String())
	}
	w := guiWindow{
		// Screenshots are of the window's rectangle, clicks go to the same
		// rectangle in sway's layout coordinates; the rectangle is read
		// again with every screenshot in case sway re-tiles.
		shoot: func(png string) error {
			r, ok := sw.window(t, "gatepass")
			if !ok {
				return errors.New("the gatepass window is gone")
			}
			rect = r
			return sw.run("grim", "-g", fmt.Sprintf("%d,%d %dx%d", r.X, r.Y, r.Width, r.Height), png)
		},
		click: func(x, y int) error {
			return sw.click(rect.X+x, rect.Y+y)
		},
		png: filepath.Join(testDir(t), "window.png"),
	}
	text := signInThroughWindow(t, w, listen, &stderr)
	if os.Getenv("GATEPASS_UPDATE_SCREENSHOT") == "1" {
		updateScreenshot(t, w.png, "screenshot-wayland.png")
	}

	// "Copy ID token" puts the ID token on the Wayland clipboard, and the
	// card says so.
	var words []ocrWord
	var btn ocrWord
	found = false
	for i := 0; i < 10 && !found; i++ {
		words = screenWords(t, w.shoot, w.png, true)
		if btn, found = findButton(words, "Copy", "I"); !found { // "Copy ID token", not "Copy export line"
			time.Sleep(500 * time.Millisecond)
		}
	}
	if !found {
		t.Fatalf("no \"Copy ID token\" on the window; it shows: %s", screenText(words))
	}
	if err := w.click(btn.left+btn.width/2, btn.top+btn.height/2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		text = screenText(screenWords(t, w.shoot, w.png, false))
		if strings.Contains(text, "Copied") || strings.Contains(text, "Could not copy") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if strings.Contains(text, "eyJ") {
		t.Errorf("the window shows a token")
	}
	// wl-paste reads the selection through wlr-data-control, without
	// focus. The value is only checked for its shape, never printed.
	paste := exec.Command("wl-paste", "-n")
	paste.Env = sw.env
	clip, err := paste.Output()
	parts := strings.Split(string(clip), ".")
	onClipboard := err == nil && len(parts) == 3 && strings.HasPrefix(parts[0], "eyJ") && parts[1] != "" && parts[2] != ""
	if !onClipboard {
		t.Errorf("the clipboard does not hold a JWT after Copy ID token (wl-paste: %v; %d bytes, %d dot-separated parts)", err, len(clip), len(parts))
	}
	switch {
	case strings.Contains(text, "Copied"):
	case onClipboard && strings.Contains(text, "Could not copy"):
		// GLFW on Wayland answers a read of the clipboard with nothing until
		// the compositor has announced the new selection, so reading back
		// right after setting fails on the first copy of a session.
		t.Errorf("the token is on the clipboard, but the window says it could not be copied (the read-back right after SetContent sees no selection yet on Wayland): %s", text)
	default:
		t.Errorf("after clicking Copy ID token the window shows: %s", text)
	}
	fmt.Fprintln(os.Stderr, "window text:", text)
}

// buildWaylandBinary builds the app with -tags wayland into the test's
// directory. Without -race, to keep the cgo build short: the first build of
// Fyne's GLFW for Wayland takes minutes on a small machine.
func buildWaylandBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(testDir(t), "gatepass-wayland")
	t.Log("building gatepass with -tags wayland (the first build of GLFW for Wayland takes minutes)")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-tags", "wayland no_emoji", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags wayland: %v\n%s", err, out)
	}
	t.Logf("built the Wayland binary in %s", time.Since(start).Round(time.Second))
	return bin
}

// swaySession is a headless sway: display is its Wayland socket (absolute
// path), env the environment for clients that talk to it (swaymsg, grim,
// wl-paste, wayvnc).
type swaySession struct {
	dir     string
	display string
	env     []string
	log     *syncBuffer
}

// startSway starts sway with the headless backend and one 1024x768 output
// in its own runtime dir under /tmp. sway refuses to run as root, so as root
// (CI) it runs as nobody; its directory must then be traversable by nobody,
// which t.TempDir's may not be.
func startSway(t *testing.T) *swaySession {
	t.Helper()
	dir, err := os.MkdirTemp("", "gatepass-sway-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // registered first: runs after sway is gone
	run, home, conf := filepath.Join(dir, "run"), filepath.Join(dir, "home"), filepath.Join(dir, "sway.conf")
	err = errors.Join(os.Chmod(dir, 0o711), os.Mkdir(run, 0o700), os.Mkdir(home, 0o700),
		os.WriteFile(conf, []byte("output HEADLESS-1 resolution 1024x768\ndefault_border none\nxwayland disable\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"sway", "-c", conf}
	if os.Getuid() == 0 {
		if err := errors.Join(os.Chown(run, 65534, 65534), os.Chown(home, 65534, 65534)); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + run,
		"WLR_BACKENDS=headless", "WLR_RENDERER=pixman", "WLR_HEADLESS_OUTPUTS=1", "WLR_LIBINPUT_NO_DEVICES=1"}
	sw := &swaySession{dir: dir, log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = sw.log, sw.log
	stop, exited := startGroup(t, cmd, "sway")
	t.Cleanup(stop)

	var ipc string
	deadline := time.Now().Add(20 * time.Second)
	for (sw.display == "" || ipc == "") && time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("sway quit; its log:\n%s", sw.log.String())
		default:
		}
		socks, _ := filepath.Glob(filepath.Join(run, "wayland-*"))
		for _, s := range socks {
			if !strings.HasSuffix(s, ".lock") {
				sw.display = s
			}
		}
		if m, _ := filepath.Glob(filepath.Join(run, "sway-ipc.*.sock")); len(m) > 0 {
			ipc = m[0]
		}
		if sw.display == "" || ipc == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if sw.display == "" || ipc == "" {
		t.Fatalf("sway made no Wayland and IPC sockets within 20s; its log:\n%s", sw.log.String())
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "DISPLAY" && k != "WAYLAND_DISPLAY" && k != "XDG_RUNTIME_DIR" && k != "SWAYSOCK" {
			sw.env = append(sw.env, kv)
		}
	}
	sw.env = append(sw.env, "WAYLAND_DISPLAY="+sw.display, "XDG_RUNTIME_DIR="+run, "SWAYSOCK="+ipc)
	return sw
}

// addSeatDevices gives sway's seat a pointer and a keyboard: a headless
// seat has none (GLFW then has no wl_seat input to work with and clicks go
// nowhere) until a client creates virtual ones, as wayvnc does.
func (sw *swaySession) addSeatDevices(t *testing.T) {
	t.Helper()
	_, port, _ := strings.Cut(freePort(t), ":")
	cmd := exec.Command("wayvnc", "127.0.0.1", port)
	cmd.Env = sw.env
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	stop, exited := startGroup(t, cmd, "wayvnc")
	t.Cleanup(stop)
	var seats []struct {
		Devices []struct{ Type string } `json:"devices"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := sw.output("swaymsg", "-r", "-t", "get_seats")
		if err == nil && json.Unmarshal(out, &seats) == nil && len(seats) > 0 {
			pointer := false
			for _, d := range seats[0].Devices {
				pointer = pointer || d.Type == "pointer"
			}
			if pointer {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("wayvnc quit:\n%s", log.String())
		default:
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("sway's seat got no pointer from wayvnc within 20s; wayvnc:\n%s\nsway:\n%s", log.String(), sw.log.String())
}

// run runs a Wayland client of this sway.
func (sw *swaySession) run(name string, args ...string) error {
	out, err := sw.output(name, args...)
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (sw *swaySession) output(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = sw.env
	return cmd.CombinedOutput()
}

// click clicks button 1 at (x, y) in sway's layout coordinates. The cursor
// goes to a neighbouring point first: a pointer that only enters a surface
// gives GLFW no position (it takes it from motion events alone), and Fyne
// would then click wherever the pointer last moved, or at 0,0.
func (sw *swaySession) click(x, y int) error {
	for _, c := range []string{
		"seat seat0 cursor set " + strconv.Itoa(x+1) + " " + strconv.Itoa(y+1),
		"seat seat0 cursor set " + strconv.Itoa(x) + " " + strconv.Itoa(y),
		"seat seat0 cursor press button1",
		"seat seat0 cursor release button1",
	} {
		if err := sw.run("swaymsg", c); err != nil {
			return err
		}
	}
	return nil
}

type swayRect struct{ X, Y, Width, Height int }

type swayNode struct {
	Name          string     `json:"name"`
	Type          string     `json:"type"`
	Visible       *bool      `json:"visible"`
	Rect          swayRect   `json:"rect"`
	Nodes         []swayNode `json:"nodes"`
	FloatingNodes []swayNode `json:"floating_nodes"`
}

func (sw *swaySession) tree(t *testing.T) swayNode {
	t.Helper()
	out, err := sw.output("swaymsg", "-r", "-t", "get_tree")
	if err != nil {
		t.Fatalf("swaymsg get_tree: %v: %s\nsway:\n%s", err, out, sw.log.String())
	}
	var root swayNode
	if err := json.Unmarshal(out, &root); err != nil {
		t.Fatalf("swaymsg get_tree: %v", err)
	}
	return root
}

// window returns the rectangle of the visible window named name.
func (sw *swaySession) window(t *testing.T, name string) (swayRect, bool) {
	t.Helper()
	var find func(n swayNode) (swayRect, bool)
	find = func(n swayNode) (swayRect, bool) {
		if n.Name == name && n.Visible != nil && *n.Visible && n.Rect.Width > 0 && n.Rect.Height > 0 {
			return n.Rect, true
		}
		for _, c := range append(n.Nodes, n.FloatingNodes...) {
			if r, ok := find(c); ok {
				return r, true
			}
		}
		return swayRect{}, false
	}
	return find(sw.tree(t))
}

// windowNames lists the windows sway has, for failure messages.
func (sw *swaySession) windowNames(t *testing.T) string {
	t.Helper()
	var names []string
	var walk func(n swayNode)
	walk = func(n swayNode) {
		if n.Visible != nil {
			names = append(names, fmt.Sprintf("%q (visible %v)", n.Name, *n.Visible))
		}
		for _, c := range append(n.Nodes, n.FloatingNodes...) {
			walk(c)
		}
	}
	walk(sw.tree(t))
	return strings.Join(names, ", ")
}

// startGroup starts cmd in its own process group and returns the function
// that ends it: SIGINT to the process, then SIGKILL to the whole group so
// nothing it started is left behind. A process that needs more than 10s to
// quit is an error. exited is closed when the process has ended.
func startGroup(t *testing.T, cmd *exec.Cmd, name string) (stop func(), exited <-chan struct{}) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	return func() {
		if stopped {
			return
		}
		stopped = true
		pgid := cmd.Process.Pid
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not quit within 10s of SIGINT", name)
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}, done
}
