package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/internal/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ocrWord is one word tesseract read off a screenshot, with its box.
type ocrWord struct {
	text                     string
	left, top, width, height int
}

// screenWords takes a screenshot into png with shoot and reads it back with
// tesseract, the way a person looks at the screen. With buttons set, the
// image is first made black-on-white at 2x (tesseract misses white text on
// coloured buttons otherwise) and boxes are scaled back to screenshot pixels.
func screenWords(t *testing.T, shoot func(png string) error, png string, buttons bool) []ocrWord {
	t.Helper()
	if err := shoot(png); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	src, scale, args := png, 1, []string{}
	if buttons {
		src, scale, args = png+".ocr.png", 2, []string{"--psm", "11"}
		if out, err := exec.Command("convert", png, "-colorspace", "Gray", "-resize", "200%", "-threshold", "60%", "-negate", src).CombinedOutput(); err != nil {
			t.Fatalf("convert: %v: %s", err, out)
		}
	}
	out, err := exec.Command("tesseract", append([]string{src, "-"}, append(args, "tsv")...)...).Output()
	if err != nil {
		t.Fatalf("tesseract: %v", err)
	}
	var words []ocrWord
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 12 || f[0] != "5" || strings.TrimSpace(f[11]) == "" {
			continue
		}
		n := func(i int) int { v, _ := strconv.Atoi(f[i]); return v / scale }
		words = append(words, ocrWord{text: f[11], left: n(6), top: n(7), width: n(8), height: n(9)})
	}
	return words
}

func screenText(words []ocrWord) string {
	var b strings.Builder
	for _, w := range words {
		b.WriteString(w.text + " ")
	}
	return b.String()
}

// findButton returns the box of the word a followed on the same line by a
// word starting with b ("Sign" "in"; OCR may cut the second word short).
func findButton(words []ocrWord, a, b string) (ocrWord, bool) {
	for i := 0; i+1 < len(words); i++ {
		if strings.HasSuffix(words[i].text, a) && strings.HasPrefix(words[i+1].text, b) && absInt(words[i].top-words[i+1].top) < 10 {
			return words[i], true
		}
	}
	return ocrWord{}, false
}

func absInt(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// TestGUIRealWindowSignIn starts the real desktop app under Xvfb with the
// embedded demo, finds the "Sign in" button on the screen, clicks it with
// xdotool, lets the scripted browser approve, and reads "Signed in" and the
// user's email back off the window. The last screenshot is kept in
// docs/screenshot.png when GATEPASS_UPDATE_SCREENSHOT=1.
func TestGUIRealWindowSignIn(t *testing.T) {
	listen := freePort(t)
	w, stderr := startGUI(t, listen, browserCommand("demo-allow"))
	text := signInThroughWindow(t, w, listen, stderr)
	if os.Getenv("GATEPASS_UPDATE_SCREENSHOT") == "1" {
		updateScreenshot(t, w.png, "screenshot.png")
	}
	fmt.Fprintln(os.Stderr, "window text:", text)
}

// TestGUIRealWindowNoBrowser: when the browser cannot be opened, the window itself
// (not only stderr, which an app started from a menu never shows) says so and offers
// the sign-in address with a button to copy it.
func TestGUIRealWindowNoBrowser(t *testing.T) {
	w, stderr := startGUI(t, freePort(t), browserCommand("fail"))
	clickButton(t, w, "Sign", "i")
	var text string
	for i := 0; i < 15; i++ {
		// The message as read plainly, its "Copy address" button as read for
		// buttons (black on white, 2x; tesseract may read "Copy" as "Conv" or "Canw").
		text = screenText(screenWords(t, w.shoot, w.png, false))
		words := screenWords(t, w.shoot, w.png, true)
		button := false
		for i := 0; i+1 < len(words); i++ {
			w0 := words[i].text
			button = button || (len(w0) == 4 && strings.HasPrefix(w0, "C") && words[i+1].text == "address")
		}
		if strings.Contains(text, "Could not open a browser") && strings.Contains(text, "address") && button {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("with no browser the window shows: %s\nstderr: %s", text, stderr.String())
}

// startGUI starts `gatepass gui --demo` on a free proxy port with the given browser
// command, waits for its window and returns it with the app's stderr. The app is
// stopped (SIGINT, within 10 s) when the test ends.
func startGUI(t *testing.T, listen, browser string) (guiWindow, *syncBuffer) {
	t.Helper()
	return startGUIArgs(t, "gui", "--demo", "--listen", listen, "--browser-command", browser)
}

// startGUIArgs runs gatepass with args and waits for its window.
func startGUIArgs(t *testing.T, args ...string) (guiWindow, *syncBuffer) {
	t.Helper()
	requireKeychain(t)
	if os.Getenv("DISPLAY") == "" {
		t.Fatal("no DISPLAY: run under scripts/with-desktop")
	}
	for _, tool := range []string{"xdotool", "import", "tesseract"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/deps installs it)", tool)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, gatepassBin, args...)
	cmd.Env = append(testEnv(t), "LANG=en_US.UTF-8", "XDG_CONFIG_HOME="+filepath.Join(testDir(t), "config"))
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gatepass gui did not quit within 10s of SIGINT")
		}
	})

	// The window exists.
	var window string
	deadline := time.Now().Add(60 * time.Second)
	for window == "" && time.Now().Before(deadline) {
		out, _ := exec.Command("xdotool", "search", "--onlyvisible", "--name", "^gatepass").Output()
		if f := strings.Fields(string(out)); len(f) > 0 {
			window = f[0]
		} else {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if window == "" {
		t.Fatalf("no gatepass window appeared within 60s; stderr:\n%s", stderr.String())
	}
	return guiWindow{
		shoot: func(png string) error {
			if out, err := exec.Command("import", "-window", window, png).CombinedOutput(); err != nil {
				return fmt.Errorf("import: %v: %s", err, out)
			}
			return nil
		},
		click: func(x, y int) error {
			if out, err := exec.Command("xdotool", "mousemove", "--window", window, strconv.Itoa(x), strconv.Itoa(y), "click", "1").CombinedOutput(); err != nil {
				return fmt.Errorf("xdotool click: %v: %s", err, out)
			}
			return nil
		},
		png: filepath.Join(testDir(t), "window.png"),
	}, stderr
}

// guiWindow is a real gatepass window on some display: shoot screenshots it
// into a PNG, click clicks at a point given in that screenshot's pixels.
type guiWindow struct {
	shoot func(png string) error
	click func(x, y int) error
	png   string // where the screenshots go; the last one stays there
}

// signInThroughWindow is what a person does in a fresh window of `gatepass
// gui --demo`: find "Sign in" on the screen and click it, read "Signed in"
// and the user's email back, send a request through the app's proxy (at
// listen) and see it in the window's request log. It returns the window's
// text at the end; stderr is the app's, for the gateway address and
// failure messages.
func signInThroughWindow(t *testing.T, w guiWindow, listen string, stderr *syncBuffer) string {
	t.Helper()
	clickButton(t, w, "Sign", "i")

	// The window shows the signed-in state and who.
	var words []ocrWord
	var text string
	for i := 0; i < 40; i++ {
		words = screenWords(t, w.shoot, w.png, false)
		text = screenText(words)
		if strings.Contains(text, "Signed in") && strings.Contains(text, "dev@example.test") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(text, "Signed in") || !strings.Contains(text, "dev@example.test") {
		t.Fatalf("after clicking Sign in the window shows: %s\nbrowser: %s\nstderr: %s", text, browserLog(t), stderr.String())
	}
	// A request through the proxy shows up in the window's request log.
	m := regexp.MustCompile(`gateway (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no demo gateway address on stderr: %s", stderr.String())
	}
	out, err := exec.Command("curl", "-sS", "-x", "http://"+listen, m[1]+"/hello").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello, dev@example.test") {
		t.Fatalf("curl through the app's proxy: %v: %s", err, out)
	}
	for i := 0; i < 20; i++ {
		text = screenText(screenWords(t, w.shoot, w.png, false))
		if strings.Contains(text, "hello") && strings.Contains(text, "GET") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(text, "hello") || !strings.Contains(text, "GET") || !strings.Contains(text, "200") {
		t.Errorf("the request log does not show GET /hello 200: %s", text)
	}
	if strings.Contains(text, "eyJ") {
		t.Errorf("the window shows a token")
	}
	return text
}

// clickButton finds the button whose label starts with the words first and a word
// beginning with next (findButton), waiting up to 10 s for it, and clicks it.
func clickButton(t *testing.T, w guiWindow, first, next string) {
	t.Helper()
	var words []ocrWord
	for i := 0; i < 20; i++ {
		words = screenWords(t, w.shoot, w.png, true)
		if btn, found := findButton(words, first, next); found {
			if err := w.click(btn.left+btn.width/2, btn.top+btn.height/2); err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no %q button on the window; it shows: %s", first+" "+next+"…", screenText(words))
}

// updateScreenshot keeps the screenshot png as docs/<name>.
func updateScreenshot(t *testing.T, png, name string) {
	t.Helper()
	data, err := os.ReadFile(png)
	if err == nil {
		err = os.WriteFile(filepath.Join("..", "..", "docs", name), data, 0o644)
	}
	if err != nil {
		t.Errorf("update docs/%s: %v", name, err)
	}
}

// syncBuffer collects what another goroutine writes (a child's output, log lines)
// while the test reads it.
type syncBuffer = syncbuf.Buffer

// TestGUISecondInstance: starting gatepass again for a config whose app runs
// brings that window forward and exits 0 (no second agent, no error); with a
// headless `gatepass proxy` on the config it says so and how to go on.
func TestGUISecondInstance(t *testing.T) {
	p, _, profile := demoSetup(t, demo.Options{})
	cfg := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", freePort(t)))
	startGUIArgs(t, "--config", cfg, "gui")
	_, stderr, code := runGatepass(t, nil, "--config", cfg, "gui")
	if code != 0 || !strings.Contains(stderr, "already running for this config; brought its window forward") {
		t.Errorf("second gatepass: exit %d, stderr %q", code, stderr)
	}

	cfg2 := demoConfig(t, p, profile, fmt.Sprintf("listen = %q", freePort(t)))
	startAgent(t, cfg2)
	waitAgent(t, cfg2)
	_, stderr, code = runGatepass(t, nil, "--config", cfg2, "gui")
	if code == 0 || !strings.Contains(stderr, "`gatepass proxy` (pid") || !strings.Contains(stderr, "stop it to use the app") {
		t.Errorf("gatepass gui beside gatepass proxy: exit %d, stderr %q", code, stderr)
	}
}

// waitAgent waits until an agent answers on cfg's control socket.
func waitAgent(t *testing.T, cfg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if out, _, _ := runGatepass(t, nil, "--config", cfg, "status"); strings.Contains(out, "proxy: running") {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("no agent answered within 30s")
}
