package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// fakeGateways is a hand-written allow-list with the semantics of the config's gateway
// patterns: "host" (ports 443 and 80), "host:port", "*.suffix" (subdomains only).
type fakeGateways map[string]Gateway

func (f fakeGateways) lookup(host, port string) (Gateway, bool) {
	for pat, gw := range f {
		ph, pp := pat, ""
		if i := strings.LastIndexByte(pat, ':'); i >= 0 && !strings.HasSuffix(pat, "]") && strings.Count(pat, ":") == 1 || strings.HasPrefix(pat, "[") && strings.Contains(pat, "]:") {
			i = strings.LastIndexByte(pat, ':')
			ph, pp = pat[:i], pat[i+1:]
		}
		ph = strings.TrimSuffix(strings.TrimPrefix(ph, "["), "]")
		if pp == "" && port != "443" && port != "80" || pp != "" && pp != port {
			continue
		}
		if suffix, ok := strings.CutPrefix(ph, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return gw, true
			}
			continue
		}
		if ph == host {
			return gw, true
		}
	}
	return Gateway{}, false
}

var policyGateways = fakeGateways{
	"api.team.example":  {Profile: "work", PageAllowed: func(host, port string) bool { return host == "docs.team.example" && port == "443" }},
	"*.gw.team.example": {Profile: "work"},
	"localhost:9443":    {Profile: "local"},
	"localhost:8080":    {Profile: "local", PlainHTTP: true},
	"127.0.0.1:8443":    {Profile: "ip"},
	"[::1]:443":         {Profile: "v6"},
}

type policyCase struct {
	in   RequestInfo
	want Decision // Status/Profile/Host/Port compared; Reason/Code only checked non-empty for Refuse
}

func policyCases() map[string]policyCase {
	const pp = "8787" // the proxy's own port
	connect := func(target string) RequestInfo {
		return RequestInfo{Method: http.MethodConnect, Target: target, HostHeader: target, ProxyPort: pp}
	}
	connectHost := func(target, host string) RequestInfo {
		return RequestInfo{Method: http.MethodConnect, Target: target, HostHeader: host, ProxyPort: pp}
	}
	abs := func(scheme, target, host string) RequestInfo {
		return RequestInfo{Method: http.MethodGet, Scheme: scheme, Target: target, HostHeader: host, ProxyPort: pp}
	}
	origin := func(host string) RequestInfo {
		return RequestInfo{Method: http.MethodGet, HostHeader: host, ProxyPort: pp}
	}
	inTunnel := func(tunnel, scheme, host string) RequestInfo {
		return RequestInfo{Method: http.MethodGet, Scheme: scheme, HostHeader: host, Tunnel: tunnel, ProxyPort: pp}
	}
	intercept := func(host, port, profile string) Decision {
		return Decision{Action: Intercept, Host: host, Port: port, Profile: profile}
	}
	tunnel := func(host, port string) Decision { return Decision{Action: Tunnel, Host: host, Port: port} }
	inject := func(host, port, profile string) Decision {
		return Decision{Action: Inject, Host: host, Port: port, Profile: profile}
	}
	forward := func(host, port string) Decision { return Decision{Action: Forward, Host: host, Port: port} }
	refused := func(status int) Decision { return Decision{Action: Refuse, Status: status} }
	refusedFor := func(status int, host, port, profile string) Decision {
		return Decision{Action: Refuse, Status: status, Host: host, Port: port, Profile: profile}
	}
	page := func(r RequestInfo, origin, referer, site, mode, dest string) RequestInfo {
		r.Origin, r.Referer, r.FetchSite, r.FetchMode, r.FetchDest = origin, referer, site, mode, dest
		return r
	}
	gwReq := inTunnel("api.team.example:443", "https", "api.team.example")
	postReq := gwReq
	postReq.Method = http.MethodPost
	// What a page's request to that gateway (profile work) comes to: the token, or 403.
	pageInjected := inject("api.team.example", "443", "work")
	pageRefused := refusedFor(403, "api.team.example", "443", "work")
	return map[string]policyCase{
		// CONNECT (authority-form, RFC 9110 §9.3.6)
		"connect gateway":                     {connect("api.team.example:443"), intercept("api.team.example", "443", "work")},
		"connect gateway mixed case":          {connect("API.Team.EXAMPLE:443"), intercept("api.team.example", "443", "work")},
		"connect gateway trailing dot":        {connect("api.team.example.:443"), intercept("api.team.example", "443", "work")},
		"connect gateway two trailing dots":   {connect("api.team.example..:443"), refused(400)},
		"connect gateway leading-zero port":   {connect("api.team.example:0443"), intercept("api.team.example", "443", "work")},
		"connect gateway unlisted port":       {connect("api.team.example:8443"), tunnel("api.team.example", "8443")},
		"connect gateway port 80":             {connect("api.team.example:80"), intercept("api.team.example", "80", "work")},
		"connect wildcard subdomain":          {connect("a.gw.team.example:443"), intercept("a.gw.team.example", "443", "work")},
		"connect wildcard deeper subdomain":   {connect("a.b.gw.team.example:443"), intercept("a.b.gw.team.example", "443", "work")},
		"connect wildcard apex not matched":   {connect("gw.team.example:443"), tunnel("gw.team.example", "443")},
		"connect suffix without dot":          {connect("evilgw.team.example:443"), tunnel("evilgw.team.example", "443")},
		"connect gateway as prefix of other":  {connect("api.team.example.evil.test:443"), tunnel("api.team.example.evil.test", "443")},
		"connect non-gateway":                 {connect("example.com:443"), tunnel("example.com", "443")},
		"connect without port":                {connect("api.team.example"), refused(400)},
		"connect empty port":                  {connect("api.team.example:"), refused(400)},
		"connect port zero":                   {connect("api.team.example:0"), refused(400)},
		"connect port too big":                {connect("api.team.example:65536"), refused(400)},
		"connect port not numeric":            {connect("api.team.example:https"), refused(400)},
		"connect port with sign":              {connect("api.team.example:+443"), refused(400)},
		"connect empty target":                {connect(""), refused(400)},
		"connect userinfo trick":              {connect("api.team.example@evil.test:443"), refused(400)},
		"connect userinfo trick reversed":     {connect("evil.test@api.team.example:443"), refused(400)},
		"connect space in host":               {connect("api.team.example :443"), refused(400)},
		"connect percent-encoded dot":         {connect("api%2eteam.example:443"), refused(400)},
		"connect localhost gateway":           {connect("localhost:9443"), intercept("localhost", "9443", "local")},
		"connect LOCALHOST gateway":           {connect("LOCALHOST:9443"), intercept("localhost", "9443", "local")},
		"connect IPv4 gateway":                {connect("127.0.0.1:8443"), intercept("127.0.0.1", "8443", "ip")},
		"connect IPv4 other port":             {connect("127.0.0.1:8444"), tunnel("127.0.0.1", "8444")},
		"connect IPv4 decimal alias":          {connect("2130706433:8443"), refused(400)},
		"connect IPv4 short alias":            {connect("127.1:8443"), refused(400)},
		"connect IPv4 hex alias":              {connect("0x7f.0.0.1:8443"), refused(400)},
		"connect IPv4-mapped IPv6":            {connect("[::ffff:127.0.0.1]:8443"), tunnel("::ffff:127.0.0.1", "8443")},
		"connect IPv6 gateway":                {connect("[::1]:443"), intercept("::1", "443", "v6")},
		"connect IPv6 non-canonical":          {connect("[0:0:0::1]:443"), intercept("::1", "443", "v6")},
		"connect IPv6 unbracketed":            {connect("::1:443"), refused(400)},
		"connect IPv6 zone":                   {connect("[fe80::1%25eth0]:443"), refused(400)},
		"connect IPv6 missing bracket":        {connect("[::1:443"), refused(400)},
		"connect IPv4 in brackets":            {connect("[127.0.0.1]:8443"), refused(400)},
		"connect the proxy itself":            {connect("127.0.0.1:8787"), refused(508)},
		"connect the proxy itself, localhost": {connect("localhost:8787"), refused(508)},
		"connect the proxy itself, IPv6":      {connect("[::1]:8787"), refused(508)},
		"connect the proxy itself, 0.0.0.0":   {connect("0.0.0.0:8787"), refused(508)},
		"connect the proxy itself, [::]":      {connect("[::]:8787"), refused(508)},
		"connect target with a path":          {connect("api.team.example:443/x"), refused(400)},
		"connect target with a query":         {connect("example.com:443?x"), refused(400)},
		// The CONNECT target decides; the Host header is never looked at.
		"connect gateway, Host non-gateway":         {connectHost("api.team.example:443", "example.com:443"), intercept("api.team.example", "443", "work")},
		"connect gateway, Host other gateway":       {connectHost("api.team.example:443", "localhost:9443"), intercept("api.team.example", "443", "work")},
		"connect gateway, Host the proxy":           {connectHost("localhost:9443", "127.0.0.1:8787"), intercept("localhost", "9443", "local")},
		"connect gateway, no Host":                  {connectHost("api.team.example:443", ""), intercept("api.team.example", "443", "work")},
		"connect gateway, Host garbage":             {connectHost("api.team.example:443", "evil@x/y"), intercept("api.team.example", "443", "work")},
		"connect non-gateway, Host gateway":         {connectHost("example.com:443", "api.team.example:443"), tunnel("example.com", "443")},
		"connect non-gateway, Host gateway no port": {connectHost("example.com:443", "api.team.example"), tunnel("example.com", "443")},
		"connect non-gateway, Host the proxy":       {connectHost("example.com:443", "127.0.0.1:8787"), tunnel("example.com", "443")},
		"connect the proxy, Host gateway":           {connectHost("127.0.0.1:8787", "api.team.example:443"), refused(508)},
		"connect bad target, Host gateway":          {connectHost("api.team.example", "api.team.example:443"), refused(400)},

		// Absolute-form (RFC 9112 §3.2.2: the Host header is ignored)
		"http to gateway not in plain_http":      {abs("http", "api.team.example", "api.team.example"), refusedFor(403, "api.team.example", "80", "work")},
		"http to wildcard gateway":               {abs("http", "x.gw.team.example", "x.gw.team.example"), refusedFor(403, "x.gw.team.example", "80", "work")},
		"http to plain_http gateway":             {abs("http", "localhost:8080", "localhost:8080"), inject("localhost", "8080", "local")},
		"http to plain_http gateway mixed case":  {abs("HTTP", "LocalHost:8080", "localhost:8080"), inject("localhost", "8080", "local")},
		"http to plain_http host, other port":    {abs("http", "localhost:8081", "localhost:8081"), forward("localhost", "8081")},
		"http to TLS-only gateway port":          {abs("http", "localhost:9443", "localhost:9443"), refusedFor(403, "localhost", "9443", "local")},
		"https absolute-form to gateway":         {abs("https", "api.team.example", "api.team.example"), inject("api.team.example", "443", "work")},
		"https absolute-form to non-gateway":     {abs("https", "example.com", "example.com"), forward("example.com", "443")},
		"http to non-gateway":                    {abs("http", "example.com", "example.com"), forward("example.com", "80")},
		"http to non-gateway with port":          {abs("http", "example.com:8080", "example.com:8080"), forward("example.com", "8080")},
		"Host header names gateway, URL not":     {abs("https", "example.com", "api.team.example"), forward("example.com", "443")},
		"URL names gateway, Host header not":     {abs("https", "api.team.example", "example.com"), inject("api.team.example", "443", "work")},
		"userinfo makes gateway look like host":  {RequestInfo{Method: "GET", Scheme: "http", Target: "evil.test", Userinfo: true, ProxyPort: pp}, refused(400)},
		"userinfo on gateway":                    {RequestInfo{Method: "GET", Scheme: "https", Target: "api.team.example", Userinfo: true, ProxyPort: pp}, refused(400)},
		"unsupported scheme":                     {abs("ftp", "api.team.example", ""), refused(400)},
		"ws scheme":                              {abs("ws", "api.team.example", ""), refused(400)},
		"absolute-form without host":             {abs("http", "\x00", ""), refused(400)},
		"absolute-form bad port":                 {abs("http", "example.com:99999", ""), refused(400)},
		"absolute-form to the proxy itself":      {abs("http", "127.0.0.1:8787", ""), refused(508)},
		"absolute-form to localhost proxy":       {abs("http", "localhost:8787", ""), refused(508)},
		"absolute-form to 0.0.0.0 proxy":         {abs("http", "0.0.0.0:8787", ""), refused(508)},
		"absolute-form trailing dot gateway":     {abs("https", "api.team.example.", ""), inject("api.team.example", "443", "work")},
		"absolute-form IPv6 gateway":             {abs("https", "[::1]", ""), inject("::1", "443", "v6")},
		"absolute-form IPv6 non-gateway port":    {abs("https", "[::1]:444", ""), forward("::1", "444")},
		"absolute-form numeric alias of gateway": {abs("https", "2130706433:8443", ""), refused(400)},

		// Origin-form outside a tunnel: a request to the proxy itself (status page)
		"status page 127.0.0.1":           {origin("127.0.0.1:8787"), Decision{Action: StatusPage, Host: "127.0.0.1", Port: pp}},
		"status page localhost":           {origin("localhost:8787"), Decision{Action: StatusPage, Host: "localhost", Port: pp}},
		"status page IPv6":                {origin("[::1]:8787"), Decision{Action: StatusPage, Host: "::1", Port: pp}},
		"status page DNS rebinding":       {origin("evil.test:8787"), refused(403)},
		"status page other port":          {origin("127.0.0.1:9999"), refused(403)},
		"status page without port":        {origin("127.0.0.1"), refused(403)},
		"origin-form Host names gateway":  {origin("api.team.example"), refused(403)},
		"origin-form without Host":        {origin(""), refused(400)},
		"origin-form Host with userinfo":  {origin("evil@127.0.0.1:8787"), refused(403)},
		"origin-form Host garbage":        {origin("127.0.0.1:8787/x"), refused(403)},
		"origin-form subdomain localhost": {origin("a.localhost:8787"), Decision{Action: StatusPage, Host: "a.localhost", Port: pp}},

		// Requests read inside an intercepted tunnel
		"tunnel request to its gateway":             {inTunnel("api.team.example:443", "https", "api.team.example"), inject("api.team.example", "443", "work")},
		"tunnel request with explicit port":         {inTunnel("api.team.example:443", "https", "API.team.example:443"), inject("api.team.example", "443", "work")},
		"tunnel request with trailing dot":          {inTunnel("api.team.example:443", "https", "api.team.example."), inject("api.team.example", "443", "work")},
		"tunnel Host steering elsewhere":            {inTunnel("api.team.example:443", "https", "evil.test"), refused(421)},
		"tunnel Host steering to other port":        {inTunnel("api.team.example:443", "https", "api.team.example:8443"), refused(421)},
		"tunnel Host steering to other gateway":     {inTunnel("api.team.example:443", "https", "a.gw.team.example"), refused(421)},
		"tunnel without Host":                       {inTunnel("api.team.example:443", "https", ""), refused(400)},
		"tunnel absolute-form elsewhere":            {RequestInfo{Method: "GET", Scheme: "https", Target: "evil.test", HostHeader: "api.team.example", Tunnel: "api.team.example:443", ProxyPort: pp}, refused(421)},
		"tunnel absolute-form with userinfo":        {RequestInfo{Method: "GET", Scheme: "https", Target: "api.team.example", Userinfo: true, Tunnel: "api.team.example:443", ProxyPort: pp}, refused(400)},
		"tunnel cleartext to TLS gateway":           {inTunnel("api.team.example:443", "http", "api.team.example:443"), refusedFor(403, "api.team.example", "443", "work")},
		"tunnel cleartext default port mismatch":    {inTunnel("api.team.example:443", "http", "api.team.example"), refused(421)},
		"tunnel cleartext to plain_http gateway":    {inTunnel("localhost:8080", "http", "localhost:8080"), inject("localhost", "8080", "local")},
		"tunnel IPv6 gateway":                       {inTunnel("[::1]:443", "https", "[::1]"), inject("::1", "443", "v6")},
		"tunnel request to non-gateway tunnel host": {inTunnel("example.com:443", "https", "example.com"), forward("example.com", "443")},
		"tunnel CONNECT inside tunnel":              {RequestInfo{Method: "CONNECT", Target: "api.team.example:443", Tunnel: "api.team.example:443", ProxyPort: pp}, refused(405)},
		"tunnel unknown scheme":                     {inTunnel("api.team.example:443", "ftp", "api.team.example"), refused(400)},

		// Requests a browser's page sent (Origin, Referer, Fetch Metadata).
		"page: fetch from another site":                       {page(gwReq, "https://evil.example", "", "cross-site", "cors", "empty"), pageRefused},
		"page: Origin null (sandboxed frame)":                 {page(gwReq, "null", "", "cross-site", "cors", "empty"), pageRefused},
		"page: Origin of a sibling site":                      {page(gwReq, "https://wiki.team.example", "", "same-site", "cors", "empty"), pageRefused},
		"page: loopback Origin, another profile's gateway":    {page(gwReq, "https://localhost:9443", "", "cross-site", "cors", "empty"), pageInjected},
		"page: loopback IP Origin, another profile's gateway": {page(gwReq, "https://127.0.0.1:8443", "", "cross-site", "cors", "empty"), pageInjected},
		"page: Origin of the same profile's gateway":          {page(gwReq, "https://a.gw.team.example", "", "same-site", "cors", "empty"), pageInjected},
		"page: Origin of a gateway's other port":              {page(gwReq, "https://api.team.example:8443", "", "same-site", "cors", "empty"), pageRefused},
		"page: Origin with userinfo":                          {page(gwReq, "https://a@a.gw.team.example", "", "same-site", "cors", "empty"), pageRefused},
		"page: an allowed origin":                             {page(gwReq, "https://docs.team.example", "", "same-site", "cors", "empty"), pageInjected},
		"page: an allowed origin's img (Referer)":             {page(gwReq, "", "https://docs.team.example/guide", "same-site", "no-cors", "image"), pageInjected},
		"page: an allowed origin over http":                   {page(gwReq, "http://docs.team.example", "", "same-site", "cors", "empty"), pageRefused},
		"page: an allowed origin on another port":             {page(gwReq, "https://docs.team.example:8443", "", "same-site", "cors", "empty"), pageRefused},
		"page: dev server on localhost":                       {page(gwReq, "http://localhost:3000", "", "cross-site", "cors", "empty"), pageInjected},
		"page: dev server on 127.0.0.1":                       {page(gwReq, "http://127.0.0.1:5173", "", "cross-site", "cors", "empty"), pageInjected},
		"page: dev server on [::1]":                           {page(gwReq, "http://[::1]:5173", "", "cross-site", "cors", "empty"), pageInjected},
		"page: img from another site (no Origin)":             {page(gwReq, "", "https://evil.example/page", "cross-site", "no-cors", "image"), pageRefused},
		"page: img, no Referer":                               {page(gwReq, "", "", "cross-site", "no-cors", "image"), pageRefused},
		"page: img from localhost page":                       {page(gwReq, "", "http://localhost:3000/", "cross-site", "no-cors", "image"), pageInjected},
		"page: link followed from another site":               {page(gwReq, "", "https://chat.example/", "cross-site", "navigate", "document"), pageInjected},
		"page: POST navigation from another site":             {page(postReq, "", "", "cross-site", "navigate", "document"), pageRefused},
		"page: form POST with Origin":                         {page(postReq, "https://evil.example", "", "cross-site", "navigate", "document"), pageRefused},
		"page: iframe from another site":                      {page(gwReq, "", "https://evil.example/", "cross-site", "navigate", "iframe"), pageRefused},
		"page: address typed by the user":                     {page(gwReq, "", "", "none", "navigate", "document"), pageInjected},
		"page: the gateway's own page":                        {page(gwReq, "", "https://api.team.example/docs", "same-origin", "no-cors", "image"), pageInjected},
		"page: same-origin fetch":                             {page(gwReq, "https://api.team.example", "", "same-origin", "cors", "empty"), pageInjected},
		"page: WebSocket from another site":                   {page(inTunnel("api.team.example:443", "https", "api.team.example"), "https://evil.example", "", "cross-site", "websocket", "websocket"), pageRefused},
		"page: non-gateway from another site":                 {page(abs("https", "example.com", "example.com"), "https://evil.example", "", "cross-site", "cors", "empty"), forward("example.com", "443")},
		"page: plain_http gateway from another site":          {page(abs("http", "localhost:8080", "localhost:8080"), "https://evil.example", "", "cross-site", "cors", "empty"), refusedFor(403, "localhost", "8080", "local")},
	}
}

func TestDecide(t *testing.T) {
	for name, tc := range policyCases() {
		t.Run(name, func(t *testing.T) {
			checkDecision(t, tc, Decide(tc.in, policyGateways.lookup))
		})
	}
}

func checkDecision(t *testing.T, tc policyCase, got Decision) {
	t.Helper()
	if got.Action != tc.want.Action || got.Status != tc.want.Status || got.Profile != tc.want.Profile {
		t.Fatalf("Decide(%+v) = %v status %d profile %q (%s), want %v status %d profile %q",
			tc.in, got.Action, got.Status, got.Profile, got.Reason, tc.want.Action, tc.want.Status, tc.want.Profile)
	}
	if tc.want.Host != "" && (got.Host != tc.want.Host || got.Port != tc.want.Port) {
		t.Errorf("Decide(%+v) upstream = %q %q, want %q %q", tc.in, got.Host, got.Port, tc.want.Host, tc.want.Port)
	}
	if got.Action == Refuse && (got.Reason == "" || got.Code == "") {
		t.Errorf("refusal without code or reason: %+v", got)
	}
}

// TestDecideInjectsOnlyForGateways is the policy's safety property over every case and a
// lookup that allows nothing: no gateway, no token.
func TestDecideInjectsOnlyForGateways(t *testing.T) {
	none := func(string, string) (Gateway, bool) { return Gateway{}, false }
	for name, tc := range policyCases() {
		if d := Decide(tc.in, none); d.Action == Inject || d.Action == Intercept {
			t.Errorf("%s: %v with an empty allow-list", name, d.Action)
		}
	}
}

func TestNormalizeHostPort(t *testing.T) {
	tests := map[string]struct {
		in, def          string
		wantHost, wantPt string
		wantErr          bool
	}{
		"name":             {in: "Example.COM", def: "443", wantHost: "example.com", wantPt: "443"},
		"name port":        {in: "example.com:8080", def: "443", wantHost: "example.com", wantPt: "8080"},
		"trailing dot":     {in: "example.com.:80", def: "443", wantHost: "example.com", wantPt: "80"},
		"ipv6":             {in: "[2001:DB8::1]:8443", def: "", wantHost: "2001:db8::1", wantPt: "8443"},
		"ipv6 default":     {in: "[::1]", def: "80", wantHost: "::1", wantPt: "80"},
		"underscore":       {in: "_srv.example.com", def: "443", wantHost: "_srv.example.com", wantPt: "443"},
		"hex-ish name":     {in: "0xdead.example", def: "443", wantHost: "0xdead.example", wantPt: "443"},
		"numeric label ok": {in: "1.example", def: "443", wantHost: "1.example", wantPt: "443"},
		"missing port":     {in: "example.com", def: "", wantErr: true},
		"empty":            {in: "", def: "443", wantErr: true},
		"only dot":         {in: ".", def: "443", wantErr: true},
		"empty label":      {in: "a..b", def: "443", wantErr: true},
		"long label":       {in: strings.Repeat("a", 64) + ".com", def: "443", wantErr: true},
		"long name":        {in: strings.Repeat("a.", 150) + "com", def: "443", wantErr: true},
		"junk after ]":     {in: "[::1]x", def: "443", wantErr: true},
		"ipv4 in brackets": {in: "[10.0.0.1]", def: "443", wantErr: true},
		"unicode":          {in: "exämple.com", def: "443", wantErr: true},
		"slash":            {in: "example.com/x", def: "443", wantErr: true},
		"backslash":        {in: `example.com\x`, def: "443", wantErr: true},
		"nul":              {in: "example.com\x00.evil", def: "443", wantErr: true},
		"port 65535":       {in: "a.b:65535", def: "", wantHost: "a.b", wantPt: "65535"},
		"port 6 digits":    {in: "a.b:000443", def: "", wantErr: true},
		"double colon":     {in: "a.b::443", def: "", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, p, err := normalizeHostPort(tc.in, tc.def)
			if (err != nil) != tc.wantErr {
				t.Fatalf("normalizeHostPort(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && (h != tc.wantHost || p != tc.wantPt) {
				t.Errorf("normalizeHostPort(%q) = %q %q, want %q %q", tc.in, h, p, tc.wantHost, tc.wantPt)
			}
		})
	}
}

// FuzzDecide checks the policy's invariants on arbitrary targets: an injecting decision
// names a normalised host the lookup allows, never over plain HTTP unless allowed, and a
// tunnelled request never leaves its tunnel.
func FuzzDecide(f *testing.F) {
	for _, tc := range policyCases() {
		f.Add(tc.in.Method, tc.in.Scheme, tc.in.Target, tc.in.HostHeader, tc.in.Tunnel, tc.in.Userinfo)
	}
	f.Fuzz(func(t *testing.T, method, scheme, target, host, tunnel string, userinfo bool) {
		in := RequestInfo{Method: method, Scheme: scheme, Target: target, HostHeader: host, Tunnel: tunnel, Userinfo: userinfo, ProxyPort: "8787"}
		d := Decide(in, policyGateways.lookup)
		switch d.Action {
		case Inject, Intercept:
			gw, ok := policyGateways.lookup(d.Host, d.Port)
			if !ok || gw.Profile != d.Profile {
				t.Fatalf("%v for %q:%q, which is not a gateway of %q", d.Action, d.Host, d.Port, d.Profile)
			}
			h, p, err := normalizeHostPort(d.Addr(), "")
			if err != nil || h != d.Host || p != d.Port {
				t.Fatalf("decision host %q:%q is not normalised", d.Host, d.Port)
			}
			if d.Action == Inject && strings.EqualFold(scheme, "http") && !gw.PlainHTTP {
				t.Fatalf("inject over plain HTTP to %s", d.Addr())
			}
			if tunnel != "" && d.Addr() != tunnel {
				t.Fatalf("request inside tunnel %q injected for %q", tunnel, d.Addr())
			}
			if userinfo {
				t.Fatalf("inject despite userinfo")
			}
		case Refuse:
			if d.Status < 400 || d.Status > 599 || d.Code == "" {
				t.Fatalf("bad refusal %+v", d)
			}
		}
	})
}
