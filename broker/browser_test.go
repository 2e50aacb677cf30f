package broker

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/google/go-cmp/cmp"
)

// fakeStart stands in for starting processes: it records every argv and
// "starts" all but those whose argv[0] is in missing. No command ever runs.
type fakeStart struct {
	mu      sync.Mutex
	missing []string
	exitErr error // what a started command exits with
	argvs   [][]string
}

func (f *fakeStart) start(argv []string) (<-chan error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.argvs = append(f.argvs, slices.Clone(argv))
	if slices.Contains(f.missing, argv[0]) {
		return nil, &exec.Error{Name: argv[0], Err: exec.ErrNotFound}
	}
	done := make(chan error, 1)
	done <- f.exitErr
	return done, nil
}

func (f *fakeStart) started() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.argvs)
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

const testURL = "http://127.0.0.1:4711/"

// TestChooseBrowserPrecedence: DESIGN §2, --browser-command wins, then
// $BROWSER, then the OS opener.
func TestChooseBrowserPrecedence(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		flag, browser, goos string
		want                []string
	}{
		"flag over $BROWSER":       {"my-opener --tab", "env-browser", "linux", []string{"my-opener", "--tab", testURL}},
		"flag without $BROWSER":    {"my-opener", "", "linux", []string{"my-opener", testURL}},
		"$BROWSER without flag":    {"", "env-browser --new", "linux", []string{"env-browser", "--new", testURL}},
		"blank flag is no flag":    {"  \t", "env-browser", "linux", []string{"env-browser", testURL}},
		"linux opener":             {"", "", "linux", []string{"xdg-open", testURL}},
		"freebsd opener":           {"", "", "freebsd", []string{"xdg-open", testURL}},
		"darwin opener":            {"", "", "darwin", []string{"open", testURL}},
		"windows opener":           {"", "", "windows", []string{"rundll32", "url.dll,FileProtocolHandler", testURL}},
		"blank $BROWSER is unset":  {"", "   ", "darwin", []string{"open", testURL}},
		"only separators is unset": {"", "::", "linux", []string{"xdg-open", testURL}},
		"empty quotes are no flag": {"''", "env-browser", "linux", []string{"env-browser", testURL}},
		"empty $BROWSER entries":   {"", `"":next`, "linux", []string{"next", testURL}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fakeStart{}
			br := chooseBrowser(tc.flag, env(map[string]string{"BROWSER": tc.browser}), tc.goos, f.start)
			if err := br.Open(testURL); err != nil {
				t.Fatalf("Open: %v", err)
			}
			if diff := cmp.Diff([][]string{tc.want}, f.started()); diff != "" {
				t.Errorf("commands started (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChooseBrowserReadsEnvironment: the exported ChooseBrowser reads $BROWSER
// from the process environment and still lets the flag win. Nothing is opened.
func TestChooseBrowserReadsEnvironment(t *testing.T) {
	t.Setenv("BROWSER", `"/opt/Env Browser/browser" --private`)
	got, ok := ChooseBrowser("").(CommandBrowser)
	if !ok || !slices.Equal(got.Argv, []string{"/opt/Env Browser/browser", "--private"}) || got.source != envSource {
		t.Errorf("ChooseBrowser(\"\") with $BROWSER = %#v, want the $BROWSER command", got)
	}
	got, ok = ChooseBrowser("flag-opener").(CommandBrowser)
	if !ok || !slices.Equal(got.Argv, []string{"flag-opener"}) || got.source != flagSource {
		t.Errorf("ChooseBrowser(flag-opener) with $BROWSER = %#v, want the flag's command", got)
	}
}

// TestBrowserCommandQuoting: a command whose path has spaces can be quoted, in
// the flag and in $BROWSER.
func TestBrowserCommandQuoting(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		flag, browser string
		want          []string
	}{
		"flag, double quotes": {`"/opt/My Browser/bin/browser" --new-window`, "", []string{"/opt/My Browser/bin/browser", "--new-window", testURL}},
		"flag, single quotes": {`'/opt/My Browser/bin/browser' --class='a b'`, "", []string{"/opt/My Browser/bin/browser", "--class=a b", testURL}},
		"flag, backslash":     {`/opt/My\ Browser/bin/browser`, "", []string{"/opt/My Browser/bin/browser", testURL}},
		"flag keeps ':'":      {`opener --profile=a:b`, "", []string{"opener", "--profile=a:b", testURL}},
		"$BROWSER, quotes":    {"", `"/opt/My Browser/bin/browser" --new-window`, []string{"/opt/My Browser/bin/browser", "--new-window", testURL}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fakeStart{}
			if err := chooseBrowser(tc.flag, env(map[string]string{"BROWSER": tc.browser}), "linux", f.start).Open(testURL); err != nil {
				t.Fatalf("Open: %v", err)
			}
			if diff := cmp.Diff([][]string{tc.want}, f.started()); diff != "" {
				t.Errorf("commands started (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBrowserListFallback: $BROWSER may list commands separated by ':' (as
// xdg-open reads it); the next is tried only when one cannot be started.
func TestBrowserListFallback(t *testing.T) {
	t.Parallel()
	browser := `missing-one:'/opt/My Browser/browser' --x:never-tried`
	t.Run("first that starts", func(t *testing.T) {
		t.Parallel()
		f := &fakeStart{missing: []string{"missing-one"}}
		if err := chooseBrowser("", env(map[string]string{"BROWSER": browser}), "linux", f.start).Open(testURL); err != nil {
			t.Fatalf("Open: %v", err)
		}
		want := [][]string{{"missing-one", testURL}, {"/opt/My Browser/browser", "--x", testURL}}
		if diff := cmp.Diff(want, f.started()); diff != "" {
			t.Errorf("commands started (-want +got):\n%s", diff)
		}
	})
	t.Run("none starts", func(t *testing.T) {
		t.Parallel()
		f := &fakeStart{missing: []string{"missing-one", "/opt/My Browser/browser", "never-tried"}}
		err := chooseBrowser("", env(map[string]string{"BROWSER": browser}), "linux", f.start).Open(testURL)
		if err == nil || !strings.Contains(err.Error(), "$BROWSER") || !strings.Contains(err.Error(), `"never-tried"`) || !errors.Is(err, exec.ErrNotFound) {
			t.Fatalf("Open = %v, want an error naming $BROWSER and every command", err)
		}
		if n := len(f.started()); n != 3 {
			t.Errorf("%d commands tried, want 3", n)
		}
	})
	t.Run("started and failed: no second browser", func(t *testing.T) {
		t.Parallel()
		f := &fakeStart{exitErr: errors.New("exit status 1")}
		err := chooseBrowser("", env(map[string]string{"BROWSER": "first:second"}), "linux", f.start).Open(testURL)
		if err == nil || !strings.Contains(err.Error(), `"first" from $BROWSER failed`) {
			t.Fatalf("Open = %v, want the first command's failure", err)
		}
		if diff := cmp.Diff([][]string{{"first", testURL}}, f.started()); diff != "" {
			t.Errorf("commands started (-want +got):\n%s", diff)
		}
	})
	t.Run("windows separates with ';'", func(t *testing.T) {
		t.Parallel()
		f := &fakeStart{missing: []string{`C:\missing.exe`}}
		if err := chooseBrowser("", env(map[string]string{"BROWSER": `C:\missing.exe;"C:\Program Files\B\b.exe" -x`}), "windows", f.start).Open(testURL); err != nil {
			t.Fatalf("Open: %v", err)
		}
		want := [][]string{{`C:\missing.exe`, testURL}, {`C:\Program Files\B\b.exe`, "-x", testURL}}
		if diff := cmp.Diff(want, f.started()); diff != "" {
			t.Errorf("commands started (-want +got):\n%s", diff)
		}
	})
}

// TestBrowserStartErrorNamesSource: a command that cannot start says where it
// came from.
func TestBrowserStartErrorNamesSource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ flag, browser, want string }{
		{"no-such-opener", "", `start browser command "no-such-opener" from --browser-command`},
		{"", "no-such-opener", `start browser command "no-such-opener" from $BROWSER`},
		{"", "", `start browser command "xdg-open": `},
	} {
		f := &fakeStart{missing: []string{"no-such-opener", "xdg-open"}}
		err := chooseBrowser(tc.flag, env(map[string]string{"BROWSER": tc.browser}), "linux", f.start).Open(testURL)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("flag %q, $BROWSER %q: Open = %v, want %q", tc.flag, tc.browser, err, tc.want)
		}
	}
}

// TestBrowserCommandMalformed: an unclosed quote is an error that names its
// source and the fix; nothing is started, and a bad flag does not fall back.
func TestBrowserCommandMalformed(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		flag, browser string
		want          []string
	}{
		"flag, double quote":  {`"/opt/My Browser/bin/browser --new-window`, "fine-browser", []string{"cannot parse --browser-command", `double quote (") is not closed`, `"/opt/My Browser/bin/browser --new-window`, "fix the quoting"}},
		"flag, single quote":  {`'/opt/My Browser/bin/browser`, "", []string{"cannot parse --browser-command", `single quote (') is not closed`}},
		"flag, backslash":     {`opener \`, "", []string{"cannot parse --browser-command", "backslash at the end"}},
		"$BROWSER, quote":     {"", `firefox:'/opt/My Browser/b`, []string{"cannot parse $BROWSER", `single quote (') is not closed`, "pass --browser-command"}},
		"$BROWSER, backslash": {"", `firefox \`, []string{"cannot parse $BROWSER", "backslash at the end"}},
		"flag, empty name":    {`'' --new-window`, "fine-browser", []string{"cannot parse --browser-command", "name is empty"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fakeStart{}
			err := chooseBrowser(tc.flag, env(map[string]string{"BROWSER": tc.browser}), "linux", f.start).Open(testURL)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open = %q, want it to contain %q", err, w)
				}
			}
			if s := f.started(); len(s) != 0 {
				t.Errorf("started %q for a malformed command", s)
			}
		})
	}
}

// TestLoginMalformedBrowserCommand: with a --browser-command that cannot be
// parsed the sign-in says why and shows the URL, which the user opens by hand.
func TestLoginMalformedBrowserCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{AutoApprove: true})
	f := &fakeStart{}
	br := chooseBrowser(`"/opt/My Browser/bin/browser --new-window`, env(nil), "linux", f.start)
	var prompt syncBuffer
	failed := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := e.b.Login(context.Background(), testProfile, LoginOptions{
			Browser: br, Prompt: &prompt, Timeout: 10 * time.Second,
			Address: func(url string, err error) { failed <- url },
		})
		done <- err
	}()
	var u string
	select {
	case u = <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("Address was not called")
	}
	if r := browse(t, u, true); r.err != nil {
		t.Fatal(r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Login: %v", err)
	}
	out := prompt.String()
	if !strings.Contains(out, "Could not open a browser (cannot parse --browser-command") || !strings.Contains(out, u) {
		t.Fatalf("the prompt does not explain the bad command and show the URL:\n%s", out)
	}
	if s := f.started(); len(s) != 0 {
		t.Errorf("started %q", s)
	}
}

func TestSplitCommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		sep     rune
		escapes bool
		want    [][]string
	}{
		{"", ':', true, nil},
		{"firefox", 0, true, [][]string{{"firefox"}}},
		{"  firefox \t --new-window\n", 0, true, [][]string{{"firefox", "--new-window"}}},
		{`"/opt/My Browser/bin/browser" --new-window`, 0, true, [][]string{{"/opt/My Browser/bin/browser", "--new-window"}}},
		{`'it''s' 'a "b" \c'`, 0, true, [][]string{{"its", `a "b" \c`}}},
		{`a\ b \'c\" \\`, 0, true, [][]string{{"a b", `'c"`, `\`}}},
		{`"a\"b \\ \$x \n"`, 0, true, [][]string{{`a"b \ $x \n`}}},
		{`x"y z"'w'`, 0, true, [][]string{{"xy zw"}}},
		{`opener '' ""`, 0, true, [][]string{{"opener", "", ""}}},
		{"a\\\nb", 0, true, [][]string{{"ab"}}},
		{`$HOME/b ~/c *`, 0, true, [][]string{{"$HOME/b", "~/c", "*"}}},
		{"a:b", 0, true, [][]string{{"a:b"}}},
		{"a -x:b -y", ':', true, [][]string{{"a", "-x"}, {"b", "-y"}}},
		{`::a:: 'b:c' "d:e" f\:g:`, ':', true, [][]string{{"a"}, {"b:c", "d:e", `f:g`}}},
		{`C:\Tools\opener.exe --x`, ';', false, [][]string{{`C:\Tools\opener.exe`, "--x"}}},
		{`"C:\Program Files\B\b.exe";x`, ';', false, [][]string{{`C:\Program Files\B\b.exe`}, {"x"}}},
	} {
		got, err := splitCommands(tc.in, tc.sep, tc.escapes)
		if err != nil {
			t.Errorf("splitCommands(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("splitCommands(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, in := range []string{`"a`, `'a`, `a\`, `"a\"`, `'a:b`} {
		if got, err := splitCommands(in, ':', true); err == nil {
			t.Errorf("splitCommands(%q) = %q, want an error", in, got)
		}
	}
}
