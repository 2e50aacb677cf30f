// Command gatepass signs developers in with OAuth 2.0 + PKCE, keeps the
// refresh token in the OS keychain and injects fresh bearer tokens into
// requests for the team's API gateway through a local proxy.
//
// This file only parses flags, wires the real OS edges and maps errors to
// exit codes (DESIGN §2); the work happens in packages broker, proxy and app.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/proxy"
)

// version is set with -ldflags "-X main.version=…" by release builds.
var version = "0.1.0-dev"

// Exit codes, DESIGN §2.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitSignIn   = 3
	usageSummary = `Usage: gatepass [--config FILE] [--profile NAME] [COMMAND] [FLAGS]

Commands:
  (none) | gui   start the desktop app: window + tray + proxy
  login          sign in through the browser (--no-browser, --browser-command CMD)
  token          print a fresh token (--type access|id, --format raw|header|json|exec-credential, --min-ttl D)
  status         who is signed in, per profile (--json)
  logout         revoke the refresh token at the issuer and delete it from the keychain
  proxy          run the headless agent: broker + local proxy (--listen ADDR)
  ca             the proxy's local CA: 'ca export [--out FILE]', 'ca path'
  demo           run a local demo identity provider and gateway, with a matching profile
  doctor         check config, issuer, keychain, loopback port, clock, CA and who may use the proxy
  version        print the version

Config: --config, else $GATEPASS_CONFIG, else the user config dir (gatepass/config.toml).
Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 sign-in required.
`
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what every command gets: the global flags and the output streams.
type env struct {
	stdout, stderr io.Writer
	configFlag     string
	profile        string
	verbose        bool
}

// command runs one subcommand with its own arguments.
type command func(ctx context.Context, e *env, args []string) error

func commands() map[string]command {
	return map[string]command{
		"login":   cmdLogin,
		"token":   cmdToken,
		"status":  cmdStatus,
		"logout":  cmdLogout,
		"version": cmdVersion,
		"demo":    cmdDemo,
		"proxy":   cmdProxy,
		"ca":      cmdCA,
		"doctor":  cmdDoctor,
		"gui":     cmdGUI,
	}
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("gatepass", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageSummary)
			return exitOK
		}
		fmt.Fprintf(stderr, "gatepass: %v\n\n%s", err, usageSummary)
		return exitUsage
	}
	rest := fs.Args()
	name := "gui"
	if len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		fmt.Fprint(stdout, usageSummary)
		return exitOK
	}
	cmd, ok := commands()[name]
	if !ok {
		names := make([]string, 0, len(commands()))
		for n := range commands() {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(stderr, "gatepass: unknown command %q; commands: %s\n", name, strings.Join(names, ", "))
		return exitUsage
	}
	err := cmd(ctx, e, rest)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "gatepass %s: %s\n", name, errorMessage(err, e.configFlag))
	return exitCode(err)
}

// errorMessage is err as the CLI prints it: a sign-in-required error's fix names
// the config (--config FILE when it is not the default), so that it signs in the
// profile asked about, also when a wrapping fmt.Errorf already holds the old text.
func errorMessage(err error, configFlag string) string {
	msg := err.Error()
	var sir *broker.SignInRequiredError
	if errors.As(err, &sir) && sir.Command == "" {
		if path, perr := broker.ResolveConfigPath(configFlag); perr == nil {
			old := sir.Error()
			sir.Command = shellCommand(&broker.Config{Path: path})
			msg = strings.Replace(msg, old, sir.Error(), 1)
		}
	}
	return msg
}

// exitCode maps an error to DESIGN §2's exit codes.
func exitCode(err error) int {
	var ue *usageError
	var ce *broker.ConfigError
	switch {
	case errors.Is(err, broker.ErrSignInRequired):
		return exitSignIn
	case errors.As(err, &ue), errors.As(err, &ce), errors.Is(err, errConfigMissing):
		return exitUsage
	}
	return exitFailure
}

func (e *env) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.configFlag, "config", e.configFlag, "config file (default $GATEPASS_CONFIG, else the user config dir)")
	fs.StringVar(&e.profile, "profile", e.profile, "profile name (default: default_profile of the config)")
	fs.BoolVar(&e.verbose, "v", e.verbose, "verbose logging to stderr")
}

// parse parses a subcommand's flags; the global flags are accepted after
// the command name too, so `gatepass token --profile work` works.
func (e *env) parse(name string, fs *flag.FlagSet, args []string, usage string) error {
	e.globalFlags(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(e.stdout, "Usage: gatepass %s\n", usage)
			fs.SetOutput(e.stdout)
			fs.PrintDefaults()
			return err
		}
		return usagef("%v; usage: gatepass %s", err, usage)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q; usage: gatepass %s", fs.Arg(0), usage)
	}
	return nil
}

// logger is the logger of a one-shot command (token, status, login …): warnings
// only, or everything with -v. What such a command has to say it says in its own
// words and exit code; an info line like "sign-in required" before the error that
// says the same would be noise in a script's stderr.
func (e *env) logger() *slog.Logger {
	return e.newLogger(e.stderr, slog.LevelWarn)
}

// loggerTo is the logger of a long-running agent: info lines too (one a request).
func (e *env) loggerTo(w io.Writer) *slog.Logger {
	return e.newLogger(w, slog.LevelInfo)
}

func (e *env) newLogger(w io.Writer, level slog.Level) *slog.Logger {
	if e.verbose {
		level = slog.LevelDebug
	}
	return slog.New(proxy.NewLogHandler(w, &slog.HandlerOptions{Level: level}))
}

// agentLogger is the logger of a long-running agent: the proxy logs one
// line per request, so lines go through a proxy.LogWriter flushed every
// 100ms rather than a write(2) each; w.Close flushes the rest. The command's
// own stderr lines go out after a w.Flush, so they keep their place among the
// log lines.
func (e *env) agentLogger() (log *slog.Logger, w *proxy.LogWriter) {
	w = proxy.NewLogWriter(e.stderr, 100*time.Millisecond)
	return e.loggerTo(w), w
}

var errConfigMissing = errors.New("no config file")

// configMissingError is LoadConfig's error for a missing file, which errors.Is
// matches to errConfigMissing (exit code 2) without repeating its words.
type configMissingError struct{ err error }

func (e configMissingError) Error() string        { return e.err.Error() }
func (e configMissingError) Unwrap() error        { return e.err }
func (e configMissingError) Is(target error) bool { return target == errConfigMissing }

// loadConfig finds and loads the config (DESIGN §3 order).
func (e *env) loadConfig() (*broker.Config, error) {
	path, err := broker.ResolveConfigPath(e.configFlag)
	if err != nil {
		return nil, err
	}
	cfg, err := broker.LoadConfig(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, configMissingError{err} // the message already says "no config file at …"
		}
		return nil, err
	}
	return cfg, nil
}

// newBroker wires the real keychain, clock and HTTP client.
func (e *env) newBroker(cfg *broker.Config, browser broker.Browser) (*broker.Broker, error) {
	return broker.New(cfg, broker.Deps{
		Keychain: broker.SystemKeychain{},
		Log:      e.logger(),
		Browser:  browser,
	})
}

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := e.parse("version", fs, args, "version"); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "gatepass %s\n", version)
	return nil
}
