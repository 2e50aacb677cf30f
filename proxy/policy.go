package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Action is what the proxy does with one request.
type Action int

const (
	// Forward sends the request upstream untouched: no token.
	Forward Action = iota
	// Inject attaches the gateway profile's token and sends the request upstream.
	Inject
	// Tunnel answers a CONNECT with a blind TCP tunnel: the proxy never sees the bytes.
	Tunnel
	// Intercept answers a CONNECT to a gateway by terminating TLS with the local CA;
	// every request read inside the tunnel is decided again (with RequestInfo.Tunnel set).
	Intercept
	// StatusPage answers an origin-form request addressed to the proxy itself.
	StatusPage
	// Refuse answers with Decision.Status and Decision.Reason; nothing goes upstream.
	Refuse
)

func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case Inject:
		return "inject"
	case Tunnel:
		return "tunnel"
	case Intercept:
		return "intercept"
	case StatusPage:
		return "status-page"
	case Refuse:
		return "refuse"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// RequestInfo is everything the policy looks at, taken from the wire by the server.
type RequestInfo struct {
	// Method is the request method; CONNECT asks for a tunnel (RFC 9110 §9.3.6).
	Method string
	// Target is the authority of the request-target: the CONNECT authority-form or the
	// absolute-form URI's host[:port] (RFC 9112 §3.2). Empty for origin-form ("/path").
	Target string
	// Scheme is the absolute-form URI scheme; inside an intercepted tunnel it is "https"
	// (TLS was terminated) or "http" (the client spoke cleartext inside the tunnel).
	Scheme string
	// Userinfo is true when the absolute-form URI carried "user[:pass]@", which RFC 9110
	// §4.2.4 forbids for http(s) URIs: it is a classic way to dress one host up as another.
	Userinfo bool
	// HostHeader is the Host header field. For absolute-form it is ignored (RFC 9112 §3.2.2);
	// for origin-form it names the host.
	HostHeader string
	// Tunnel is set for requests read inside an intercepted CONNECT: the tunnel's normalised
	// host:port. Every such request must address exactly that authority.
	Tunnel string
	// ProxyPort is the port the proxy listens on (loopback). It is used to spot requests
	// that would loop back into the proxy and to check the Host of status-page requests.
	ProxyPort string
	// Origin, Referer and the Fetch Metadata fields (Sec-Fetch-Site, -Mode, -Dest) are
	// what a browser says about the page that sent the request: a gateway's token is
	// not added to a request another web site's page made (crossSite).
	Origin, Referer                 string
	FetchSite, FetchMode, FetchDest string
	// LocalPage reports whether a page on loopback (host:port) is served by this user or
	// root: another account's server on 127.0.0.1 is another site. The server sets it
	// (peer.go); nil takes every loopback page for the user's own (tests of the rules).
	LocalPage func(host, port string) bool
}

// Decision is the policy's answer for one request.
type Decision struct {
	Action Action
	// Host and Port are the normalised upstream authority (lowercase, no trailing dot,
	// IPv6 unbracketed, explicit port) for Forward, Inject, Tunnel and Intercept.
	Host, Port string
	// Profile owns the gateway for Inject and Intercept.
	Profile string
	// Status and Reason are the HTTP status and the message for the client when Action is
	// Refuse. Code is a short machine-readable error name for the JSON body.
	Status int
	Code   string
	Reason string
	// Hint, when set, is what the client should do, for refusals whose code alone
	// does not say (an upstream whose certificate this machine does not trust).
	Hint string
}

// Addr returns Host:Port in dialable form (IPv6 bracketed).
func (d Decision) Addr() string { return joinHostPort(d.Host, d.Port) }

// Decide is the proxy's whole policy: a pure function of the request and the allow-list
// lookup. It never sees a token; it says whose token (if any) a request may carry.
//
// The rules (DESIGN.md §5):
//   - CONNECT to a gateway host:port: intercept TLS; to any other host: blind tunnel.
//   - Absolute-form http:// to a gateway: inject only if the gateway allows plain HTTP,
//     else refuse with 403 saying to use https://. To any other host: forward untouched.
//   - Absolute-form https:// (sent in the clear to the loopback proxy, or read inside an
//     intercepted tunnel): inject for a gateway, forward untouched otherwise.
//   - Origin-form outside a tunnel is addressed to the proxy itself: a status page after a
//     Host check against DNS rebinding; never a token.
//   - Inside an intercepted tunnel a request must address the tunnel's own host:port
//     (else 421, RFC 9110 §15.5.20), so a Host header cannot steer a token elsewhere.
func Decide(r RequestInfo, gateway func(host, port string) (Gateway, bool)) Decision {
	if r.Userinfo {
		return refuse(http.StatusBadRequest, "bad_request", "the request URI carries user information (user@host), which HTTP forbids (RFC 9110 §4.2.4)")
	}
	if r.Tunnel != "" {
		if r.Method == http.MethodConnect {
			return refuse(http.StatusMethodNotAllowed, "bad_request", "CONNECT inside a tunnel is not supported")
		}
		return decideInTunnel(r, gateway)
	}
	if r.Method == http.MethodConnect {
		return decideConnect(r, gateway)
	}
	if r.Target == "" {
		return decideOriginForm(r)
	}
	defPort, ok := defaultPorts[strings.ToLower(r.Scheme)]
	if !ok {
		return refuse(http.StatusBadRequest, "bad_request", fmt.Sprintf("unsupported URI scheme %q: this proxy carries http:// and https:// (CONNECT)", r.Scheme))
	}
	host, port, err := normalizeHostPort(r.Target, defPort)
	if err != nil {
		return refuse(http.StatusBadRequest, "bad_request", "bad request target: "+err.Error())
	}
	return decideUpstream(r, strings.ToLower(r.Scheme), host, port, gateway)
}

var defaultPorts = map[string]string{"http": "80", "https": "443"}

func decideConnect(r RequestInfo, gateway func(host, port string) (Gateway, bool)) Decision {
	// RFC 9110 §9.3.6: the CONNECT target is authority-form and the port is mandatory.
	host, port, err := normalizeHostPort(r.Target, "")
	if err != nil {
		return refuse(http.StatusBadRequest, "bad_request", "bad CONNECT target: "+err.Error())
	}
	if isSelf(host, port, r.ProxyPort) {
		return refuse(http.StatusLoopDetected, "loop_detected", "the CONNECT target is this proxy itself")
	}
	if gw, ok := gateway(host, port); ok {
		return Decision{Action: Intercept, Host: host, Port: port, Profile: gw.Profile}
	}
	return Decision{Action: Tunnel, Host: host, Port: port}
}

func decideInTunnel(r RequestInfo, gateway func(host, port string) (Gateway, bool)) Decision {
	scheme := strings.ToLower(r.Scheme)
	defPort, ok := defaultPorts[scheme]
	if !ok {
		return refuse(http.StatusBadRequest, "bad_request", fmt.Sprintf("unsupported scheme %q inside the tunnel", r.Scheme))
	}
	authority := r.Target
	if authority == "" {
		authority = r.HostHeader
	}
	if authority == "" {
		return refuse(http.StatusBadRequest, "bad_request", "missing Host header (RFC 9112 §3.2)")
	}
	host, port, err := normalizeHostPort(authority, defPort)
	if err != nil {
		return refuse(http.StatusBadRequest, "bad_request", "bad Host: "+err.Error())
	}
	if joinHostPort(host, port) != r.Tunnel {
		return refuse(http.StatusMisdirectedRequest, "misdirected_request",
			fmt.Sprintf("request for %s inside a tunnel to %s: open a separate CONNECT for each host", joinHostPort(host, port), r.Tunnel))
	}
	return decideUpstream(r, scheme, host, port, gateway)
}

func decideUpstream(r RequestInfo, scheme, host, port string, gateway func(host, port string) (Gateway, bool)) Decision {
	if isSelf(host, port, r.ProxyPort) {
		return refuse(http.StatusLoopDetected, "loop_detected", "the request is addressed to this proxy itself")
	}
	gw, ok := gateway(host, port)
	if !ok {
		return Decision{Action: Forward, Host: host, Port: port}
	}
	if scheme == "http" && !gw.PlainHTTP {
		d := refuse(http.StatusForbidden, "https_required",
			fmt.Sprintf("%s is a gateway of profile %q and its token never travels over plain HTTP: use https://%s/ (or list it in plain_http if it is a local gateway)",
				joinHostPort(host, port), gw.Profile, hostForURL(host, port, "443")))
		d.Host, d.Port, d.Profile = host, port, gw.Profile
		return d
	}
	if site := crossSite(r, gw, gateway); site != "" {
		d := refuse(http.StatusForbidden, "cross_site_request",
			fmt.Sprintf("a web page on %s sent this request to %s, a gateway of profile %q: gatepass adds the token only to requests from your own tools, from pages on localhost, or from pages of that profile's gateways", site, joinHostPort(host, port), gw.Profile))
		d.Host, d.Port, d.Profile = host, port, gw.Profile
		d.Hint = "call the gateway from your own tools (curl, Postman, a dev server on localhost); if that site's pages should use the token, list its https:// origin in allowed_origins of profile " + gw.Profile
		if strings.Contains(site, "localhost") {
			scheme, _, _ := strings.Cut(site, "://") // the page's own: an https dev server stays https
			d.Hint = "a page on localhost counts as yours when your server listens on both 127.0.0.1 and [::1] (or on all addresses): open it as " +
				scheme + "://127.0.0.1:PORT or " + scheme + "://[::1]:PORT instead, whichever your server listens on"
		}
		return d
	}
	return Decision{Action: Inject, Host: host, Port: port, Profile: gw.Profile}
}

// setPage copies what a browser says about the sending page from h.
func (r *RequestInfo) setPage(h http.Header) {
	r.Origin, r.Referer = h.Get("Origin"), h.Get("Referer")
	r.FetchSite, r.FetchMode, r.FetchDest = h.Get("Sec-Fetch-Site"), h.Get("Sec-Fetch-Mode"), h.Get("Sec-Fetch-Dest")
}

// crossSite names the site of the web page that sent r when that page may not use
// profile's token; "" when it may, or when r does not come from a page at all.
//
// A browser whose proxy is gatepass (a system proxy setting, Chromium reading
// $https_proxy, Postman's browser tabs) and that trusts the local CA would otherwise
// give every web site it visits the developer's token: an <img>, a form or a fetch()
// to a gateway would carry it, which is the cross-site request forgery bearer tokens
// normally rule out. The browser says where a request comes from: Origin on fetches,
// form posts and WebSockets, and Sec-Fetch-Site (every current browser) with Referer
// on the rest. Allowed are pages on loopback hosts (the developer's own dev server),
// pages of the same profile's gateways, the user's own navigation (Sec-Fetch-Site
// none), and top-level GET navigations, which is what SameSite=Lax lets a cookie do.
// Tools that are not browsers (curl, Postman's requests, SDKs) send none of these.
func crossSite(r RequestInfo, gw Gateway, gateway func(host, port string) (Gateway, bool)) string {
	if r.Origin != "" {
		if pageAllowed(r, r.Origin, gw, gateway) {
			return ""
		}
		return r.Origin
	}
	switch strings.ToLower(r.FetchSite) {
	case "", "none", "same-origin":
		return ""
	}
	if strings.EqualFold(r.FetchMode, "navigate") && strings.EqualFold(r.FetchDest, "document") &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return ""
	}
	if r.Referer != "" && pageAllowed(r, r.Referer, gw, gateway) {
		return ""
	}
	if r.Referer != "" {
		if u, err := url.Parse(r.Referer); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	return "another site (Sec-Fetch-Site: " + r.FetchSite + ")"
}

// pageAllowed reports whether a page at origin (an Origin or a Referer) may use the
// token of gw's profile: a loopback host whose server is this user's (r.LocalPage), a
// gateway of that profile, or an https://
// origin the profile lists (allowed_origins). "null" (a sandboxed frame, a file, a
// cross-site redirect) is never allowed.
func pageAllowed(r RequestInfo, origin string, gw Gateway, gateway func(host, port string) (Gateway, bool)) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	defPort, ok := defaultPorts[strings.ToLower(u.Scheme)]
	if !ok {
		return false
	}
	host, port, err := normalizeHostPort(u.Host, defPort)
	if err != nil {
		return false
	}
	if isLoopbackName(host) {
		return r.LocalPage == nil || r.LocalPage(host, port)
	}
	if strings.EqualFold(u.Scheme, "https") && gw.PageAllowed != nil && gw.PageAllowed(host, port) {
		return true
	}
	pg, ok := gateway(host, port)
	return ok && pg.Profile == gw.Profile
}

func decideOriginForm(r RequestInfo) Decision {
	// A web page can reach 127.0.0.1:port, and with DNS rebinding it can make evil.example
	// resolve there too: answer only when the Host names a loopback address and our port.
	if r.HostHeader == "" {
		return refuse(http.StatusBadRequest, "bad_request", "missing Host header (RFC 9112 §3.2)")
	}
	host, port, err := normalizeHostPort(r.HostHeader, "80")
	if err != nil || !isLoopbackName(host) || port != r.ProxyPort {
		return refuse(http.StatusForbidden, "forbidden_host",
			"this is gatepass's local proxy: configure it as your HTTP(S) proxy instead of requesting it directly")
	}
	return Decision{Action: StatusPage, Host: host, Port: port}
}

func refuse(status int, code, reason string) Decision {
	return Decision{Action: Refuse, Status: status, Code: code, Reason: reason}
}

// isSelf reports whether host:port reaches this proxy: a loopback name, or the
// unspecified address (0.0.0.0, ::), which a dial on Linux takes to this machine.
func isSelf(host, port, proxyPort string) bool {
	if proxyPort == "" || port != proxyPort {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsUnspecified() {
		return true
	}
	return isLoopbackName(host)
}

func isLoopbackName(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// normalizeHostPort parses an authority (host[:port], IPv6 in brackets) into the form the
// TokenSource expects: lowercase, one trailing dot removed, IPv6 unbracketed and
// canonical, port explicit and canonical decimal. defaultPort "" makes the port
// mandatory. It is strict on purpose: whatever it accepts, the dialer reads the same way,
// so a lookup can never say one host while the connection goes to another.
func normalizeHostPort(authority, defaultPort string) (host, port string, err error) {
	if authority == "" {
		return "", "", fmt.Errorf("empty host")
	}
	if len(authority) > 300 {
		return "", "", fmt.Errorf("host too long")
	}
	var rawPort string
	hasPort := false
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", fmt.Errorf("%q: missing ']'", authority)
		}
		host = authority[1:end]
		rest := authority[end+1:]
		switch {
		case rest == "":
		case rest[0] == ':':
			rawPort, hasPort = rest[1:], true
		default:
			return "", "", fmt.Errorf("%q: junk after ']'", authority)
		}
		a, perr := netip.ParseAddr(host)
		if perr != nil || !a.Is6() || a.Zone() != "" {
			return "", "", fmt.Errorf("%q: not an IPv6 address", authority)
		}
		host = a.String()
	} else {
		if i := strings.LastIndexByte(authority, ':'); i >= 0 {
			host, rawPort, hasPort = authority[:i], authority[i+1:], true
		} else {
			host = authority
		}
		if strings.Contains(host, ":") {
			return "", "", fmt.Errorf("%q: an IPv6 address must be in brackets", authority)
		}
		host, err = normalizeName(host)
		if err != nil {
			return "", "", err
		}
	}
	switch {
	case !hasPort || rawPort == "":
		// RFC 3986 §3.2.3: an empty port means the scheme's default.
		if defaultPort == "" {
			return "", "", fmt.Errorf("%q: missing port", authority)
		}
		port = defaultPort
	default:
		n, perr := parsePort(rawPort)
		if perr != nil {
			return "", "", fmt.Errorf("%q: %w", authority, perr)
		}
		port = strconv.Itoa(n)
	}
	return host, port, nil
}

func parsePort(s string) (int, error) {
	if len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q out of range 1-65535", s)
	}
	return n, nil
}

// normalizeName lowercases a DNS name or IPv4 literal, drops one trailing dot and checks
// that only LDH characters (and '_', seen in real names) appear.
func normalizeName(h string) (string, error) {
	if h == "" {
		return "", fmt.Errorf("empty host")
	}
	h = strings.ToLower(h)
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("bad host name")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() {
			return "", fmt.Errorf("%q: bad IP address", h)
		}
		return a.String(), nil
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%q: bad host name", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("%q: bad character in host name", h)
			}
		}
	}
	// An all-numeric dotted name ("127.1", "2130706433") is an IPv4 address to some
	// resolvers and a name to others: refuse the ambiguity.
	if numericName(h) {
		return "", fmt.Errorf("%q: ambiguous numeric host", h)
	}
	return h, nil
}

// numericName reports whether every label is a decimal or 0x-hex number, the forms
// inet_aton reads as (parts of) an IPv4 address: "127.1", "0x7f.0.0.1", "2130706433".
func numericName(h string) bool {
	for label := range strings.SplitSeq(h, ".") {
		digits := label
		if strings.HasPrefix(label, "0x") {
			digits = label[2:]
			if strings.Trim(digits, "0123456789abcdef") != "" {
				return false
			}
			continue
		}
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			return false
		}
	}
	return true
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// hostForURL formats host[:port] for a URL, dropping the port when it is defPort.
func hostForURL(host, port, defPort string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == defPort {
		return host
	}
	return host + ":" + port
}
