package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/proxy"
)

// brokerTokens adapts the broker to the proxy's TokenSource: the proxy
// asks for "the token for this host" and never sees profiles' secrets.
type brokerTokens struct{ b *broker.Broker }

func (t brokerTokens) Gateway(host, port string) (proxy.Gateway, bool) {
	p, ok := t.b.Config().Lookup(host, port)
	if !ok {
		return proxy.Gateway{}, false
	}
	gw := proxy.Gateway{Profile: p.Name, PlainHTTP: p.AllowsPlainHTTP(host, port)}
	if len(p.AllowedOrigins) > 0 {
		gw.PageAllowed = p.AllowsOrigin
	}
	return gw, true
}

func (t brokerTokens) TokenFor(ctx context.Context, host, port string) (proxy.Token, error) {
	tok, _, err := t.b.TokenForHost(ctx, host, port)
	if err != nil {
		return proxy.Token{}, err
	}
	return proxy.Token{Value: tok.Value, Header: tok.Header, Expiry: tok.Expiry}, nil
}

// keychainCA keeps the proxy's local CA in the OS keychain: service
// "gatepass-ca", one account per config file, so a demo config in a
// temporary directory never replaces the CA a user already trusts.
type keychainCA struct {
	kc      broker.Keychain
	account string
}

const caService = "gatepass-ca"

type caEntry struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

func newKeychainCA(kc broker.Keychain, cfg *broker.Config) keychainCA {
	abs, _ := filepath.Abs(cfg.Path)
	sum := sha256.Sum256([]byte(abs))
	return keychainCA{kc: kc, account: "ca-" + hex.EncodeToString(sum[:6])}
}

func (k keychainCA) LoadCA() (certPEM, keyPEM []byte, found bool, err error) {
	raw, err := k.kc.Get(caService, k.account)
	if errors.Is(err, broker.ErrNotFound) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	var e caEntry
	if json.Unmarshal([]byte(raw), &e) != nil {
		// Corrupt: report found with unusable PEM so the proxy regenerates
		// and says so.
		return []byte(raw), nil, true, nil
	}
	return []byte(e.Cert), []byte(e.Key), true, nil
}

func (k keychainCA) SaveCA(certPEM, keyPEM []byte) error {
	b, err := json.Marshal(caEntry{Cert: string(certPEM), Key: string(keyPEM)})
	if err != nil {
		return err
	}
	// The same limit as a sign-in's entry, on every OS, so that a config that
	// works here works on Windows and macOS too (broker.MaxEntryBytes).
	if len(b) > broker.MaxEntryBytes {
		return fmt.Errorf("the local CA for these gateway names needs %d bytes in the keychain, over the %d that Windows and macOS keychains hold: "+
			"cover hosts with fewer patterns (one \"*.gw.example.com\" instead of many hosts under it)", len(b), broker.MaxEntryBytes)
	}
	return k.kc.Set(caService, k.account, string(b))
}

// caNames turns gateway patterns into the CA's name constraints.
func caNames(cfg *broker.Config) []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range cfg.Profiles {
		for _, g := range p.Gateways {
			n := g.Host
			if g.Wildcard {
				n = "." + g.Host
			}
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

// caCertPath is where the CA certificate is written for curl --cacert:
// beside the config file.
func caCertPath(cfg *broker.Config) string {
	return filepath.Join(filepath.Dir(cfg.Path), "gatepass-ca.pem")
}

// agentOptions tune startBroker and the proxy.
type agentOptions struct {
	listen    string // overrides cfg.Listen
	browser   broker.Browser
	log       *slog.Logger
	onRequest func(proxy.RequestLog)
}

// startBroker makes this process the agent for cfg: it serves the control
// socket (refusing when another agent owns the config), loads every
// signed-in profile and keeps their tokens fresh until ctx ends.
func startBroker(ctx context.Context, cfg *broker.Config, opts agentOptions) (*broker.Broker, error) {
	b, err := broker.New(cfg, broker.Deps{Keychain: broker.SystemKeychain{}, Log: opts.log, Browser: opts.browser})
	if err != nil {
		return nil, err
	}
	sock, err := broker.ControlSocketPath(cfg.Path)
	if err == nil {
		err = broker.ServeControl(ctx, b, sock)
	}
	if err != nil {
		return nil, err
	}
	b.Start(ctx)
	return b, nil
}

// newProxy builds (but does not start) the proxy for cfg on top of b.
func newProxy(b *broker.Broker, cfg *broker.Config, opts agentOptions) (*proxy.Server, error) {
	listen := cfg.Listen
	if opts.listen != "" {
		listen = opts.listen
	}
	var upstream *url.URL
	if cfg.UpstreamProxy != "" {
		var err error
		if upstream, err = url.Parse(cfg.UpstreamProxy); err != nil {
			return nil, err
		}
	}
	srv, err := proxy.New(proxy.Options{
		Listen:        listen,
		Tokens:        brokerTokens{b},
		CA:            newKeychainCA(broker.SystemKeychain{}, cfg),
		CANames:       caNames(cfg),
		CACertPath:    caCertPath(cfg),
		UpstreamProxy: upstream,
		Logger:        opts.log,
		OnRequest:     opts.onRequest,
		Command:       shellCommand(cfg),
	})
	if err != nil {
		return nil, err
	}
	// `gatepass ca export` and `ca path` ask the agent for the CA it just read
	// from the keychain, rather than reading (or replacing) it themselves.
	if cert := srv.CACertPEM(); cert != nil {
		b.SetCA(broker.AgentCA{CertPEM: cert, Path: caCertPath(cfg)})
	}
	return srv, nil
}

// shellCommand is how a user's shell runs gatepass for cfg: with --config
// unless cfg is the default config (the shell may lack $GATEPASS_CONFIG).
func shellCommand(cfg *broker.Config) string {
	if def, err := broker.DefaultConfigPath(); err == nil && def == cfg.Path || cfg.Path == "" {
		return "gatepass"
	}
	return "gatepass --config " + app.ShellQuote(cfg.Path)
}

func cmdProxy(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listen := fs.String("listen", "", "proxy address (default: listen from the config); loopback only")
	if err := e.parse("proxy", fs, args, "proxy [--listen 127.0.0.1:8787]"); err != nil {
		return err
	}
	if e.profile != "" {
		return usagef("--profile does not apply to proxy: it serves every profile's gateways")
	}
	if *listen != "" {
		if err := broker.CheckListen(*listen); err != nil {
			return usagef("--listen %v", err)
		}
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	addr := cfg.Listen
	if *listen != "" {
		addr = *listen
	}
	// Another agent for this config is said first: it holds the port too, and another
	// port would not help (one agent a config).
	if sock, err := broker.ControlSocketPath(cfg.Path); err == nil {
		if a, alive := (broker.AgentClient{Path: sock}).Proxy(ctx); alive { // one ping
			where := "the desktop app or `gatepass proxy`"
			if a != "" {
				where += ", with its proxy on " + a
			}
			return fmt.Errorf("another gatepass agent is already running for this config (%s); use it, or stop it first", where)
		}
	}
	// A taken port is said before anything is created (the local CA, the agent).
	if err := proxy.CheckListen(addr); err != nil {
		return err
	}
	log, logw := e.agentLogger()
	defer logw.Close()
	opts := agentOptions{listen: *listen, log: log}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := startBroker(actx, cfg, opts)
	if err != nil {
		return err
	}
	srv, err := newProxy(b, cfg, opts)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	b.SetProxyAddr(srv.Addr)
	logw.Flush() // the start-up's log lines (a new CA, say) come before what follows
	fmt.Fprintf(e.stderr, "gatepass proxy listening on %s (CA certificate: %s). Ctrl-C stops it.\n", srv.Addr(), caCertPath(cfg))
	command := shellCommand(cfg)
	for _, st := range b.Statuses() {
		// Only states a sign-in fixes: right after start a profile may still be
		// refreshing, which is not a reason to sign in.
		switch st.State {
		case broker.StateSignedOut:
			fmt.Fprintf(e.stderr, "profile %s is not signed in: run `%s login --profile %s`\n", st.Profile, command, st.Profile)
		case broker.StateSignInRequired:
			fmt.Fprintf(e.stderr, "profile %s needs a new sign-in (%s): run `%s login --profile %s`\n", st.Profile, st.Reason, command, st.Profile)
		case broker.StateUnknown:
			fmt.Fprintf(e.stderr, "profile %s: %s; requests for its gateways read the keychain again\n", st.Profile, st.Reason)
		}
	}
	<-ctx.Done()
	logw.Flush() // requests logged before the signal come before this line
	return drain(e, srv)
}

// drainTime is how long `gatepass proxy` waits for requests in flight when it stops
// (a variable for tests).
var drainTime = 10 * time.Second

// drain shuts the proxy down, waiting up to drainTime for requests in flight; a second
// Ctrl-C (or a SIGTERM) stops the wait. Requests still in flight then are cut off, and
// the error says so.
func drain(e *env, srv *proxy.Server) error {
	fmt.Fprintf(e.stderr, "gatepass proxy: shutting down, draining in-flight requests (up to %s; Ctrl-C again stops now)\n", drainTime)
	sctx, scancel := context.WithTimeout(context.Background(), drainTime)
	defer scancel()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	var hurried atomic.Pointer[string] // what stopped the wait: a second Ctrl-C, or SIGTERM (systemd, kill)
	go func() {
		select {
		case sig := <-again:
			what := "a second Ctrl-C"
			if sig == syscall.SIGTERM {
				what = "SIGTERM"
			}
			hurried.Store(&what)
			scancel()
		case <-sctx.Done():
		}
	}()
	err := srv.Shutdown(sctx)
	switch {
	case !errors.Is(err, proxy.ErrCutOff):
		return err
	case hurried.Load() != nil:
		return fmt.Errorf("stopped at once (%s): requests still in flight were cut off", *hurried.Load())
	default:
		return fmt.Errorf("requests still in flight after %s were cut off", drainTime)
	}
}

func cmdCA(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: gatepass ca export [--out FILE] | gatepass ca path")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("ca "+sub, flag.ContinueOnError)
	var out *string
	switch sub {
	case "export":
		out = fs.String("out", "", "write the PEM certificate to FILE instead of stdout")
	case "path":
	default:
		return usagef("unknown ca subcommand %q: use `ca export [--out FILE]` or `ca path`", sub)
	}
	if err := e.parse("ca "+sub, fs, args, "ca export [--out FILE] | ca path"); err != nil {
		return err
	}
	if e.profile != "" {
		return usagef("--profile does not apply to ca: the local CA covers every profile's gateways")
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	names := caNames(cfg)
	if len(names) == 0 {
		return usagef("no gateways in %s: the local CA is only needed to add tokens to HTTPS gateway requests", cfg.Path)
	}
	ca, err := e.localCA(ctx, cfg, names)
	if err != nil {
		return err
	}
	if ca.fromAgent {
		if missing := uncovered(ca.names, names); len(missing) > 0 {
			fmt.Fprintf(e.stderr, "warning: the running gatepass agent's local CA may not sign for %s: the config's gateways changed since it started; "+
				"restart it (quit the desktop app, or stop `gatepass proxy`, and start it again) so that it makes a CA for them, then trust that one\n",
				strings.Join(missing, ", "))
		}
	}
	if sub == "path" {
		if ca.fileErr != nil {
			return ca.fileErr // the path is only worth printing if the file holds the CA
		}
		fmt.Fprintln(e.stdout, ca.path)
		return nil
	}
	if ca.fileErr != nil {
		fmt.Fprintf(e.stderr, "warning: %v\n", ca.fileErr) // the export does not need that file
	}
	if *out == "" {
		_, err = e.stdout.Write(ca.certPEM)
		return err
	}
	if err := os.WriteFile(*out, ca.certPEM, 0o644); err != nil {
		return fmt.Errorf("write the CA certificate: %w", err)
	}
	fmt.Fprintf(e.stderr, "Wrote the gatepass CA certificate to %s (it can sign only for: %v).\n", *out, ca.names)
	return nil
}

// localCA is the CA certificate that `ca export` and `ca path` hand out, the file
// that holds it, and the names it may sign for.
type localCA struct {
	certPEM []byte
	path    string
	names   []string
	// fromAgent says a running agent answered; fileErr, that the file at path
	// could not be made to hold its certificate.
	fromAgent bool
	fileErr   error
}

// localCA is the running agent's CA when an agent owns cfg: the one its proxy
// intercepts with, without a keychain read here. Only when no agent runs is the
// CA loaded (or made) from the keychain, as the agent itself would.
func (e *env) localCA(ctx context.Context, cfg *broker.Config, names []string) (localCA, error) {
	if c, ok := e.agent(ctx, cfg); ok {
		ca, err := agentCA(ctx, c, caCertPath(cfg))
		if !errors.Is(err, broker.ErrNoAgent) {
			return ca, err
		}
		// The agent stopped between the ping and the question: no one else
		// holds the CA now.
	}
	ca, err := proxy.EnsureCA(newKeychainCA(broker.SystemKeychain{}, cfg), names, caCertPath(cfg), e.logger())
	if err != nil {
		return localCA{}, err
	}
	return localCA{certPEM: ca.CertPEM(), path: caCertPath(cfg), names: names}, nil
}

// agentCA asks the agent for its CA certificate and makes sure the file at its
// path holds exactly that certificate: another gatepass (an older one, or one
// run while no agent ran) may have replaced it since the agent wrote it.
func agentCA(ctx context.Context, c broker.AgentClient, defaultPath string) (localCA, error) {
	got, err := c.CA(ctx)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return localCA{}, errors.New("the running gatepass agent for this config is from an older gatepass and cannot say which local CA it uses: " +
			"restart it (quit the desktop app, or stop `gatepass proxy`, and start it again), then run this command again")
	case err != nil:
		return localCA{}, err
	}
	cert, err := parseCACert(got.CertPEM)
	if err != nil {
		return localCA{}, fmt.Errorf("the running gatepass agent sent an unusable CA certificate (%v): restart it and try again", err)
	}
	ca := localCA{certPEM: got.CertPEM, path: got.Path, names: certNames(cert), fromAgent: true}
	if ca.path == "" {
		ca.path = defaultPath
	}
	ca.fileErr = proxy.WriteCertFile(ca.path, ca.certPEM)
	return ca, nil
}

// parseCACert checks that certPEM is one CA certificate and nothing else (never a
// key, whatever an agent sends) and returns it.
func parseCACert(certPEM []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("not exactly one PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("not a CA certificate")
	}
	return cert, nil
}

// certNames is what a CA's name constraints permit: DNS names, then IP addresses.
func certNames(cert *x509.Certificate) []string {
	names := slices.Clone(cert.PermittedDNSDomains)
	for _, r := range cert.PermittedIPRanges {
		names = append(names, r.IP.String())
	}
	return names
}
