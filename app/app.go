// Package app is gatepass's desktop front end: a Fyne window with one card
// per profile and a system tray icon and menu (DESIGN.md §6).
//
// It holds no token logic. It renders the broker's and the proxy's state and
// calls them for actions. Events arrive on channels and reach the widgets
// through fyne.Do; the UI keeps one state snapshot, owned by the Fyne main
// goroutine, from which the cards, the tray icon and the tray menu are drawn
// by the pure functions in model.go.
package app

import (
	"context"
	"os"
	"runtime"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"

	_ "github.com/gatepass-dev/gatepass/app/localefix" // before Fyne's locale init
	"github.com/gatepass-dev/gatepass/assets"
	"github.com/gatepass-dev/gatepass/broker"
	"github.com/gatepass-dev/gatepass/proxy"
)

// AppID is the application ID (also in FyneApp.toml).
const AppID = "dev.gatepass.app"

// Broker is what the app needs from the token broker.
type Broker interface {
	// Statuses returns one status per profile, in config order.
	Statuses() []broker.ProfileStatus
	// Subscribe delivers status changes until cancel is called.
	Subscribe() (events <-chan broker.Event, cancel func())
	// Login opens the browser once and waits for the loopback callback. Once the
	// browser was asked to open the sign-in address it calls address (from any
	// goroutine) with it, to open by hand, and with the opener's error when the
	// browser could not be opened (nil when it could), and goes on waiting.
	Login(ctx context.Context, profile string, address func(url string, err error)) error
	// Logout revokes the refresh token and deletes it from the keychain.
	Logout(ctx context.Context, profile string) error
	// FreshToken returns a token of the kind valid for at least margin, or for a
	// quarter of its lifetime if that is shorter (tokens that live a minute).
	FreshToken(ctx context.Context, profile string, kind broker.TokenKind, margin time.Duration) (broker.Token, error)
}

// Proxy is what the app needs from the local forward proxy.
type Proxy interface {
	Addr() string
	Running() bool
	// SetRunning switches the proxy on or off.
	SetRunning(on bool) error
	// SetAddr moves the proxy to another listen address (for this run; the
	// config is not changed). addr must pass CheckProxyAddr. A running
	// proxy restarts there; a stopped one only records it. On error the
	// proxy keeps its address and state.
	SetAddr(addr string) error
	// Requests delivers a row per proxied request until cancel is called.
	Requests() (rows <-chan RequestRow, cancel func())
	// CACertPath is the file holding the local CA's certificate, which
	// clients must trust for HTTPS gateways (curl --cacert); "" when no
	// gateway is reached over HTTPS.
	CACertPath() string
	// NewCA says why the local CA was generated in this run ("no CA stored
	// yet", "gateway names changed …"), so the window can tell the user to
	// trust it; "" when the stored CA is in use.
	NewCA() string
}

// RequestRow is one proxied request as the window lists it: the proxy's own
// record (DESIGN §1: app → proxy). It never holds a token; Injected only
// says whether one was added.
type RequestRow = proxy.RequestLog

// Demo describes a running embedded demo: where its identity provider and
// gateway listen and the config file a terminal's gatepass needs to reach it.
type Demo struct {
	Issuer, GatewayURL, ConfigPath string
}

// Options configure Run.
type Options struct {
	// Broker and Proxy are nil when gatepass is not configured yet (first
	// run); the window then shows the setup form and "Try the demo".
	Broker Broker
	Proxy  Proxy

	// ConfigPath is where the setup form writes the config.
	ConfigPath string
	// ConfigErr, when set, is shown in the window (with file and line, as
	// *broker.ConfigError carries them) with a button to the setup form.
	ConfigErr error
	// LoadConfig reads the config at ConfigPath again. With ConfigErr, the
	// window offers Reload and also reloads by itself when the file changes,
	// so fixing the file in an editor is enough.
	LoadConfig func() (*broker.Config, error)
	// WriteConfig saves a config from the setup form; the form has already
	// validated it with broker.ParseConfig on the encoded bytes. A file
	// already at ConfigPath is kept first; backup names that copy ("" when
	// there was no file), and the form tells the user where it is.
	WriteConfig func(*broker.Config) (backup string, err error)
	// Open, when set, starts the broker and proxy for a config the setup
	// form just wrote, so the window switches to the profile view without
	// a restart. When nil the window asks the user to restart gatepass.
	Open func(ctx context.Context, cfg *broker.Config) (Broker, Proxy, error)
	// StartDemo starts the embedded demo provider and gateway ("Try the
	// demo").
	StartDemo func(ctx context.Context) (Broker, Proxy, *Demo, error)
	// ShowRequests brings the window forward on each value: another
	// gatepass started for the same config asks this one to show itself.
	ShowRequests <-chan struct{}
	// Demo, with Broker and Proxy, says they are a demo's (gatepass gui
	// --demo); the window then says how to use it from a terminal.
	Demo *Demo
	// Listen, when set, is the proxy address the setup form offers (gatepass
	// gui --listen): the config it writes then names the address the proxy
	// binds. Empty means broker.DefaultListen.
	Listen string

	Version string
}

// Run opens the window and the tray icon and blocks until the user quits or
// ctx is done. Closing the window only hides it while a tray host exists;
// the broker and the proxy keep running. Without a display Run returns
// ErrNoDisplay at once.
func Run(ctx context.Context, opts Options) error {
	if err := displayError(runtime.GOOS, os.Getenv); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	a := fyneapp.NewWithID(AppID)
	if md := a.Metadata(); md.Name == "" {
		// A binary not built by `fyne package` carries no FyneApp.toml
		// metadata; the tray item's title (its name and tooltip in the host)
		// would be the bare app ID.
		md.ID, md.Name = AppID, "gatepass"
		if md.Version == "" {
			md.Version = opts.Version
		}
		fyneapp.SetMetadata(md)
	}
	a.SetIcon(appIcon())
	u := newUI(ctx, a, opts, broker.SystemClock{})
	bus, host := trayProbe()
	u.trayHost = host
	if !bus {
		u.tray = nil
	}
	u.win.Resize(fyne.NewSize(760, 680))

	// The tray must be set up before a.Run: Fyne starts the systray only
	// if a menu exists when its event loop begins. Until then fyne.Do
	// calls from the pumps queue up.
	u.start()
	a.Lifecycle().SetOnStarted(func() { go u.tickLoop(ctx) })

	// ctx ending (SIGINT, the caller) quits the app; once a.Run has returned
	// (Quit in the tray) there is no event loop to call into, and fyne.Do
	// would log a thread error on the way out.
	ran := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			select {
			case <-ran:
			default:
				fyne.Do(a.Quit)
			}
		case <-ran:
		}
	}()
	u.win.Show()
	a.Run()
	close(ran)
	cancel()
	u.stop()
	return nil
}

func appIcon() fyne.Resource {
	return fyne.NewStaticResource("gatepass.png", assets.AppIconPNG())
}

// trayIcons are the tray icon resources, built once.
var trayIcons = func() map[string]fyne.Resource {
	m := map[string]fyne.Resource{}
	for _, n := range assets.TrayIconNames {
		m[n] = fyne.NewStaticResource("gatepass-"+n+".png", assets.TrayIconPNG(n))
	}
	return m
}()
