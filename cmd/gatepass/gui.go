package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatepass-dev/gatepass/app"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/proxy"
)

// appBroker adapts *broker.Broker to the app's interface.
type appBroker struct {
	*broker.Broker
	prompt *os.File
}

func (a appBroker) Login(ctx context.Context, profile string, address func(url string, err error)) error {
	_, err := a.Broker.Login(ctx, profile, broker.LoginOptions{Prompt: a.prompt, Address: address})
	return err
}

func (a appBroker) Logout(ctx context.Context, profile string) error {
	_, err := a.Broker.Logout(ctx, profile)
	return err
}

// appProxy lets the window switch the proxy off and on and move it to
// another port: a stopped http.Server cannot start again, so "on" and a new
// address build a new proxy.Server. Request rows fan out to subscribers
// without ever blocking the proxy.
type appProxy struct {
	// build makes a proxy listening on listen; it is newProxy with
	// agentOptions.listen set to listen.
	build func(listen string, onRequest func(proxy.RequestLog)) (*proxy.Server, error)
	// caPath is the CA certificate file clients trust, "" without HTTPS gateways.
	caPath string

	mu   sync.Mutex // guards addr and srv; held while a server starts or stops
	addr string     // the listen address the next server binds
	srv  *proxy.Server

	// subMu guards subs. It is separate from mu so that requests
	// finishing during a Shutdown (which waits for them) can publish
	// their rows while mu is held.
	subMu sync.Mutex
	subs  map[chan app.RequestRow]struct{}
}

func newAppProxy(addr string, build func(listen string, onRequest func(proxy.RequestLog)) (*proxy.Server, error)) *appProxy {
	return &appProxy{build: build, addr: addr, subs: map[chan app.RequestRow]struct{}{}}
}

func (p *appProxy) CACertPath() string { return p.caPath }

// NewCA is the running server's (proxy.Server.NewCA); "" while stopped.
func (p *appProxy) NewCA() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return ""
	}
	return p.srv.NewCA()
}

func (p *appProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return p.srv.Addr()
	}
	return p.addr
}

func (p *appProxy) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv != nil
}

func (p *appProxy) SetRunning(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.srv == nil:
		srv, err := p.start(p.addr)
		if err != nil {
			return err
		}
		p.srv = srv
	case !on && p.srv != nil:
		err := shutdownProxy(p.srv)
		p.srv = nil
		return err
	}
	return nil
}

// SetAddr moves the proxy to addr (a loopback HOST:PORT, app.CheckProxyAddr)
// for this run. A running proxy binds the new address before the old
// server stops, so a failure (the port is taken too) leaves it serving
// where it was; a stopped proxy only records the address.
func (p *appProxy) SetAddr(addr string) error {
	if err := app.CheckProxyAddr(addr); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		p.addr = addr
		return nil
	}
	if addr == p.addr || addr == p.srv.Addr() {
		return nil
	}
	srv, err := p.start(addr)
	if err != nil {
		return err
	}
	old := p.srv
	p.srv, p.addr = srv, addr
	if err := shutdownProxy(old); err != nil {
		return fmt.Errorf("the proxy moved to %s, but stopping it on %s failed: %w", srv.Addr(), old.Addr(), err)
	}
	return nil
}

// start builds and starts a server on listen; p.mu is held.
func (p *appProxy) start(listen string) (*proxy.Server, error) {
	srv, err := p.build(listen, p.publish)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	return srv, nil
}

func shutdownProxy(srv *proxy.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func (p *appProxy) publish(row proxy.RequestLog) {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for ch := range p.subs {
		select {
		case ch <- row:
		default: // the window is behind; drop rather than slow the proxy
		}
	}
}

func (p *appProxy) Requests() (<-chan app.RequestRow, func()) {
	ch := make(chan app.RequestRow, 256)
	p.subMu.Lock()
	p.subs[ch] = struct{}{}
	p.subMu.Unlock()
	return ch, func() {
		p.subMu.Lock()
		defer p.subMu.Unlock()
		if _, ok := p.subs[ch]; ok {
			delete(p.subs, ch)
			close(ch)
		}
	}
}

// openAgent starts the broker for cfg and prepares its proxy for the window,
// which switches it on. A proxy that cannot start (port taken) does not stop
// the app: the window shows the proxy as off and says why.
//
// show receives a value when another `gatepass` for the same config asks,
// over the control socket, for this window.
func openAgent(ctx context.Context, e *env, cfg *broker.Config, browser broker.Browser, listen string, show chan<- struct{}) (app.Broker, app.Proxy, error) {
	log, _ := e.agentLogger() // flushes every 100ms until the process exits
	opts := agentOptions{log: log, browser: browser, listen: listen}
	b, err := startBroker(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	addr := cfg.Listen
	if listen != "" {
		addr = listen
	}
	px := newAppProxy(addr, func(listen string, onRequest func(proxy.RequestLog)) (*proxy.Server, error) {
		o := opts
		o.listen = listen
		o.onRequest = onRequest
		return newProxy(b, cfg, o)
	})
	if len(caNames(cfg)) > 0 {
		px.caPath = caCertPath(cfg)
	}
	if show != nil {
		b.SetShowWindow(func() {
			select {
			case show <- struct{}{}:
			default: // one is pending already
			}
		})
	}
	b.SetProxyAddr(func() string {
		if px.Running() {
			return px.Addr()
		}
		return ""
	})
	// The window switches the proxy on as it attaches (app.attach), off its
	// UI goroutine: the local CA comes from the keychain, which may be slow
	// to answer, and a port taken is shown there with a free one to use.
	return appBroker{Broker: b, prompt: os.Stderr}, px, nil
}

func cmdGUI(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("gui", flag.ContinueOnError)
	browserCmd := fs.String("browser-command", "", "command that opens sign-in URLs (default $BROWSER, else the OS opener)")
	startWithDemo := fs.Bool("demo", false, "start with the embedded demo identity provider and gateway instead of the config")
	listen := fs.String("listen", "", "proxy address (default: listen from the config, or "+broker.DefaultListen+" for the demo)")
	if err := e.parse("gui", fs, args, "gui [--browser-command CMD] [--demo] [--listen ADDR]"); err != nil {
		return err
	}
	// As for `gatepass proxy`: a usage error before any window opens, not a failure
	// shown later in it.
	if *listen != "" {
		if err := broker.CheckListen(*listen); err != nil {
			return usagef("--listen %v", err)
		}
	}
	browser := broker.ChooseBrowser(*browserCmd)
	// What a demo leaves behind is removed when the app ends (or the demo's context
	// does), before the process exits.
	var demoMu sync.Mutex
	var demoEnds []func()
	defer func() {
		demoMu.Lock()
		defer demoMu.Unlock()
		for _, end := range demoEnds {
			end()
		}
	}()
	path, err := broker.ResolveConfigPath(e.configFlag)
	if err != nil {
		return err
	}
	show := make(chan struct{}, 1)
	opts := app.Options{
		ShowRequests: show,
		Listen:       *listen,
		ConfigPath:   path,
		LoadConfig:   func() (*broker.Config, error) { return broker.LoadConfig(path) },
		Version:      version,
		WriteConfig:  func(cfg *broker.Config) (string, error) { return writeConfigFile(path, cfg) },
		Open: func(ctx context.Context, cfg *broker.Config) (app.Broker, app.Proxy, error) {
			if cfg.Path == "" {
				cfg.Path = path
			}
			return openAgent(ctx, e, cfg, browser, *listen, show)
		},
		StartDemo: func(ctx context.Context) (app.Broker, app.Proxy, *app.Demo, error) {
			dir, err := os.MkdirTemp("", "gatepass-demo-")
			if err != nil {
				return nil, nil, nil, err
			}
			demoListen := broker.DefaultListen
			if *listen != "" {
				demoListen = *listen
			}
			kc := broker.SystemKeychain{}
			profile, release := demoProfileFor(kc)
			d, err := startDemo(ctx, dir, demoListen, profile, demo.Options{})
			if err != nil {
				release()
				return nil, nil, nil, err
			}
			end := sync.OnceFunc(func() { d.Close(); d.forget(kc, dir); release() })
			demoMu.Lock()
			demoEnds = append(demoEnds, end)
			demoMu.Unlock()
			go func() { <-ctx.Done(); end() }()
			fmt.Fprintf(e.stderr, "gatepass demo: identity provider %s, gateway %s, config %s\n", d.Provider.Issuer(), d.GatewayURL, d.ConfigPath)
			br, px, err := openAgent(ctx, e, d.Config, browser, "", show)
			return br, px, &app.Demo{Issuer: d.Provider.Issuer(), GatewayURL: d.GatewayURL, ConfigPath: d.ConfigPath}, err
		},
	}
	cfg, err := e.loadConfig()
	switch {
	case *startWithDemo:
		if opts.Broker, opts.Proxy, opts.Demo, err = opts.StartDemo(ctx); err != nil {
			return err
		}
	case errors.Is(err, errConfigMissing):
		// First run: the window shows the setup form and "Try the demo".
	case err != nil:
		opts.ConfigErr = err
	default:
		// Started again (a second click in the menu): show the running window.
		if sock, serr := broker.ControlSocketPath(cfg.Path); serr == nil {
			if c := (broker.AgentClient{Path: sock}); c.Alive(ctx) {
				if err := c.ShowWindow(ctx); err != nil {
					return err
				}
				fmt.Fprintln(e.stderr, "gatepass is already running for this config; brought its window forward.")
				return nil
			}
		}
		if opts.Broker, opts.Proxy, err = openAgent(ctx, e, cfg, browser, *listen, show); err != nil {
			return err
		}
	}
	if err := app.Run(ctx, opts); err != nil {
		if errors.Is(err, app.ErrNoDisplay) {
			return fmt.Errorf("%w; for headless use run `gatepass proxy` and `gatepass login --no-browser`", err)
		}
		return err
	}
	return nil
}

// writeConfigFile writes cfg to path, readable by the user only (it may hold a
// client secret), through a temporary file and a rename, so that a crash or a full
// disk never leaves half a config. A file already at path is kept first, whole, as
// path.bak-YYYYMMDD-HHMMSS (its other profiles and secrets may matter; the setup
// form writes one profile); backup names that copy, "" when there was none.
func writeConfigFile(path string, cfg *broker.Config) (backup string, err error) {
	data, err := broker.EncodeConfig(cfg)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write the config: %w", err)
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if backup, err = keepBackup(path, old); err != nil {
			return "", fmt.Errorf("keep a copy of the current config before replacing it: %w; nothing was changed", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read the current config before replacing it: %w; nothing was changed", err)
	}
	if err := writeFileAtomic(path, data); err != nil {
		return backup, fmt.Errorf("write the config %s: %w", path, err)
	}
	return backup, nil
}

// keepBackup writes data next to path under a new name that no file has yet.
func keepBackup(path string, data []byte) (string, error) {
	base := path + ".bak-" + time.Now().Format("20060102-150405")
	for i := 0; i < 100; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
			return "", err
		}
		return name, nil
	}
	return "", fmt.Errorf("too many backups named %s*", base)
}

// writeFileAtomic replaces path with data (mode 0600) through a temporary file
// in the same folder and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.toml") // created 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // nothing left to remove after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
