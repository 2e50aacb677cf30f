package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
)

func cmdLogin(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	noBrowser := fs.Bool("no-browser", false, "print the sign-in URL only; do not open a browser")
	browserCmd := fs.String("browser-command", "", "command that opens the URL (gets it as last argument); default $BROWSER, else the OS opener")
	timeout := fs.Duration("timeout", broker.DefaultLoginTimeout, "how long to wait for the browser sign-in")
	port := fs.Int("callback-port", 0, "loopback port for the redirect (default: a random free port)")
	hint := fs.String("login-hint", "", "account to preselect at the issuer (e.g. you@example.com)")
	if err := e.parse("login", fs, args, "login [--no-browser] [--browser-command CMD] [--timeout 5m] [--callback-port N] [--login-hint EMAIL]"); err != nil {
		return err
	}
	if *port < 0 || *port > 65535 {
		return usagef("--callback-port %d is not a port number (1-65535, or 0 for a random one)", *port)
	}
	if *timeout <= 0 {
		return usagef("--timeout %s: give how long to wait for the browser sign-in, for example --timeout 10m", *timeout)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	p, err := cfg.Profile(e.profile)
	if err != nil {
		return usagef("%v", err)
	}
	b, err := e.newBroker(cfg, broker.ChooseBrowser(*browserCmd))
	if err != nil {
		return err
	}
	// The keychain account is the profile's name (DESIGN §4): a sign-in of another
	// issuer or client under this name (another config's) is replaced. Say so after.
	var replaced *broker.Entry
	if old, err := (broker.Store{Keychain: broker.SystemKeychain{}}).Load(p.Name); err == nil && !old.Matches(p) {
		replaced = old
	}
	st, err := b.Login(ctx, p.Name, broker.LoginOptions{
		NoBrowser:    *noBrowser,
		Prompt:       e.stderr,
		Timeout:      *timeout,
		CallbackPort: *port,
		LoginHint:    *hint,
	})
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return fmt.Errorf("profile %s: sign-in cancelled; nothing was stored", p.Name)
		}
		return err
	}
	fmt.Fprintf(e.stderr, "Signed in to profile %q as %s; the refresh token is in the OS keychain.\n", st.Profile, who(st))
	if replaced != nil {
		fmt.Fprintf(e.stderr, "It replaced the sign-in stored under that name for %s (client %s): another config with a profile %q needs `gatepass login` again.\n",
			replaced.Issuer, replaced.ClientID, st.Profile)
	}
	e.notifyAgent(ctx, cfg, st.Profile)
	return nil
}

// agent returns a client for the agent that owns cfg, if one is running.
func (e *env) agent(ctx context.Context, cfg *broker.Config) (broker.AgentClient, bool) {
	path, err := broker.ControlSocketPath(cfg.Path)
	if err != nil {
		return broker.AgentClient{}, false
	}
	c := broker.AgentClient{Path: path}
	return c, c.Alive(ctx)
}

// notifyAgent tells a running agent to re-read a profile that this process
// signed in or out.
func (e *env) notifyAgent(ctx context.Context, cfg *broker.Config, profile string) {
	if c, ok := e.agent(ctx, cfg); ok {
		if err := c.Reload(ctx, profile); err != nil {
			fmt.Fprintf(e.stderr, "The running gatepass agent could not reload profile %q: %v\n", profile, err)
		}
	}
}

func who(st broker.ProfileStatus) string {
	if st.Email != "" {
		return st.Email
	}
	return "subject " + st.Subject
}

func cmdToken(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	typ := fs.String("type", "", "token type: id or access (default: the profile's inject setting)")
	format := fs.String("format", "raw", "output: raw, header, json or exec-credential")
	minTTL := broker.DefaultMargin
	fs.Var(durationFlag{&minTTL}, "min-ttl", "refresh first if the token would expire sooner than this `duration`; when not given, a quarter of the token's lifetime is enough if that is shorter")
	if err := e.parse("token", fs, args, "token [--type id|access] [--format raw|header|json|exec-credential] [--min-ttl 1m]"); err != nil {
		return err
	}
	switch *format {
	case "raw", "header", "json", "exec-credential":
	default:
		return usagef("unknown --format %q: use raw, header, json or exec-credential", *format)
	}
	if minTTL < 0 {
		return usagef("--min-ttl must not be negative")
	}
	var kind broker.TokenKind
	if *typ != "" {
		var err error
		if kind, err = broker.ParseTokenKind(*typ); err != nil {
			return usagef("--type: %v", err)
		}
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	p, err := cfg.Profile(e.profile)
	if err != nil {
		return usagef("%v", err)
	}
	if kind == "" {
		kind = p.Inject
	}
	// Without --min-ttl the minute is the default margin, not a demand: tokens
	// that live a minute or less must not fail every call (FreshToken).
	capped := true
	fs.Visit(func(f *flag.Flag) { capped = capped && f.Name != "min-ttl" })
	get := (*broker.Broker).Token
	ask := broker.AgentClient.Token
	if capped {
		get, ask = (*broker.Broker).FreshToken, broker.AgentClient.FreshToken
	}
	// A running agent owns the tokens: ask it rather than spending the
	// refresh token here (DESIGN §1; no keychain read, no refresh).
	if c, ok := e.agent(ctx, cfg); ok {
		tok, err := ask(c, ctx, p.Name, kind, minTTL)
		if !errors.Is(err, broker.ErrNoAgent) {
			if err != nil {
				return err
			}
			return printToken(e, p.Name, tok, *format)
		}
	}
	b, err := e.newBroker(cfg, nil)
	if err != nil {
		return err
	}
	tok, err := get(b, ctx, p.Name, kind, minTTL)
	if err != nil {
		return err
	}
	return printToken(e, p.Name, tok, *format)
}

// durationFlag is a flag.Duration whose parse error says what a valid value looks
// like, rather than the flag package's bare "parse error".
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration with a unit, such as 90s, 5m or 1h")
	}
	*f.d = d
	return nil
}

func printToken(e *env, profile string, tok broker.Token, format string) error {
	switch format {
	case "header":
		fmt.Fprintf(e.stdout, "Authorization: Bearer %s\n", tok.Value)
		return nil
	case "json":
		return writeJSON(e, map[string]any{
			"profile": profile,
			"type":    tok.Kind,
			"token":   tok.Value,
			"expiry":  tok.Expiry.UTC().Format(time.RFC3339),
		})
	case "exec-credential":
		// kubectl's client.authentication.k8s.io/v1 ExecCredential.
		return writeJSON(e, map[string]any{
			"apiVersion": "client.authentication.k8s.io/v1",
			"kind":       "ExecCredential",
			"status": map[string]any{
				"token":               tok.Value,
				"expirationTimestamp": tok.Expiry.UTC().Format(time.RFC3339),
			},
		})
	}
	fmt.Fprintln(e.stdout, tok.Value)
	return nil
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := e.parse("status", fs, args, "status [--json]"); err != nil {
		return err
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	statuses, err := e.statuses(ctx, cfg)
	if err != nil {
		return err
	}
	agent := e.proxyStatus(ctx, cfg)
	if *asJSON {
		return writeJSON(e, map[string]any{"profiles": statuses, "proxy": agent})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tSTATE\tIDENTITY\tISSUER\tNOTE")
	now, command := time.Now(), shellCommand(cfg)
	for _, st := range statuses {
		note := statusNote(st, now, command)
		id := st.Email
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Profile, st.State, id, st.Issuer, note)
	}
	_ = tw.Flush()
	if agent.Running {
		fmt.Fprintf(e.stdout, "\nproxy: running at %s\n", agent.Address)
	} else if agent.Note != "" {
		fmt.Fprintf(e.stdout, "\nproxy: not running for this config: %s\n", agent.Note)
	} else {
		fmt.Fprintf(e.stdout, "\nproxy: not running (start it with `gatepass proxy` or the desktop app)\n")
	}
	return nil
}

// statusNote is the NOTE column: the token's expiry (or that it has expired), then
// the reason a refresh is failing or sign-in is required, so a failing refresh is
// not hidden behind an expiry, and for a profile that needs a new sign-in the
// command that signs in again. command is how the user's shell runs gatepass for
// the config (shellCommand: with --config unless it is the default config).
func statusNote(st broker.ProfileStatus, now time.Time, command string) string {
	var parts []string
	if !st.Expiry.IsZero() {
		at := st.Expiry.Local()
		when := at.Format("15:04")
		if y, m, d := at.Date(); y != now.Local().Year() || m != now.Local().Month() || d != now.Local().Day() {
			when = at.Format("Jan 2 15:04")
		}
		if left := at.Sub(now); left > 0 {
			if left < time.Hour {
				// A clock time alone hides how soon "21:48" is.
				when += " (in " + shortDuration(left) + ")"
			}
			parts = append(parts, "token expires "+when)
		} else {
			parts = append(parts, "token expired "+when)
		}
	}
	if st.Reason != "" {
		parts = append(parts, strings.TrimRight(st.Reason, ". ")) // the issuer's sentence, then "; run …"
	}
	if st.State == broker.StateSignInRequired {
		parts = append(parts, "run `"+command+" login --profile "+st.Profile+"`")
	}
	return strings.Join(parts, "; ")
}

// shortDuration is d rounded for a person: "45s", "12m", "59m".
func shortDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	}
	return fmt.Sprintf("%dm", int(d/time.Minute))
}

func cmdLogout(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("logout", flag.ContinueOnError)
	if err := e.parse("logout", fs, args, "logout"); err != nil {
		return err
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	p, err := cfg.Profile(e.profile)
	if err != nil {
		return usagef("%v", err)
	}
	b, err := e.newBroker(cfg, nil)
	if err != nil {
		return err
	}
	res, err := b.Logout(ctx, p.Name)
	e.notifyAgent(ctx, cfg, p.Name) // the entry is gone even when revoking failed
	switch {
	case err != nil:
		return err
	case !res.WasSignedIn:
		fmt.Fprintf(e.stderr, "Profile %q was not signed in; nothing to do.\n", p.Name)
	case res.AlreadyInvalid:
		fmt.Fprintf(e.stderr, "Signed out of profile %q: the issuer had already revoked the refresh token (expired, revoked or replaced); it is removed from the keychain.\n", p.Name)
	default:
		fmt.Fprintf(e.stderr, "Signed out of profile %q: the refresh token was revoked at the issuer and removed from the keychain.\n", p.Name)
	}
	return nil
}

// statuses asks the running agent (which knows expiries and refresh
// state), else reads the keychain.
func (e *env) statuses(ctx context.Context, cfg *broker.Config) ([]broker.ProfileStatus, error) {
	if e.profile != "" {
		if _, err := cfg.Profile(e.profile); err != nil {
			return nil, usagef("%v", err)
		}
	}
	keep := func(all []broker.ProfileStatus) []broker.ProfileStatus {
		var out []broker.ProfileStatus
		for _, st := range all {
			if e.profile == "" || st.Profile == e.profile {
				out = append(out, st)
			}
		}
		return out
	}
	if c, ok := e.agent(ctx, cfg); ok {
		if all, err := c.Statuses(ctx); err == nil {
			return keep(all), nil
		}
	}
	b, err := e.newBroker(cfg, nil)
	if err != nil {
		return nil, err
	}
	return keep(b.Statuses()), nil
}
