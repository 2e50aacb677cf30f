package broker

import (
	"errors"
	"golang.org/x/net/http/httpproxy"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustPattern(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPatterns(t testing.TB, ss ...string) []Pattern {
	t.Helper()
	var out []Pattern
	for _, s := range ss {
		out = append(out, mustPattern(t, s))
	}
	return out
}

func TestParseConfigGood(t *testing.T) {
	tests := map[string]struct {
		file string
		want func(path string) *Config
	}{
		"full": {
			file: "good-full.toml",
			want: func(path string) *Config {
				return &Config{
					Path:           path,
					Listen:         "127.0.0.1:8787",
					DefaultProfile: "work",
					UpstreamProxy:  "http://proxy.corp.example:3128",
					Profiles: []*Profile{{
						Name:           "work",
						Issuer:         "https://accounts.google.com",
						ClientID:       "1234-abc.apps.googleusercontent.com",
						ClientSecret:   "GOCSPX-not-a-real-secret",
						Scopes:         []string{"openid", "email", "profile"},
						Gateways:       mustPatterns(t, "api.team.example", "*.gw.team.example", "localhost:9443"),
						Inject:         IDToken,
						AllowedOrigins: mustPatterns(t, "docs.team.example", "*.preview.team.example:8443"),
						Overrides: map[Pattern]Override{
							mustPatterns(t, "localhost:9443")[0]:    {Inject: AccessToken},
							mustPatterns(t, "*.gw.team.example")[0]: {Header: HeaderProxyAuthorization},
						},
					}, {
						Name:      "lab",
						Issuer:    "https://idp.lab.example/realms/lab",
						ClientID:  "gatepass",
						Scopes:    []string{"openid", "email"},
						Gateways:  mustPatterns(t, "api.lab.example", "[::1]:8443", "localhost:8080"),
						Inject:    AccessToken,
						PlainHTTP: mustPatterns(t, "localhost:8080"),
					}},
				}
			},
		},
		"minimal gets defaults": {
			file: "good-minimal.toml",
			want: func(path string) *Config {
				return &Config{
					Path:           path,
					Listen:         DefaultListen,
					DefaultProfile: "solo",
					Profiles: []*Profile{{
						Name:     "solo",
						Issuer:   "https://login.example.com",
						ClientID: "cli",
						Scopes:   []string{"openid", "email"},
						Inject:   IDToken,
					}},
				}
			},
		},
		"dotted keys and inline tables": {
			file: "good-inline.toml",
			want: func(path string) *Config {
				return &Config{
					Path:   path,
					Listen: "[::1]:9000",
					Profiles: []*Profile{{
						Name:     "demo",
						Issuer:   "http://127.0.0.1:5556",
						ClientID: "demo",
						Scopes:   []string{"openid", "email"},
						Inject:   IDToken,
					}, {
						Name:      "other",
						Issuer:    "http://localhost:5557",
						ClientID:  "o",
						Scopes:    []string{"openid", "email"},
						Gateways:  mustPatterns(t, "127.0.0.1:8081", "localhost"),
						Inject:    IDToken,
						PlainHTTP: mustPatterns(t, "127.0.0.1:8081", "localhost"),
					}},
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "config", tc.file)
			got, err := LoadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want(path), got); diff != "" {
				t.Errorf("LoadConfig(%s) mismatch (-want +got):\n%s", tc.file, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate on a parsed config: %v", err)
			}
		})
	}
}

// TestParseConfigErrors runs every testdata/config/bad-*.toml fixture. Each
// starts with "# want: LINE KEY: MESSAGE", where MESSAGE is a substring of
// the error message and LINE 0 means the error has no line.
func TestParseConfigErrors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "bad-*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found only %d bad-*.toml fixtures", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("fixture does not start with %q", "# want: ")
			}
			lineStr, rest, _ := strings.Cut(want, " ")
			wantLine, err := strconv.Atoi(lineStr)
			if err != nil {
				t.Fatalf("bad want line %q", lineStr)
			}
			wantKey, wantMsg, _ := strings.Cut(rest, ": ")

			cfg, err := ParseConfig(path, data)
			if err == nil {
				t.Fatalf("ParseConfig accepted it: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("ParseConfig returned a config with an error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %q is not a *ConfigError", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("want exactly one error, got:\n%v", err)
			}
			if ce.File != path || ce.Line != wantLine || ce.Key != wantKey || !strings.Contains(ce.Msg, wantMsg) {
				t.Errorf("got  %q (file %q, line %d, key %q)\nwant line %d, key %q, message containing %q",
					err, ce.File, ce.Line, ce.Key, wantLine, wantKey, wantMsg)
			}
			prefix := path + ":" + lineStr + ": "
			if wantLine == 0 {
				prefix = path + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("Error() = %q, want prefix %q", err, prefix)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks a password: %q", err)
			}
		})
	}
}

func TestParseConfigReportsEveryErrorInFileOrder(t *testing.T) {
	const doc = `listen = "0.0.0.0:1"
[profiles.work]
issuer = "http://idp.example"
client_id = "x"
gateways = ["*.com", "ok.example"]
plain_http = ["localhost"]
`
	_, err := ParseConfig("c.toml", []byte(doc))
	// The plain_http entry is not reported as uncovered: a gateway of the
	// profile failed to parse, and the user should fix that first.
	want := []string{
		"c.toml:1: listen: ",
		"c.toml:3: profiles.work.issuer: ",
		"c.toml:5: profiles.work.gateways[0]: ",
	}
	assertErrorLines(t, err, want)
}

// assertErrorLines checks that err is one line an error, each starting as want says.
func assertErrorLines(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("ParseConfig accepted a broken config")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// TestParseConfigUnknownKeysWithTheRest: unknown keys come in the same report as the
// file's other errors (they came alone, so each fix showed the next error), and a key
// a typo away from a known one names it.
func TestParseConfigUnknownKeysWithTheRest(t *testing.T) {
	const doc = `listen = "0.0.0.0:1"
[profiles.work]
issuer = "https://accounts.google.com"
clientid = "x"
scope = ["openid"]
inject = "idtoken"
colour = "blue"
`
	_, err := ParseConfig("c.toml", []byte(doc))
	want := []string{
		"c.toml:1: listen: ",
		"c.toml:2: profiles.work: client_id is required",
		`c.toml:4: profiles.work.clientid: unknown key "clientid"; did you mean "client_id"? a profile holds `,
		`c.toml:5: profiles.work.scope: unknown key "scope"; did you mean "scopes"? `,
		`c.toml:6: profiles.work.inject: `,
		`c.toml:7: profiles.work.colour: unknown key "colour"; a profile holds `,
	}
	assertErrorLines(t, err, want)
	// A key in the wrong case stops the line index: the unknown keys before it still come.
	_, err = ParseConfig("c.toml", []byte("[profiles.work]\nscope = [\"openid\"]\nGateways = [\"api.example\"]\n"))
	if err == nil || !strings.Contains(err.Error(), `c.toml:2: profiles.work.scope: unknown key "scope"`) || !strings.Contains(err.Error(), `c.toml:3: profiles.work.Gateways: `) {
		t.Errorf("an unknown key beside a key in the wrong case:\n%v", err)
	}
	// A value of the wrong type stops the decoding: it is reported, not lost behind
	// the unknown key.
	_, err = ParseConfig("c.toml", []byte("[profiles.work]\nscope = [\"openid\"]\ngateways = \"api.example\"\n"))
	if err == nil || !strings.Contains(err.Error(), "c.toml:3: profiles.work.gateways: expected") {
		t.Errorf("an unknown key beside a type error: %v", err)
	}
}

// TestGatewayToken: a gateway's override sets its token kind and header; the others
// get the profile's inject in Authorization. Of overrides that match the same host,
// the most specific wins.
func TestGatewayToken(t *testing.T) {
	cfg, err := ParseConfig("c.toml", []byte(`
[profiles.work]
issuer = "https://idp.example"
client_id = "x"
gateways = ["*.team.example", "legacy.team.example", "*.eu.team.example", "api.team.example:8443", "api.team.example", "iap.team.example"]
inject = "id_token"

[profiles.work.overrides."legacy.team.example"]
inject = "access_token"

[profiles.work.overrides."*.eu.team.example"]
inject = "access_token"

[profiles.work.overrides."api.team.example:8443"]
inject = "access_token"

[profiles.work.overrides."iap.team.example"]
header = "Proxy-Authorization"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Profiles[0]
	id, acc := Override{IDToken, HeaderAuthorization}, Override{AccessToken, HeaderAuthorization}
	for hostport, want := range map[string]Override{
		"legacy.team.example:443":   acc, // its override, not the wildcard gateway's inject
		"other.team.example:443":    id,
		"db.eu.team.example:443":    acc,
		"api.team.example:8443":     acc,
		"api.team.example:443":      id, // the override names port 8443 only
		"x.legacy.team.example:443": id, // a host pattern does not cover subdomains
		"iap.team.example:443":      {IDToken, HeaderProxyAuthorization},
	} {
		host, port, _ := strings.Cut(hostport, ":")
		if got := p.GatewayToken(host, port); got != want {
			t.Errorf("GatewayToken(%s) = %+v, want %+v", hostport, got, want)
		}
	}
	// Overrides that both match: the host beats the wildcard, the longer domain the
	// shorter, whichever way round they are.
	a, b := mustPatterns(t, "*.team.example")[0], mustPatterns(t, "*.eu.team.example")[0]
	h := mustPatterns(t, "db.eu.team.example")[0]
	q := &Profile{Inject: IDToken, Overrides: map[Pattern]Override{a: {Inject: IDToken}, b: {Inject: AccessToken}, h: {Inject: IDToken}}}
	if got := q.GatewayToken("db.eu.team.example", "443").Inject; got != IDToken {
		t.Errorf("host override beside two wildcards: %s, want the host's id_token", got)
	}
	if got := q.GatewayToken("x.eu.team.example", "443").Inject; got != AccessToken {
		t.Errorf("two wildcards: %s, want the longer one's access_token", got)
	}
	// Each field from the most specific override that sets it: a header set for one
	// host keeps the kind its wildcard's override chose (the profile's kind, the
	// access token, is what the wildcard's override kept from these hosts).
	r := &Profile{Inject: AccessToken, Overrides: map[Pattern]Override{
		a: {Inject: IDToken},
		mustPatterns(t, "legacy.team.example")[0]: {Header: HeaderProxyAuthorization},
	}}
	if got, want := r.GatewayToken("legacy.team.example", "443"), (Override{IDToken, HeaderProxyAuthorization}); got != want {
		t.Errorf("a host's header beside its wildcard's kind: %+v, want %+v", got, want)
	}
	// Both set a header: the host's wins. A port beats none: "api:443" over "api"
	// (both match port 443).
	r.Overrides[a] = Override{Header: HeaderAuthorization}
	if got := r.GatewayToken("legacy.team.example", "443").Header; got != HeaderProxyAuthorization {
		t.Errorf("host and wildcard both set a header: %s, want the host's Proxy-Authorization", got)
	}
	api, api443 := mustPatterns(t, "api.team.example")[0], mustPatterns(t, "api.team.example:443")[0]
	r.Overrides = map[Pattern]Override{api: {Inject: IDToken}, api443: {Inject: AccessToken}}
	if got := r.GatewayToken("api.team.example", "443").Inject; got != AccessToken {
		t.Errorf("a pattern with the port beside one without: %s, want the port's access_token", got)
	}
	// An override that sets nothing is refused in memory too (EncodeConfig would
	// write a table ParseConfig refuses).
	g := mustPatterns(t, "api.team.example")[0]
	c := &Config{Profiles: []*Profile{{Name: "w", Issuer: "https://idp.example", ClientID: "x", Gateways: []Pattern{g}, Overrides: map[Pattern]Override{g: {}}}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "an override sets") {
		t.Errorf("Validate of an empty override: %v", err)
	}
}

// TestUnknownKeyNamesWhatToWrite: an unknown key is named where it goes wrong, not
// by the leaf go-toml reports ([profile.work] was "unknown key "work""), with the
// key it is near or the quoting a dotted gateway needs.
func TestUnknownKeyNamesWhatToWrite(t *testing.T) {
	const profile = "[profiles.w]\nissuer = \"https://idp.example\"\nclient_id = \"x\"\ngateways = [\"api.team.example\"]\n"
	for doc, want := range map[string]string{
		"[profile.w]\nissuer = \"x\"\n": `c.toml:1: profile: unknown key "profile"; did you mean "profiles"?`,
		profile + "[profiles.w.override.\"api.team.example\"]\ninject = \"access_token\"\n": `c.toml:5: profiles.w.override: unknown key "override"; did you mean "overrides"?`,
		profile + "[profiles.w.overrides.api.team.example]\ninject = \"access_token\"\n":    `c.toml:5: profiles.w.overrides.api.team.example: a gateway goes in quotes: [profiles.w.overrides."api.team.example"]`,
	} {
		_, err := ParseConfig("c.toml", []byte(doc))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q:\n%v\nwant it to start with %s", doc, err, want)
		}
	}
}

func TestConfigErrorString(t *testing.T) {
	tests := map[string]struct {
		err  ConfigError
		want string
	}{
		"all":        {ConfigError{File: "/c.toml", Line: 7, Key: "listen", Msg: "bad"}, "/c.toml:7: listen: bad"},
		"no line":    {ConfigError{File: "/c.toml", Key: "profiles", Msg: "none"}, "/c.toml: profiles: none"},
		"no file":    {ConfigError{Key: "profiles.a.issuer", Msg: "bad"}, "profiles.a.issuer: bad"},
		"line only":  {ConfigError{Line: 3, Msg: "bad"}, "line 3: bad"},
		"no key":     {ConfigError{File: "c", Line: 2, Msg: "syntax"}, "c:2: syntax"},
		"message":    {ConfigError{Msg: "m"}, "m"},
		"everything": {ConfigError{}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEncodeConfigRoundTrip(t *testing.T) {
	tests := map[string]func(t *testing.T) *Config{
		"full fixture":    func(t *testing.T) *Config { return mustLoad(t, "good-full.toml") },
		"minimal fixture": func(t *testing.T) *Config { return mustLoad(t, "good-minimal.toml") },
		"inline fixture":  func(t *testing.T) *Config { return mustLoad(t, "good-inline.toml") },
		"awkward strings": func(t *testing.T) *Config {
			return &Config{
				Path:           "x.toml",
				Listen:         "localhost:1",
				DefaultProfile: "b-2",
				Profiles: []*Profile{{
					Name:         "z_1",
					Issuer:       "https://idp.example/päth/\"q\"",
					ClientID:     `id with "quotes" and \backslash`,
					ClientSecret: "tab\tnew\nline\x01\x7f\u2028 é 🙂",
					Scopes:       []string{"openid"},
					Gateways:     mustPatterns(t, "*.gw.example", "[2001:db8::1]:8443", "10.0.0.1"),
					Inject:       AccessToken,
				}, {
					Name:     "b-2",
					Issuer:   "http://[::1]:5556",
					ClientID: "c",
					Scopes:   []string{"openid", "email"},
					Inject:   IDToken,
				}},
			}
		},
	}
	for name, build := range tests {
		t.Run(name, func(t *testing.T) {
			c := build(t)
			if err := c.Validate(); err != nil {
				t.Fatalf("test config is invalid: %v", err)
			}
			data, err := EncodeConfig(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseConfig(c.Path, data)
			if err != nil {
				t.Fatalf("ParseConfig(EncodeConfig()) failed: %v\n%s", err, data)
			}
			if diff := cmp.Diff(c, back); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s\n%s", diff, data)
			}
		})
	}
}

func TestEncodeConfigRejectsInvalidUTF8(t *testing.T) {
	c := &Config{Profiles: []*Profile{{Name: "a", Issuer: "https://i.example", ClientID: "bad\xff"}}}
	if data, err := EncodeConfig(c); err == nil {
		t.Fatalf("EncodeConfig accepted invalid UTF-8:\n%s", data)
	}
}

func mustLoad(t *testing.T, file string) *Config {
	t.Helper()
	c, err := LoadConfig(filepath.Join("testdata", "config", file))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolveConfigPath(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg) // os.UserConfigDir on Linux/BSD
	def, err := DefaultConfigPath()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(def, filepath.Join("gatepass", "config.toml")) {
		t.Errorf("DefaultConfigPath() = %q, want .../gatepass/config.toml", def)
	}
	tests := map[string]struct {
		flag, env string
		want      string
	}{
		"flag wins over env": {flag: "/f.toml", env: "/e.toml", want: "/f.toml"},
		"flag alone":         {flag: "rel/f.toml", want: "rel/f.toml"},
		"env":                {env: "/e.toml", want: "/e.toml"},
		"default":            {want: def},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv("GATEPASS_CONFIG", tc.env)
			got, err := ResolveConfigPath(tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ResolveConfigPath(%q) with GATEPASS_CONFIG=%q = %q, want %q", tc.flag, tc.env, got, tc.want)
			}
		})
	}
	if runtime.GOOS == "linux" {
		if want := filepath.Join(xdg, "gatepass", "config.toml"); def != want {
			t.Errorf("DefaultConfigPath() = %q, want %q (under XDG_CONFIG_HOME)", def, want)
		}
	}
}

func TestLoadConfigMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := LoadConfig(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadConfig(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
	for _, want := range []string{path, "README", "gatepass demo"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigProfile(t *testing.T) {
	two := mustLoad(t, "good-full.toml")
	noDefault := mustLoad(t, "good-inline.toml")
	one := mustLoad(t, "good-minimal.toml")
	one.DefaultProfile = "" // an in-memory config: a single profile is the default
	tests := map[string]struct {
		c       *Config
		name    string
		want    string
		wantErr []string
	}{
		"explicit":                   {c: two, name: "lab", want: "lab"},
		"default_profile":            {c: two, name: "", want: "work"},
		"single profile":             {c: one, name: "", want: "solo"},
		"unknown lists names":        {c: two, name: "wrok", wantErr: []string{`"wrok"`, "work, lab"}},
		"no default among several":   {c: noDefault, name: "", wantErr: []string{"--profile", "default_profile", "demo, other"}},
		"names are case sensitive":   {c: two, name: "Work", wantErr: []string{`"Work"`}},
		"no profiles in memory":      {c: &Config{}, name: "", wantErr: []string{"no profiles"}},
		"unknown in empty in memory": {c: &Config{}, name: "x", wantErr: []string{`"x"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := tc.c.Profile(tc.name)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Profile(%q) = %q, want an error", tc.name, p.Name)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tc.want {
				t.Errorf("Profile(%q) = %q, want %q", tc.name, p.Name, tc.want)
			}
		})
	}
}

func TestConfigLookup(t *testing.T) {
	c := mustLoad(t, "good-full.toml")
	tests := map[string]struct {
		host, port string
		want       string // "" = no profile
	}{
		"exact":                {"api.team.example", "443", "work"},
		"exact port 80":        {"api.team.example", "80", "work"},
		"exact other port":     {"api.team.example", "8443", ""},
		"wildcard":             {"x.gw.team.example", "443", "work"},
		"wildcard apex":        {"gw.team.example", "443", ""},
		"localhost port":       {"localhost", "9443", "work"},
		"localhost other port": {"localhost", "8080", "lab"},
		"localhost default":    {"localhost", "443", ""},
		"ipv6":                 {"::1", "8443", "lab"},
		"folded in file":       {"api.lab.example", "443", "lab"},
		"unrelated":            {"example.org", "443", ""},
		"suffix attack":        {"api.team.example.evil.com", "443", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, ok := c.Lookup(tc.host, tc.port)
			got := ""
			if ok {
				got = p.Name
			}
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("Lookup(%q, %q) = %q, %v; want %q", tc.host, tc.port, got, ok, tc.want)
			}
		})
	}
}

func TestProfileAllowsPlainHTTPAndIsGoogle(t *testing.T) {
	c := mustLoad(t, "good-full.toml")
	work, _ := c.Profile("work")
	lab, _ := c.Profile("lab")
	if !work.IsGoogle() || lab.IsGoogle() {
		t.Errorf("IsGoogle: work=%v lab=%v, want true false", work.IsGoogle(), lab.IsGoogle())
	}
	if !(&Profile{Issuer: "accounts.google.com"}).IsGoogle() {
		t.Error(`IsGoogle false for "accounts.google.com"`)
	}
	if (&Profile{Issuer: "https://accounts.google.com.evil.example"}).IsGoogle() {
		t.Error("IsGoogle true for a look-alike issuer")
	}
	if !lab.AllowsPlainHTTP("localhost", "8080") {
		t.Error("lab should allow plain HTTP to localhost:8080")
	}
	if lab.AllowsPlainHTTP("localhost", "8443") || lab.AllowsPlainHTTP("api.lab.example", "80") {
		t.Error("lab allows plain HTTP beyond its plain_http list")
	}
	if work.AllowsPlainHTTP("localhost", "9443") {
		t.Error("work has no plain_http but allows plain HTTP")
	}
}

func validProfile() *Profile {
	return &Profile{Name: "p", Issuer: "https://idp.example", ClientID: "c", Scopes: []string{"openid"}, Inject: IDToken}
}

func TestValidateInMemory(t *testing.T) {
	tests := map[string]struct {
		mutate  func(c *Config)
		wantKey string // "" = valid
		wantMsg string
	}{
		"valid":                {mutate: func(c *Config) {}},
		"empty means defaults": {mutate: func(c *Config) { c.Listen = ""; c.Profiles[0].Inject = ""; c.Profiles[0].Scopes = nil }},
		"listen localhost":     {mutate: func(c *Config) { c.Listen = "localhost:8787" }},
		"listen ipv6 loopback": {mutate: func(c *Config) { c.Listen = "[::1]:8787" }},
		"listen 127.0.0.2":     {mutate: func(c *Config) { c.Listen = "127.0.0.2:8787" }},
		"listen ipv6 any":      {mutate: func(c *Config) { c.Listen = "[::]:8787" }, wantKey: "listen", wantMsg: "every network interface"},
		"listen no host":       {mutate: func(c *Config) { c.Listen = ":8787" }, wantKey: "listen", wantMsg: "every network interface"},
		"listen hostname":      {mutate: func(c *Config) { c.Listen = "myhost:8787" }, wantKey: "listen", wantMsg: "not a loopback"},
		"listen port zero":     {mutate: func(c *Config) { c.Listen = "127.0.0.1:0" }, wantKey: "listen", wantMsg: "1 to 65535"},
		"upstream https":       {mutate: func(c *Config) { c.UpstreamProxy = "https://proxy.example:8443" }},
		"upstream path":        {mutate: func(c *Config) { c.UpstreamProxy = "http://proxy.example/x" }, wantKey: "upstream_proxy", wantMsg: "scheme://host:port"},
		"issuer http loopback": {mutate: func(c *Config) { c.Profiles[0].Issuer = "http://127.0.0.1:5556/dex" }},
		"issuer http ipv6":     {mutate: func(c *Config) { c.Profiles[0].Issuer = "http://[::1]:5556" }},
		"issuer http lh":       {mutate: func(c *Config) { c.Profiles[0].Issuer = "http://localhost" }},
		"issuer http remote":   {mutate: func(c *Config) { c.Profiles[0].Issuer = "http://localhost.evil.example" }, wantKey: "profiles.p.issuer", wantMsg: "use https://"},
		"issuer ftp":           {mutate: func(c *Config) { c.Profiles[0].Issuer = "ftp://idp.example" }, wantKey: "profiles.p.issuer", wantMsg: "must use https://"},
		"issuer userinfo":      {mutate: func(c *Config) { c.Profiles[0].Issuer = "https://u:secretpw@idp.example" }, wantKey: "profiles.p.issuer", wantMsg: "user name"},
		"issuer fragment":      {mutate: func(c *Config) { c.Profiles[0].Issuer = "https://idp.example#x" }, wantKey: "profiles.p.issuer", wantMsg: "fragment"},
		"issuer no host":       {mutate: func(c *Config) { c.Profiles[0].Issuer = "https:///path" }, wantKey: "profiles.p.issuer", wantMsg: "no host"},
		"issuer space":         {mutate: func(c *Config) { c.Profiles[0].Issuer = "https://idp.example/a b" }, wantKey: "profiles.p.issuer", wantMsg: "spaces"},
		"client id spaces":     {mutate: func(c *Config) { c.Profiles[0].ClientID = " c" }, wantKey: "profiles.p.client_id", wantMsg: "spaces"},
		"duplicate scope":      {mutate: func(c *Config) { c.Profiles[0].Scopes = []string{"openid", "openid"} }, wantKey: "profiles.p.scopes[1]", wantMsg: "twice"},
		"long profile name":    {mutate: func(c *Config) { c.Profiles[0].Name = strings.Repeat("a", 64) }, wantKey: "profiles." + strings.Repeat("a", 64), wantMsg: "1 to 63"},
		"63 char name":         {mutate: func(c *Config) { c.Profiles[0].Name = strings.Repeat("a", 63) }},
		"name leading hyphen":  {mutate: func(c *Config) { c.Profiles[0].Name = "-a" }, wantKey: "profiles.-a", wantMsg: "profile name"},
		"duplicate profile": {mutate: func(c *Config) {
			c.Profiles = append(c.Profiles, validProfile())
		}, wantKey: "profiles.p", wantMsg: "defined twice"},
		"non-canonical pattern": {mutate: func(c *Config) {
			c.Profiles[0].Gateways = []Pattern{{Host: "API.example.com"}}
		}, wantKey: "profiles.p.gateways[0]", wantMsg: "canonical"},
		"too broad in memory": {mutate: func(c *Config) {
			c.Profiles[0].Gateways = []Pattern{{Host: "com", Wildcard: true}}
		}, wantKey: "profiles.p.gateways[0]", wantMsg: "too broad"},
		"plain_http wildcard": {mutate: func(c *Config) {
			c.Profiles[0].Gateways = []Pattern{{Host: "localhost.example", Wildcard: true}}
			c.Profiles[0].PlainHTTP = []Pattern{{Host: "localhost.example", Wildcard: true}}
		}, wantKey: "profiles.p.plain_http[0]", wantMsg: "not a loopback host"},
		"plain_http default ports need both covered": {mutate: func(c *Config) {
			c.Profiles[0].Gateways = []Pattern{{Host: "localhost", Port: "80"}}
			c.Profiles[0].PlainHTTP = []Pattern{{Host: "localhost"}}
		}, wantKey: "profiles.p.plain_http[0]", wantMsg: "not one of this profile's gateways"},
		"plain_http covered by two gateways": {mutate: func(c *Config) {
			c.Profiles[0].Gateways = []Pattern{{Host: "127.0.0.1", Port: "80"}, {Host: "127.0.0.1", Port: "443"}}
			c.Profiles[0].PlainHTTP = []Pattern{{Host: "127.0.0.1"}}
		}},
		"same host different ports across profiles": {mutate: func(c *Config) {
			q := validProfile()
			q.Name = "q"
			c.Profiles[0].Gateways = []Pattern{{Host: "localhost", Port: "8080"}}
			q.Gateways = []Pattern{{Host: "localhost", Port: "9090"}}
			c.Profiles = append(c.Profiles, q)
		}},
		"overlap across profiles": {mutate: func(c *Config) {
			q := validProfile()
			q.Name = "q"
			c.Profiles[0].Gateways = []Pattern{{Host: "example.com", Wildcard: true}}
			q.Gateways = []Pattern{{Host: "a.b.example.com"}}
			c.Profiles = append(c.Profiles, q)
		}, wantKey: "profiles.q.gateways[0]", wantMsg: `of profile "p" (profiles.p.gateways[0])`},
		"default profile missing": {mutate: func(c *Config) { c.DefaultProfile = "x" }, wantKey: "default_profile", wantMsg: `"x"`},
		"no profiles":             {mutate: func(c *Config) { c.Profiles = nil }, wantKey: "profiles", wantMsg: "no profiles"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := &Config{Path: "mem.toml", Listen: DefaultListen, Profiles: []*Profile{validProfile()}}
			tc.mutate(c)
			err := c.Validate()
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if ce.Line != 0 || ce.File != "mem.toml" || ce.Key != tc.wantKey || !strings.Contains(ce.Msg, tc.wantMsg) {
				t.Errorf("Validate() = %q (file %q line %d key %q), want key %q and message containing %q",
					err, ce.File, ce.Line, ce.Key, tc.wantKey, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error leaks a password: %q", err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.toml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[profiles.a]\nissuer='https://i.example'\nclient_id=\"\\u0001\"\ngateways=['*.A.b.', '[::1]:1']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("f.toml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate rejects what ParseConfig accepted: %v", err)
		}
		out, err := EncodeConfig(c)
		if err != nil {
			t.Fatalf("EncodeConfig: %v", err)
		}
		back, err := ParseConfig("f.toml", out)
		if err != nil {
			t.Fatalf("re-parse of encoded config failed: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s\n%s", diff, out)
		}
	})
}

// TestIdentityProviderTrafficNeverLoopsThroughGatepass: HTTPS_PROXY naming gatepass's
// own proxy (at the config's listen, or wherever the agent's proxy really listens)
// is skipped for identity-provider traffic; any other proxy is used; upstream_proxy
// wins over the environment.
func TestIdentityProviderTrafficNeverLoopsThroughGatepass(t *testing.T) {
	saved := envProxy
	t.Cleanup(func() { envProxy = saved })
	req, _ := http.NewRequest("GET", "https://oauth2.googleapis.com/token", nil)
	for _, tc := range []struct {
		name, env, listen, own, upstream, want string
	}{
		{"corporate proxy from the environment", "http://proxy.corp:3128", "127.0.0.1:8787", "", "", "proxy.corp:3128"},
		{"environment names the config's listen", "http://127.0.0.1:8787", "127.0.0.1:8787", "", "", ""},
		{"environment names it as localhost", "http://LocalHost:8787", "127.0.0.1:8787", "", "", ""},
		{"environment names the agent's --listen", "http://127.0.0.1:9999", "127.0.0.1:8787", "127.0.0.1:9999", "", ""},
		{"agent elsewhere, environment a corporate proxy", "http://proxy.corp:3128", "127.0.0.1:8787", "127.0.0.1:9999", "", "proxy.corp:3128"},
		{"upstream_proxy wins", "http://127.0.0.1:8787", "127.0.0.1:8787", "", "http://proxy.corp:8080", "proxy.corp:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			envProxy = func(f func(*url.URL) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
				return func(r *http.Request) (*url.URL, error) { return f(r.URL) }
			}((&httpproxy.Config{HTTPProxy: tc.env, HTTPSProxy: tc.env}).ProxyFunc())
			own := func() string { return tc.own }
			u, err := idpProxy(&Config{Listen: tc.listen, UpstreamProxy: tc.upstream}, own)(req)
			got := ""
			if u != nil {
				got = u.Host
			}
			if err != nil || got != tc.want {
				t.Errorf("proxy for the issuer = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// BenchmarkGatewayToken: what a proxied request pays for overrides (TokenForHost asks
// once per request), beside the Lookup it already pays. Compare the ns/op of the
// sub-benchmarks in one run.
func BenchmarkGatewayToken(b *testing.B) {
	cfg, err := ParseConfig("c.toml", []byte(`
[profiles.work]
issuer = "https://idp.example"
client_id = "x"
gateways = ["*.team.example", "legacy.team.example", "api.team.example:8443", "iap.team.example"]
[profiles.work.overrides."legacy.team.example"]
inject = "access_token"
[profiles.work.overrides."*.team.example"]
header = "Proxy-Authorization"
[profiles.work.overrides."iap.team.example"]
header = "Proxy-Authorization"
`))
	if err != nil {
		b.Fatal(err)
	}
	p := cfg.Profiles[0]
	none := &Profile{Inject: IDToken, Gateways: p.Gateways}
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			_, _ = cfg.Lookup("legacy.team.example", "443")
		}
	})
	b.Run("no-overrides", func(b *testing.B) {
		for b.Loop() {
			_ = none.GatewayToken("legacy.team.example", "443")
		}
	})
	b.Run("three-overrides", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.GatewayToken("legacy.team.example", "443")
		}
	})
}
