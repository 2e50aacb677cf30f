package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gatepass-dev/gatepass/internal/tlsfail"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// provider is what discovery tells us about one profile's issuer, turned
// into the x/oauth2 and go-oidc objects the flows need.
type provider struct {
	oauth         oauth2.Config
	verifier      *oidc.IDTokenVerifier
	revocationURL string
	// authParams are added to every authorization URL: Google needs
	// access_type=offline and prompt=consent to return a refresh token, and
	// prompt=select_account to let the user pick (or add) another account.
	authParams []oauth2.AuthCodeOption
}

// googlePrompt is the prompt of every Google sign-in: show the account chooser,
// then the consent screen.
const googlePrompt = "select_account consent"

// discoveryDoc holds the discovery fields go-oidc does not expose itself.
type discoveryDoc struct {
	RevocationEndpoint string   `json:"revocation_endpoint"`
	ScopesSupported    []string `json:"scopes_supported"`
	AuthMethods        []string `json:"token_endpoint_auth_methods_supported"`
}

// discover runs OpenID Connect Discovery 1.0 for the profile's issuer and
// prepares the OAuth config. Google gets google.Endpoint (fixed auth style:
// client credentials in the form body, so a failing refresh costs one
// request, not two) plus access_type=offline and prompt="select_account
// consent"; other issuers get the offline_access scope when discovery lists it.
//
// The config keeps an issuer minus one trailing "/", so that
// "https://login.example/" and "https://login.example" name the same profile;
// an issuer whose discovery document spells itself with the "/" (Auth0 does)
// is then discovered as it spells itself, since ID tokens carry that spelling.
func discover(ctx context.Context, p *Profile, client *http.Client, clock Clock) (*provider, error) {
	ctx = oidc.ClientContext(ctx, client)
	op, err := newOIDCProvider(ctx, p.Issuer)
	if err != nil {
		return nil, discoveryError(p, err)
	}
	var doc discoveryDoc
	if err := op.Claims(&doc); err != nil {
		return nil, discoveryError(p, err)
	}
	endpoint := op.Endpoint()
	scopes := slices.Clone(p.Scopes)
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email"}
	}
	var params []oauth2.AuthCodeOption
	if p.IsGoogle() {
		// (Google's discovery names google.Endpoint.TokenURL itself.)
		endpoint.AuthStyle = google.Endpoint.AuthStyle
		// prompt is a space-separated list (OpenID Connect Core §3.1.2.1):
		// consent, or Google returns no new refresh token (GOOGLE.md);
		// select_account, or Google signs the browser's current account
		// straight in and a profile cannot be switched to another account
		// (LESSONS.md). A --login-hint is sent as well.
		params = append(params,
			oauth2.AccessTypeOffline,
			oauth2.SetAuthURLParam("prompt", googlePrompt))
		if doc.RevocationEndpoint == "" {
			doc.RevocationEndpoint = "https://oauth2.googleapis.com/revoke"
		}
	} else {
		endpoint.AuthStyle = authStyle(doc.AuthMethods)
		if slices.Contains(doc.ScopesSupported, oidc.ScopeOfflineAccess) && !slices.Contains(scopes, oidc.ScopeOfflineAccess) {
			scopes = append(scopes, oidc.ScopeOfflineAccess)
		}
	}
	return &provider{
		oauth: oauth2.Config{
			ClientID:     p.ClientID,
			ClientSecret: p.ClientSecret,
			Endpoint:     endpoint,
			Scopes:       scopes,
		},
		verifier: op.Verifier(&oidc.Config{
			ClientID: p.ClientID,
			Now:      clock.Now,
		}),
		revocationURL: doc.RevocationEndpoint,
		authParams:    params,
	}, nil
}

// newOIDCProvider is oidc.NewProvider, accepting the one spelling difference
// the config takes away: a trailing "/".
func newOIDCProvider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	op, err := oidc.NewProvider(ctx, issuer)
	var mm *oidc.IssuerMismatchError
	if errors.As(err, &mm) {
		if mm.Discovered == issuer+"/" {
			return oidc.NewProvider(ctx, mm.Discovered)
		}
	}
	return op, err
}

// CheckDiscovery runs the same discovery a sign-in does for profile p — the
// document is fetched, parsed, and names p's issuer — without signing in;
// `gatepass doctor` reports its error.
func CheckDiscovery(ctx context.Context, p *Profile, client *http.Client) error {
	_, err := discover(ctx, p, client, SystemClock{})
	return err
}

// authStyle picks how client credentials travel from the methods the issuer
// lists (RFC 8414 token_endpoint_auth_methods_supported). Without the list
// x/oauth2 probes, which costs a second request on every failure.
func authStyle(methods []string) oauth2.AuthStyle {
	switch {
	case len(methods) == 0:
		// RFC 8414 §2: the default is client_secret_basic.
		return oauth2.AuthStyleInHeader
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	case slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleAutoDetect
}

// IssuerError means the identity provider could not be reached or answered
// something that is not an OpenID provider's answer.
type IssuerError struct {
	Issuer string
	Op     string // "discovery", "token", "revoke"
	Err    error
	Hint   string
}

func (e *IssuerError) Error() string {
	msg := fmt.Sprintf("%s at issuer %s: %v", e.Op, e.Issuer, e.Err)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *IssuerError) Unwrap() error { return e.Err }

func discoveryError(p *Profile, err error) error {
	hint := "check `issuer` of profile " + p.Name + " in the config"
	var mm *oidc.IssuerMismatchError
	if errors.As(err, &mm) {
		err = fmt.Errorf("the discovery document names the issuer %q", mm.Discovered)
		hint = fmt.Sprintf("set `issuer` of profile %s to %q exactly (ID tokens carry that name)", p.Name, mm.Discovered)
	} else if h := IssuerHint(err); h != "" {
		hint = h
	} else {
		err = sanitize(err) // go-oidc quotes the whole response body
	}
	return &IssuerError{Issuer: p.Issuer, Op: "discovery (" + strings.TrimSuffix(p.Issuer, "/") + "/.well-known/openid-configuration)", Err: err, Hint: hint}
}

// IssuerHint says what to do about a request to an issuer that got no answer: a
// TLS certificate this machine does not accept is a matter of trust (or of the
// host name, or of the clock), anything else (DNS, refused, timeout) one of the
// network. It is "" when err is not such a failure. Login and doctor share it.
func IssuerHint(err error) string {
	switch tlsfail.Of(err) {
	case tlsfail.HostName:
		return "the issuer's TLS certificate is not valid for that host name: check `issuer` in the config (use the name the certificate is for)"
	case tlsfail.Expired:
		return "the issuer's TLS certificate has expired or is not yet valid: check this machine's clock; if the clock is right, the issuer's certificate must be renewed"
	case tlsfail.Untrusted:
		return "the issuer's TLS certificate is not trusted by this machine: if `issuer` is right and it uses a private CA, " +
			"add that CA to the system trust store (or set SSL_CERT_FILE to a bundle that has it), then retry"
	}
	if isNetError(err) {
		return "is the issuer reachable from here? check `issuer` in the config, your network and `upstream_proxy`"
	}
	return ""
}

// isNetError reports a failure to reach a host at all (DNS, refused,
// timeout), as opposed to a bad answer.
func isNetError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded)
}

// NewHTTPClient is the client for identity-provider traffic. It honours an
// explicitly configured upstream proxy, else HTTPS_PROXY/HTTP_PROXY from the
// environment — unless that points at gatepass's own listen address, which
// would loop every IdP request into ourselves.
func NewHTTPClient(cfg *Config, timeout time.Duration) *http.Client {
	return newHTTPClient(cfg, timeout, nil)
}

// newHTTPClient is NewHTTPClient that also goes direct when the environment's
// proxy is own() (the agent's proxy, which may listen elsewhere than cfg.Listen).
func newHTTPClient(cfg *Config, timeout time.Duration, own func() string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = idpProxy(cfg, own)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// envProxy is HTTP(S)_PROXY and NO_PROXY (read once per process); tests replace it.
var envProxy = http.ProxyFromEnvironment

func idpProxy(cfg *Config, own func() string) func(*http.Request) (*url.URL, error) {
	if cfg != nil && cfg.UpstreamProxy != "" {
		u, err := url.Parse(cfg.UpstreamProxy)
		if err == nil {
			return http.ProxyURL(u)
		}
	}
	return func(r *http.Request) (*url.URL, error) {
		u, err := envProxy(r)
		if err != nil || u == nil || cfg == nil {
			return u, err
		}
		if sameHostPort(u.Host, cfg.Listen) {
			return nil, nil // our own proxy: go direct
		}
		if own != nil {
			if addr := own(); addr != "" && sameHostPort(u.Host, addr) {
				return nil, nil
			}
		}
		return u, nil
	}
}

func sameHostPort(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	loop := func(h string) bool {
		if strings.EqualFold(h, "localhost") {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return ah == bh || (loop(ah) && loop(bh))
}
