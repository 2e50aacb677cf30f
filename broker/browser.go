package broker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CommandBrowser opens URLs by running a command with the URL as its last
// argument. The command may return before the sign-in finishes (most
// openers hand the URL to a running browser and exit).
type CommandBrowser struct {
	Argv []string
	// Wait is how long Open waits for the command to fail before assuming
	// it is running fine; default 3s.
	Wait time.Duration

	source string    // where Argv came from, for errors: flagSource, envSource or ""
	start  startFunc // nil: startProcess
}

// Where a browser command came from, as errors name it.
const (
	flagSource = "--browser-command"
	envSource  = "$BROWSER"
)

// startFunc starts argv and returns a channel that receives the command's
// exit (nil for success). Tests replace it so that no browser ever runs.
type startFunc func(argv []string) (<-chan error, error)

func startProcess(argv []string) (<-chan error, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done, nil
}

// ChooseBrowser picks the opener by DESIGN §2: --browser-command wins, then
// $BROWSER, then the OS opener.
//
// Both commands are split into words as a POSIX shell would, without running
// one: '…' and "…" quote (so a path with spaces can be given), a backslash
// escapes the next character (not on Windows, where it is part of C:\…); no
// variables, ~ or globs are expanded. $BROWSER
// may list several commands separated by ':' (';' on Windows), as xdg-open
// reads it: each is tried in turn until one starts. A command that cannot be
// parsed (an unclosed quote) gives a browser whose Open says so, naming
// --browser-command or $BROWSER; the sign-in then shows the URL to open by hand.
func ChooseBrowser(flagCommand string) Browser {
	return chooseBrowser(flagCommand, os.Getenv, runtime.GOOS, nil)
}

func chooseBrowser(flagCommand string, getenv func(string) string, goos string, start startFunc) Browser {
	if strings.TrimSpace(flagCommand) != "" {
		cmds, err := runnable(splitCommands(flagCommand, 0, goos != "windows"))
		if err != nil {
			return badCommand{source: flagSource, value: flagCommand, err: err}
		}
		if len(cmds) > 0 {
			return CommandBrowser{Argv: cmds[0], source: flagSource, start: start}
		}
		// Only empty quotes (''): fall through to $BROWSER, like blanks.
	}
	if env := getenv("BROWSER"); strings.TrimSpace(env) != "" {
		sep := ':'
		if goos == "windows" {
			sep = ';' // os.PathListSeparator: a ':' is part of C:\…
		}
		cmds, err := runnable(splitCommands(env, sep, goos != "windows"))
		if err != nil {
			return badCommand{source: envSource, value: env, err: err}
		}
		var list browserList
		for _, argv := range cmds {
			list = append(list, CommandBrowser{Argv: argv, source: envSource, start: start})
		}
		switch len(list) {
		case 0: // only separators: as if unset
		case 1:
			return list[0]
		default:
			return list
		}
	}
	var argv []string
	switch goos {
	case "darwin":
		argv = []string{"open"}
	case "windows":
		argv = []string{"rundll32", "url.dll,FileProtocolHandler"}
	default:
		argv = []string{"xdg-open"}
	}
	return CommandBrowser{Argv: argv, start: start}
}

// Open runs the command. It reports a command that cannot start or exits
// with an error within Wait; after that it lets the command run on.
func (c CommandBrowser) Open(url string) error {
	if len(c.Argv) == 0 {
		return errors.New("no browser command")
	}
	argv := append(append([]string{}, c.Argv...), url)
	start := c.start
	if start == nil {
		start = startProcess
	}
	done, err := start(argv)
	if err != nil {
		return &startError{argv0: c.Argv[0], source: c.source, err: err}
	}
	wait := c.Wait
	if wait == 0 {
		wait = 3 * time.Second
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("browser command %q%s failed: %w", c.Argv[0], from(c.source), err)
		}
		return nil
	case <-time.After(wait):
		return nil
	}
}

// startError is a browser command that could not be started at all (not
// found, not executable); a browserList then tries its next command.
type startError struct {
	argv0, source string
	err           error
}

func (e *startError) Error() string {
	hint := "set --browser-command or $BROWSER"
	switch e.source {
	case flagSource:
		hint = "check --browser-command"
	case envSource:
		hint = "check $BROWSER, or pass --browser-command"
	}
	return fmt.Sprintf("start browser command %q%s: %v (%s)", e.argv0, from(e.source), e.err, hint)
}

func (e *startError) Unwrap() error { return e.err }

func from(source string) string {
	if source == "" {
		return ""
	}
	return " from " + source
}

// browserList is $BROWSER with several commands: Open tries them in order and
// stops at the first that starts.
type browserList []CommandBrowser

func (l browserList) Open(url string) error {
	var errs []error
	for _, c := range l {
		err := c.Open(url)
		var se *startError
		if !errors.As(err, &se) {
			return err // opened, or started and failed: do not open a second browser
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("none of the %d commands in $BROWSER could be started: %w", len(l), errors.Join(errs...))
}

// badCommand is a --browser-command or $BROWSER that cannot be split into
// words; Open reports it so the sign-in goes on with the URL shown.
type badCommand struct {
	source, value string
	err           error
}

func (b badCommand) Open(string) error {
	fix := "fix the quoting"
	if b.source == envSource {
		fix = "fix the quoting in $BROWSER or pass --browser-command"
	}
	// The value as typed: %q would escape the very quotes that are wrong.
	value := b.value
	if strings.ContainsFunc(value, func(r rune) bool { return !strconv.IsPrint(r) }) {
		value = strconv.Quote(value)
	}
	return fmt.Errorf("cannot parse %s: %v in: %s; %s (a path with spaces goes in quotes: \"/opt/My Browser/bin/browser\" --new-window)",
		b.source, b.err, value, fix)
}

// runnable drops the commands that are only empty words (” or ""), as if they were
// blank, and refuses one whose name is empty but that has arguments.
func runnable(cmds [][]string, err error) ([][]string, error) {
	if err != nil {
		return nil, err
	}
	out := cmds[:0]
	for _, argv := range cmds {
		switch {
		case argv[0] != "":
			out = append(out, argv)
		case slices.ContainsFunc(argv, func(w string) bool { return w != "" }):
			return nil, errors.New("the command's name is empty ('' or \"\" before its arguments)")
		}
	}
	return out, nil
}

// splitCommands splits s into words as a POSIX shell does, without expanding
// anything: whitespace separates words, '…' quotes literally, "…" quotes with
// \ escaping only $ ` " \ and newline, and outside quotes \ escapes any
// character (backslash-newline is removed). Without escapes (Windows, whose
// paths are C:\…) a backslash is an ordinary character. When sep is not 0, an
// unquoted sep also ends one command and starts the next; empty commands are
// dropped.
func splitCommands(s string, sep rune, escapes bool) ([][]string, error) {
	var (
		cmds   [][]string
		words  []string
		word   strings.Builder
		inWord bool // also true after '' or "", which make an empty word
	)
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n':
			endWord()
		case sep != 0 && r == sep:
			endCmd()
		case r == '\\' && escapes:
			if i+1 == len(rs) {
				return nil, errors.New("a backslash at the end escapes nothing")
			}
			i++
			if rs[i] != '\n' {
				word.WriteRune(rs[i])
				inWord = true
			}
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, errors.New("a single quote (') is not closed")
			}
			word.WriteString(string(rs[i+1 : j]))
			inWord = true
			i = j
		case r == '"':
			inWord = true
			closed := false
			for i++; i < len(rs); i++ {
				c := rs[i]
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' && escapes && i+1 < len(rs) && strings.ContainsRune("$`\"\\\n", rs[i+1]) {
					i++
					if rs[i] != '\n' {
						word.WriteRune(rs[i])
					}
					continue
				}
				word.WriteRune(c)
			}
			if !closed {
				return nil, errors.New(`a double quote (") is not closed`)
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	endCmd()
	return cmds, nil
}
