package broker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
}

// ChooseBrowser picks the opener by DESIGN §2: --browser-command wins, then
// $BROWSER, then the OS opener.
func ChooseBrowser(flagCommand string) Browser {
	if c := strings.TrimSpace(flagCommand); c != "" {
		return CommandBrowser{Argv: strings.Fields(c)}
	}
	if env := os.Getenv("BROWSER"); env != "" {
		// $BROWSER may list several commands separated by ':'; take the first.
		first := strings.Split(env, string(os.PathListSeparator))[0]
		if f := strings.Fields(first); len(f) > 0 {
			return CommandBrowser{Argv: f}
		}
	}
	switch runtime.GOOS {
	case "darwin":
		return CommandBrowser{Argv: []string{"open"}}
	case "windows":
		return CommandBrowser{Argv: []string{"rundll32", "url.dll,FileProtocolHandler"}}
	default:
		return CommandBrowser{Argv: []string{"xdg-open"}}
	}
}

// Open runs the command. It reports a command that cannot start or exits
// with an error within Wait; after that it lets the command run on.
func (c CommandBrowser) Open(url string) error {
	if len(c.Argv) == 0 {
		return errors.New("no browser command")
	}
	argv := append(append([]string{}, c.Argv[1:]...), url)
	cmd := exec.Command(c.Argv[0], argv...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start browser command %q: %w (set --browser-command or $BROWSER)", c.Argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	wait := c.Wait
	if wait == 0 {
		wait = 3 * time.Second
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("browser command %q failed: %w", c.Argv[0], err)
		}
		return nil
	case <-time.After(wait):
		return nil
	}
}
