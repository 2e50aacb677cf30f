package app

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"github.com/google/go-cmp/cmp"

	"github.com/gatepass-dev/gatepass/assets"
	"github.com/gatepass-dev/gatepass/broker"
)

var now = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

func st(state broker.State, expiresIn time.Duration) broker.ProfileStatus {
	s := broker.ProfileStatus{Profile: "work", State: state, Email: "ada@team.example"}
	if expiresIn != 0 {
		s.Expiry = now.Add(expiresIn)
	}
	return s
}

func TestCountdownText(t *testing.T) {
	tests := map[string]struct {
		st   broker.ProfileStatus
		want string
	}{
		"hours":              {st(broker.StateSignedIn, 2*time.Hour+3*time.Minute+4*time.Second), "expires in 2h 03m"},
		"minutes":            {st(broker.StateSignedIn, 42*time.Minute+10*time.Second), "expires in 42 min"},
		"seconds show <10m":  {st(broker.StateSignedIn, 9*time.Minute+59*time.Second), "expires in 9m 59s"},
		"at 10m: minutes":    {st(broker.StateSignedIn, 10*time.Minute), "expires in 10 min"},
		"seconds":            {st(broker.StateSignedIn, 9*time.Second), "expires in 9s"},
		"sub-second floors":  {st(broker.StateSignedIn, 1500*time.Millisecond), "expires in 1s"},
		"exactly now":        {st(broker.StateSignedIn, 0), ""},
		"expired":            {st(broker.StateSignedIn, -time.Minute), "token expired"},
		"refreshing counts":  {st(broker.StateRefreshing, time.Minute), "expires in 1m 00s"},
		"hour boundary":      {st(broker.StateSignedIn, time.Hour), "expires in 1h 00m"},
		"signed out: none":   {st(broker.StateSignedOut, time.Hour), ""},
		"sign-in required":   {st(broker.StateSignInRequired, time.Hour), ""},
		"no expiry known":    {broker.ProfileStatus{State: broker.StateSignedIn}, ""},
		"just under an hour": {st(broker.StateSignedIn, time.Hour-time.Millisecond), "expires in 59 min"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := countdownText(tc.st, now); got != tc.want {
				t.Errorf("countdownText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStateLabelAndColor(t *testing.T) {
	tests := map[string]struct {
		st        broker.ProfileStatus
		pending   bool
		wantLabel string
		wantColor fyne.ThemeColorName
	}{
		"signed in":           {st(broker.StateSignedIn, time.Hour), false, "Signed in", theme.ColorNameSuccess},
		"signed in, expiring": {st(broker.StateSignedIn, 4*time.Minute), false, "Signed in", theme.ColorNameWarning},
		"refreshing":          {st(broker.StateRefreshing, time.Hour), false, "Refreshing…", theme.ColorNameWarning},
		"sign-in required":    {st(broker.StateSignInRequired, 0), false, "Sign-in required", theme.ColorNameError},
		"signed out":          {st(broker.StateSignedOut, 0), false, "Signed out", theme.ColorNameDisabled},
		"broker signing in":   {st(broker.StateSigningIn, 0), false, "Signing in…", theme.ColorNamePrimary},
		"click pending":       {st(broker.StateSignedOut, 0), true, "Signing in…", theme.ColorNamePrimary},
		"keychain unreadable": {st(broker.StateUnknown, 0), false, "Keychain unavailable", theme.ColorNameWarning},
		"unknown":             {st("weird", 0), false, "Unknown state", theme.ColorNameDisabled},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := stateLabel(tc.st.State, tc.pending); got != tc.wantLabel {
				t.Errorf("label %q, want %q", got, tc.wantLabel)
			}
			if got := stateColor(tc.st, now, tc.pending); got != tc.wantColor {
				t.Errorf("color %q, want %q", got, tc.wantColor)
			}
		})
	}
}

func TestTrayIconName(t *testing.T) {
	other := func(s broker.ProfileStatus) broker.ProfileStatus { s.Profile = "home"; return s }
	tests := map[string]struct {
		sts     []broker.ProfileStatus
		pending map[string]bool
		want    string
	}{
		"no profiles":              {nil, nil, assets.TraySignedOut},
		"signed out":               {[]broker.ProfileStatus{st(broker.StateSignedOut, 0)}, nil, assets.TraySignedOut},
		"signed in":                {[]broker.ProfileStatus{st(broker.StateSignedIn, time.Hour)}, nil, assets.TraySignedIn},
		"expiring soon":            {[]broker.ProfileStatus{st(broker.StateSignedIn, time.Minute)}, nil, assets.TrayExpiring},
		"refreshing":               {[]broker.ProfileStatus{st(broker.StateRefreshing, time.Hour)}, nil, assets.TrayExpiring},
		"sign-in pending":          {[]broker.ProfileStatus{st(broker.StateSignedOut, 0)}, map[string]bool{"work": true}, assets.TrayExpiring},
		"required":                 {[]broker.ProfileStatus{st(broker.StateSignInRequired, 0)}, nil, assets.TraySignInRequired},
		"required beats signed in": {[]broker.ProfileStatus{st(broker.StateSignedIn, time.Hour), other(st(broker.StateSignInRequired, 0))}, nil, assets.TraySignInRequired},
		"signed in beats out":      {[]broker.ProfileStatus{st(broker.StateSignedOut, 0), other(st(broker.StateSignedIn, time.Hour))}, nil, assets.TraySignedIn},
		"expiring beats signed in": {[]broker.ProfileStatus{other(st(broker.StateSignedIn, time.Hour)), st(broker.StateSignedIn, time.Second)}, nil, assets.TrayExpiring},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := trayIconName(tc.sts, now, tc.pending); got != tc.want {
				t.Errorf("trayIconName = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStatusLine(t *testing.T) {
	req := st(broker.StateSignInRequired, 0)
	req.Reason = "invalid_rapt"
	noEmail := st(broker.StateSignedIn, time.Hour)
	noEmail.Email = ""
	tests := map[string]struct {
		st      broker.ProfileStatus
		pending bool
		want    string
	}{
		"signed in":    {st(broker.StateSignedIn, 90*time.Minute), false, "ada@team.example · expires 10:30"},
		"no email":     {noEmail, false, "work · expires 10:00"},
		"expired":      {st(broker.StateSignedIn, -time.Second), false, "ada@team.example · token expired"},
		"no expiry":    {st(broker.StateSignedIn, 0), false, "ada@team.example · signed in"},
		"refreshing":   {st(broker.StateRefreshing, time.Hour), false, "ada@team.example · refreshing"},
		"required":     {req, false, "work: sign-in required (invalid_rapt)"},
		"signed out":   {st(broker.StateSignedOut, 0), false, "work: signed out"},
		"pending":      {st(broker.StateSignedOut, 0), true, "work: signing in…"},
		"broker state": {st(broker.StateSigningIn, 0), false, "work: signing in…"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := statusLine(tc.st, now, tc.pending); got != tc.want {
				t.Errorf("statusLine = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTrayMenu(t *testing.T) {
	home := st(broker.StateSignedOut, 0)
	home.Profile, home.Email = "home", ""
	tail := []menuEntry{{Separator: true}, {Label: "Open gatepass", Action: actOpen}, {Separator: true}, {Label: "Quit", Action: actQuit}}
	tests := map[string]struct {
		sts     []broker.ProfileStatus
		pending map[string]bool
		unset   string
		want    []menuEntry
	}{
		"not configured": {nil, nil, "gatepass is not set up yet", append([]menuEntry{{Label: "gatepass is not set up yet", Disabled: true}}, tail...)},
		"signed in": {[]broker.ProfileStatus{st(broker.StateSignedIn, time.Hour)}, nil, "", append([]menuEntry{
			{Label: "ada@team.example · expires 10:00", Disabled: true},
			{Label: "Sign out", Action: actSignOut, Profile: "work"},
			{Label: "Copy token", Action: actCopyToken, Profile: "work"},
		}, tail...)},
		"signing in: disabled": {[]broker.ProfileStatus{st(broker.StateSignedOut, 0)}, map[string]bool{"work": true}, "", append([]menuEntry{
			{Label: "work: signing in…", Disabled: true},
			{Label: "Signing in…", Disabled: true, Action: actSignIn, Profile: "work"},
			{Label: "Copy token", Disabled: true, Action: actCopyToken, Profile: "work"},
		}, tail...)},
		"two profiles name them": {[]broker.ProfileStatus{st(broker.StateSignInRequired, 0), home}, nil, "", append([]menuEntry{
			{Label: "work: sign-in required", Disabled: true},
			{Label: "Sign in (work)", Action: actSignIn, Profile: "work"},
			{Label: "Copy token (work)", Disabled: true, Action: actCopyToken, Profile: "work"},
			{Separator: true},
			{Label: "home: signed out", Disabled: true},
			{Label: "Sign in (home)", Action: actSignIn, Profile: "home"},
			{Label: "Copy token (home)", Disabled: true, Action: actCopyToken, Profile: "home"},
		}, tail...)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := trayMenu(tc.sts, now, tc.pending, tc.unset)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("trayMenu (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNeedsNotification(t *testing.T) {
	tests := map[string]struct {
		prev, next broker.State
		want       bool
	}{
		"enters required":   {broker.StateSignedIn, broker.StateSignInRequired, true},
		"first seen":        {"", broker.StateSignInRequired, true},
		"stays required":    {broker.StateSignInRequired, broker.StateSignInRequired, false},
		"leaves required":   {broker.StateSignInRequired, broker.StateSignedIn, false},
		"refreshing":        {broker.StateSignedIn, broker.StateRefreshing, false},
		"signed out by you": {broker.StateSignedIn, broker.StateSignedOut, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := needsNotification(tc.prev, tc.next); got != tc.want {
				t.Errorf("needsNotification(%q, %q) = %v", tc.prev, tc.next, got)
			}
		})
	}
}

func TestCurlExample(t *testing.T) {
	tests := map[string]struct {
		addr  string
		gws   []string
		plain []string
		ca    string
		want  string
	}{
		"plain-HTTP loopback gateway": {"127.0.0.1:8787", []string{"127.0.0.1:9000"}, []string{"127.0.0.1:9000"}, "/h/ca.pem", "curl -x http://127.0.0.1:8787 http://127.0.0.1:9000/"},
		"host":                        {"127.0.0.1:8787", []string{"api.team.example"}, nil, "/home/ada/.config/gatepass/gatepass-ca.pem", "curl --cacert /home/ada/.config/gatepass/gatepass-ca.pem -x http://127.0.0.1:8787 https://api.team.example/"},
		"CA path with a space":        {"127.0.0.1:8787", []string{"api.team.example"}, nil, "/Users/Ada L/it's/ca.pem", `curl --cacert '/Users/Ada L/it'\''s/ca.pem' -x http://127.0.0.1:8787 https://api.team.example/`},
		"no CA file":                  {"127.0.0.1:8787", []string{"api.team.example"}, nil, "", "curl -x http://127.0.0.1:8787 https://api.team.example/"},
		"prefers exact":               {"127.0.0.1:8787", []string{"*.gw.team.example", "localhost:9443"}, nil, "/h/ca.pem", "curl --cacert /h/ca.pem -x http://127.0.0.1:8787 https://localhost:9443/"},
		"only wildcard":               {"127.0.0.1:9000", []string{"*.gw.team.example"}, nil, "/h/ca.pem", "curl --cacert /h/ca.pem -x http://127.0.0.1:9000 https://api.gw.team.example/"},
		"no gateways":                 {"127.0.0.1:8787", nil, nil, "/h/ca.pem", ""},
		"no proxy":                    {"", []string{"api.team.example"}, nil, "/h/ca.pem", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := curlExample(tc.addr, tc.gws, tc.plain, tc.ca); got != tc.want {
				t.Errorf("curlExample = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRequestCells(t *testing.T) {
	at := time.Date(2025, 3, 14, 8, 7, 6, 0, time.UTC)
	tests := map[string]struct {
		r    RequestRow
		want [7]string
	}{
		"injected": {RequestRow{Time: at, Method: "GET", Host: "api.team.example", Path: "/v1", Status: 200, Injected: true, Profile: "work", Duration: 12 * time.Millisecond},
			[7]string{"08:07:06", "GET", "api.team.example", "/v1", "200", "token (work)", "12ms"}},
		"tunnel": {RequestRow{Time: at, Method: "CONNECT", Host: "example.org:443", Status: 200, Duration: 2500 * time.Millisecond},
			[7]string{"08:07:06", "CONNECT", "example.org:443", "", "200", "—", "2.5s"}},
		"failed": {RequestRow{Time: at, Method: "GET", Host: "h", Path: "/", Err: "connection refused"},
			[7]string{"08:07:06", "GET", "h", "/", "error", "—", "–"}},
		"fast": {RequestRow{Time: at, Method: "GET", Host: "h", Path: "/", Status: 304, Duration: 300 * time.Microsecond},
			[7]string{"08:07:06", "GET", "h", "/", "304", "—", "<1ms"}},
		"long path": {RequestRow{Time: at, Method: "GET", Host: "h", Path: "/" + strings.Repeat("a", 80), Status: 200, Duration: time.Millisecond},
			[7]string{"08:07:06", "GET", "h", "/" + strings.Repeat("a", 58) + "…", "200", "—", "1ms"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := requestCells(tc.r); got != tc.want {
				t.Errorf("requestCells:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDescribeError(t *testing.T) {
	tests := map[string]struct {
		err       error
		wantShown bool
		wantTitle string
		wantRetry bool
	}{
		"nil":              {nil, false, "", false},
		"cancelled":        {fmt.Errorf("wait for callback: %w", context.Canceled), false, "", false},
		"keychain locked":  {&broker.KeychainError{Op: "read", Account: "work", Kind: broker.KeychainLocked}, true, "The keychain is locked", true},
		"keychain missing": {&broker.KeychainError{Op: "read", Account: "work", Kind: broker.KeychainUnavailable}, true, "The keychain is unavailable", true},
		"sign-in required": {&broker.SignInRequiredError{Profile: "work"}, true, "Sign-in required", false},
		"sentinel":         {fmt.Errorf("token: %w", broker.ErrSignInRequired), true, "Sign-in required", false},
		"timeout":          {context.DeadlineExceeded, true, "Could not sign in: timed out", true},
		"other":            {errors.New("browser command failed: exit status 1"), true, "Could not sign in", true},
		"denied":           {fmt.Errorf("login: %w", &broker.AuthorizationError{Code: "access_denied"}), true, "Sign-in cancelled", false},
		"refused":          {&broker.AuthorizationError{Code: "invalid_scope", Description: "bad scope"}, true, "The identity provider refused the sign-in", false},
		"required, reason": {&broker.SignInRequiredError{Profile: "work", Reason: "the issuer refused the refresh token"}, true, "Sign-in required", false},
		"browser timeout":  {fmt.Errorf("profile work: %w", &broker.LoginTimeoutError{After: 5 * time.Minute}), true, "The sign-in timed out", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, shown := describeError("sign in", tc.err)
			if shown != tc.wantShown || p.Title != tc.wantTitle || p.Retry != tc.wantRetry {
				t.Errorf("describeError = %+v, %v; want title %q retry %v shown %v", p, shown, tc.wantTitle, tc.wantRetry, tc.wantShown)
			}
			if shown && p.Hint == "" {
				t.Error("no hint saying what to do")
			}
			// The window's advice is what to press; the CLI's (run `gatepass
			// login`) is for a terminal.
			if text := p.Detail + p.Hint; strings.Contains(text, "gatepass login") {
				t.Errorf("window advice names a CLI command: %+v", p)
			}
		})
	}
}

func TestProxyProblem(t *testing.T) {
	inUse := fmt.Errorf("listen tcp 127.0.0.1:8787: bind: %w", syscall.EADDRINUSE)
	free := func() (int, error) { return 40123, nil }
	noFree := func() (int, error) { return 0, errors.New("no ports") }
	tests := map[string]struct {
		addr     string
		err      error
		free     func() (int, error)
		wantHint string
		wantAlt  string
	}{
		"in use, offers a port":   {"127.0.0.1:8787", inUse, free, `listen = "127.0.0.1:40123"`, "127.0.0.1:40123"},
		"in use, keeps ::1":       {"[::1]:8787", inUse, free, "Use [::1]:40123", "[::1]:40123"},
		"in use, keeps localhost": {"localhost:8787", inUse, free, "Use localhost:40123", "localhost:40123"},
		"in use, no free port":    {"127.0.0.1:8787", inUse, noFree, "set another `listen` address", ""},
		"other":                   {"127.0.0.1:8787", errors.New("permission denied"), free, "gatepass doctor", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, alt := proxyProblem(tc.addr, tc.err, tc.free)
			if !strings.Contains(p.Title, tc.addr) || !strings.Contains(p.Hint, tc.wantHint) {
				t.Errorf("proxyProblem = %+v; want %s in the title and %q in the hint", p, tc.addr, tc.wantHint)
			}
			if alt != tc.wantAlt {
				t.Errorf("offered address %q, want %q", alt, tc.wantAlt)
			}
			if alt != "" {
				if err := CheckProxyAddr(alt); err != nil {
					t.Errorf("offered address fails CheckProxyAddr: %v", err)
				}
			}
		})
	}
}

func TestCheckProxyAddr(t *testing.T) {
	tests := map[string]struct {
		addr    string
		wantErr string // "" for valid
	}{
		"ipv4 loopback":     {"127.0.0.1:8788", ""},
		"other 127/8":       {"127.0.0.2:8788", ""},
		"ipv6 loopback":     {"[::1]:8788", ""},
		"localhost":         {"localhost:8788", ""},
		"mapped loopback":   {"[::ffff:127.0.0.1]:8788", ""},
		"all interfaces":    {"0.0.0.0:8788", "not a loopback address"},
		"empty host":        {":8788", "not a loopback address"},
		"lan address":       {"192.168.1.5:8788", "not a loopback address"},
		"hostname":          {"example.org:8788", "not a loopback address"},
		"no port":           {"127.0.0.1", "not HOST:PORT"},
		"port zero":         {"127.0.0.1:0", "not a number from 1 to 65535"},
		"port too big":      {"127.0.0.1:70000", "not a number from 1 to 65535"},
		"port not a number": {"127.0.0.1:http", "not a number from 1 to 65535"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckProxyAddr(tc.addr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("CheckProxyAddr(%q) = %v, want nil", tc.addr, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("CheckProxyAddr(%q) = %v, want an error containing %q", tc.addr, err, tc.wantErr)
			}
		})
	}
}

func TestDisplayError(t *testing.T) {
	tests := map[string]struct {
		goos string
		env  map[string]string
		want error
	}{
		"x11":              {"linux", map[string]string{"DISPLAY": ":0"}, nil},
		"wayland":          {"linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, nil},
		"headless linux":   {"linux", nil, ErrNoDisplay},
		"headless bsd":     {"freebsd", nil, ErrNoDisplay},
		"macos needs none": {"darwin", nil, nil},
		"windows":          {"windows", nil, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := displayError(tc.goos, func(k string) string { return tc.env[k] }); got != tc.want {
				t.Errorf("displayError = %v, want %v", got, tc.want)
			}
		})
	}
	if !strings.Contains(ErrNoDisplay.Error(), "gatepass proxy") {
		t.Error("no-display message does not suggest `gatepass proxy`")
	}
}

func TestValidateSetupFieldMapping(t *testing.T) {
	valid := setupInput{Name: "work", Issuer: googleIssuer, ClientID: "id", ClientSecret: "GOCSPX-abc", Gateways: "api.team.example", Listen: "127.0.0.1:8787", Inject: broker.IDToken}
	tests := map[string]struct {
		mod        func(*setupInput)
		wantFields []string
	}{
		"valid":           {func(*setupInput) {}, nil},
		"no client":       {func(in *setupInput) { in.ClientID = " " }, []string{fieldClient}},
		"no gateways":     {func(in *setupInput) { in.Gateways = "\n" }, []string{fieldGateway}},
		"bad gateway":     {func(in *setupInput) { in.Gateways = "a..b" }, []string{fieldGateway}},
		"http issuer":     {func(in *setupInput) { in.Issuer = "http://idp.example" }, []string{fieldIssuer}},
		"loopback http":   {func(in *setupInput) { in.Issuer = "http://127.0.0.1:9999" }, nil},
		"public listen":   {func(in *setupInput) { in.Listen = "0.0.0.0:8787" }, []string{fieldListen}},
		"bad name":        {func(in *setupInput) { in.Name = "Work Stuff" }, []string{fieldName}},
		"client and gate": {func(in *setupInput) { in.ClientID, in.Gateways = "", "" }, []string{fieldClient, fieldGateway}},
		// One round finds everything: the missing client ID does not hide the
		// issuer's and the listen address's problems until the next save.
		"all at once":      {func(in *setupInput) { in.ClientID, in.Issuer, in.Listen = "", "http://idp.example", "0.0.0.0:1" }, []string{fieldIssuer, fieldClient, fieldListen}},
		"space in gateway": {func(in *setupInput) { in.Gateways = "api team.example" }, []string{fieldGateway}},
		"gateway twice":    {func(in *setupInput) { in.Gateways = "api.team.example\nAPI.team.example" }, []string{fieldGateway}},
		"space in secret":  {func(in *setupInput) { in.ClientSecret = "GOCSPX-abc def" }, []string{fieldSecret}},
		"commas and lines": {func(in *setupInput) { in.Gateways = " api.team.example ,\n*.gw.team.example\r\n" }, nil},
		// Google refuses the code without the secret, even with PKCE: said in the
		// form, not after the consent; another issuer may do without one.
		"google, no secret":  {func(in *setupInput) { in.ClientSecret = "" }, []string{fieldSecret}},
		"google/, no secret": {func(in *setupInput) { in.Issuer, in.ClientSecret = googleIssuer+"/", "" }, []string{fieldSecret}},
		"other, no secret":   {func(in *setupInput) { in.Issuer, in.ClientSecret = "https://login.team.example", "" }, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := valid
			tc.mod(&in)
			cfg, errs := validateSetup("/tmp/config.toml", in)
			var fields []string
			for _, f := range []string{fieldName, fieldIssuer, fieldClient, fieldSecret, fieldGateway, fieldInject, fieldListen, fieldForm} {
				if errs[f] != "" {
					fields = append(fields, f)
				}
			}
			if diff := cmp.Diff(tc.wantFields, fields); diff != "" {
				t.Errorf("fields with errors (-want +got):\n%s\nerrors: %v", diff, errs)
			}
			if (cfg != nil) != (tc.wantFields == nil) {
				t.Errorf("config returned = %v with errors %v", cfg != nil, errs)
			}
			for f, msg := range errs {
				// The form has no TOML keys or line numbers to point at.
				if regexp.MustCompile(`line \d|profiles\.`).MatchString(msg) {
					t.Errorf("error under %s speaks of the file: %q", f, msg)
				}
				if strings.Count(msg, ";") > 0 && f == fieldClient {
					t.Errorf("client ID error said twice: %q", msg)
				}
			}
		})
	}
}

func TestFieldForKey(t *testing.T) {
	tests := map[string]string{
		"listen":                      fieldListen,
		"default_profile":             fieldName,
		"profiles":                    fieldName,
		"profiles.work":               fieldName,
		"profiles.work.issuer":        fieldIssuer,
		"profiles.work.client_id":     fieldClient,
		"profiles.work.gateways[2]":   fieldGateway,
		"profiles.work.inject":        fieldInject,
		`profiles."a.b".client_id`:    fieldClient,
		"profiles.work.plain_http[0]": fieldForm,
		"upstream_proxy":              fieldForm,
	}
	for key, want := range tests {
		t.Run(key, func(t *testing.T) {
			if got := fieldForKey(key, "work"); got != want {
				t.Errorf("fieldForKey(%q) = %q, want %q", key, got, want)
			}
		})
	}
}

// TestCountdownTextAtExpiry: at the moment of expiry, and in its last
// fraction of a second, the card says the token expired, not "expires in 0s".
func TestCountdownTextAtExpiry(t *testing.T) {
	for _, left := range []time.Duration{0, 500 * time.Millisecond} {
		s := broker.ProfileStatus{Profile: "work", State: broker.StateSignedIn, Expiry: now.Add(left)}
		if got := countdownText(s, now); got != "token expired" {
			t.Errorf("countdownText with %v left = %q, want %q", left, got, "token expired")
		}
	}
}

// TestEllipsizeBoundary: a request path that fits the column's 60 characters
// is shown whole; one longer is cut to 59 and an ellipsis, by characters, not bytes.
func TestEllipsizeBoundary(t *testing.T) {
	fits := "/" + strings.Repeat("é", 59)
	if got := ellipsize(fits, 60); got != fits {
		t.Errorf("ellipsize of 60 characters = %q, want it whole", got)
	}
	if got, want := ellipsize(fits+"x", 60), "/"+strings.Repeat("é", 58)+"…"; got != want {
		t.Errorf("ellipsize of 61 characters = %q, want %q", got, want)
	}
}

// TestValidateSetupTrims: what the setup form writes is what the user meant,
// without the spaces and line breaks a paste brings along (a client secret
// copied from a web page often ends in one).
func TestValidateSetupTrims(t *testing.T) {
	cfg, errs := validateSetup("/tmp/config.toml", setupInput{
		Name: " work ", Issuer: " " + googleIssuer + "\n", ClientID: " 1234-abc.apps.googleusercontent.com ",
		ClientSecret: " GOCSPX-secret \n", Gateways: " api.team.example \n", Listen: " 127.0.0.1:8787 ", Inject: broker.AccessToken,
	})
	if len(errs) != 0 || cfg == nil {
		t.Fatalf("errors %v, want none", errs)
	}
	p := cfg.Profiles[0]
	got := []string{cfg.Listen, cfg.DefaultProfile, p.Name, p.Issuer, p.ClientID, p.ClientSecret, string(p.Inject), fmt.Sprint(p.Gateways)}
	want := []string{"127.0.0.1:8787", "work", "work", googleIssuer, "1234-abc.apps.googleusercontent.com", "GOCSPX-secret", "access_token", "[api.team.example]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

// TestShellQuote: a path is pasted into a shell as it is when it can be, quoted
// when a character would split, expand or end it.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/home/ada/.config/gatepass/config.toml": "/home/ada/.config/gatepass/config.toml",
		"/tmp/demo two/config.toml":              "'/tmp/demo two/config.toml'",
		"/tmp/ada's/config.toml":                 `'/tmp/ada'\''s/config.toml'`,
		"/tmp/x:~root/config.toml":               "'/tmp/x:~root/config.toml'",
		"/tmp/$HOME/c.toml":                      "'/tmp/$HOME/c.toml'",
		"":                                       "''",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
