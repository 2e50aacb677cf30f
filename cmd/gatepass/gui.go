package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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

func (a appBroker) Login(ctx context.Context, profile string) error {
	_, err := a.Broker.Login(ctx, profile, broker.LoginOptions{Prompt: a.prompt})
	return err
}

func (a appBroker) Logout(ctx context.Context, profile string) error {
	_, err := a.Broker.Logout(ctx, profile)
	return err
}

// appProxy lets the window switch the proxy off and on: a stopped
// http.Server cannot start again, so "on" builds a new proxy.Server.
// Request rows fan out to subscribers without ever blocking the proxy.
type appProxy struct {
	build func(onRequest func(proxy.RequestLog)) (*proxy.Server, error)
	addr  string

	mu   sync.Mutex // guards srv and subs
	srv  *proxy.Server
	subs map[chan app.RequestRow]struct{}
}

func newAppProxy(addr string, build func(func(proxy.RequestLog)) (*proxy.Server, error)) *appProxy {
	return &appProxy{build: build, addr: addr, subs: map[chan app.RequestRow]struct{}{}}
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
		srv, err := p.build(p.publish)
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		p.srv = srv
	case !on && p.srv != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := p.srv.Shutdown(ctx)
		p.srv = nil
		return err
	}
	return nil
}

func (p *appProxy) publish(l proxy.RequestLog) {
	row := app.RequestRow(l)
	p.mu.Lock()
	defer p.mu.Unlock()
	for ch := range p.subs {
		select {
		case ch <- row:
		default: // the window is behind; drop rather than slow the proxy
		}
	}
}

func (p *appProxy) Requests() (<-chan app.RequestRow, func()) {
	ch := make(chan app.RequestRow, 256)
	p.mu.Lock()
	p.subs[ch] = struct{}{}
	p.mu.Unlock()
	return ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.subs[ch]; ok {
			delete(p.subs, ch)
			close(ch)
		}
	}
}

// openAgent starts the broker and the proxy for cfg for the window. A
// proxy that cannot start (port taken) does not stop the app: the window
// shows the proxy as off and the switch reports the error.
func openAgent(ctx context.Context, e *env, cfg *broker.Config, browser broker.Browser, listen string) (app.Broker, app.Proxy, error) {
	opts := agentOptions{log: e.logger(), browser: browser, listen: listen}
	b, err := startBroker(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	addr := cfg.Listen
	if listen != "" {
		addr = listen
	}
	px := newAppProxy(addr, func(onRequest func(proxy.RequestLog)) (*proxy.Server, error) {
		o := opts
		o.onRequest = onRequest
		return newProxy(b, cfg, o)
	})
	if err := px.SetRunning(true); err != nil {
		fmt.Fprintf(e.stderr, "gatepass: the proxy did not start: %v\n", err)
	}
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
	browser := broker.ChooseBrowser(*browserCmd)
	path, err := broker.ResolveConfigPath(e.configFlag)
	if err != nil {
		return err
	}
	opts := app.Options{
		ConfigPath: path,
		Version:    version,
		WriteConfig: func(cfg *broker.Config) error {
			data, err := broker.EncodeConfig(cfg)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			return os.WriteFile(path, data, 0o600)
		},
		Open: func(ctx context.Context, cfg *broker.Config) (app.Broker, app.Proxy, error) {
			if cfg.Path == "" {
				cfg.Path = path
			}
			return openAgent(ctx, e, cfg, browser, *listen)
		},
		StartDemo: func(ctx context.Context) (app.Broker, app.Proxy, error) {
			dir, err := os.MkdirTemp("", "gatepass-demo-")
			if err != nil {
				return nil, nil, err
			}
			demoListen := broker.DefaultListen
			if *listen != "" {
				demoListen = *listen
			}
			d, err := startDemo(ctx, dir, demoListen, demo.Options{})
			if err != nil {
				return nil, nil, err
			}
			go func() { <-ctx.Done(); d.Close() }()
			fmt.Fprintf(e.stderr, "gatepass demo: identity provider %s, gateway %s, config %s\n", d.Provider.Issuer(), d.GatewayURL, d.ConfigPath)
			return openAgent(ctx, e, d.Config, browser, "")
		},
	}
	cfg, err := e.loadConfig()
	switch {
	case *startWithDemo:
		if opts.Broker, opts.Proxy, err = opts.StartDemo(ctx); err != nil {
			return err
		}
	case errors.Is(err, errConfigMissing):
		// First run: the window shows the setup form and "Try the demo".
	case err != nil:
		opts.ConfigErr = err
	default:
		if opts.Broker, opts.Proxy, err = openAgent(ctx, e, cfg, browser, *listen); err != nil {
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
