package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker/demo"
	"github.com/gatepass-dev/gatepass/internal/issuertest"
)

// discoveryTransport answers discovery for the issuers it knows, offline.
type discoveryTransport map[string]map[string]any

func (d discoveryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	issuer := strings.TrimSuffix(r.URL.String(), "/.well-known/openid-configuration")
	doc, ok := d[issuer]
	if !ok {
		return &http.Response{StatusCode: http.StatusNotFound, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	body, _ := json.Marshal(doc)
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(string(body))),
		Request:    r,
	}, nil
}

// authURLFor runs discovery for issuer (served by discoveryTransport) and
// returns the query of the authorization URL a sign-in would send.
func authURLFor(t *testing.T, issuer string) url.Values {
	t.Helper()
	docs := discoveryTransport{
		"https://accounts.google.com": {
			"issuer":                 "https://accounts.google.com",
			"authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
			"token_endpoint":         "https://oauth2.googleapis.com/token",
			"jwks_uri":               "https://www.googleapis.com/oauth2/v3/certs",
			"scopes_supported":       []string{"openid", "email", "profile"},
		},
		"https://login.example.test": {
			"issuer":                 "https://login.example.test",
			"authorization_endpoint": "https://login.example.test/authorize",
			"token_endpoint":         "https://login.example.test/token",
			"jwks_uri":               "https://login.example.test/jwks",
			"scopes_supported":       []string{"openid", "email", "offline_access"},
		},
	}
	p := &Profile{Name: "work", Issuer: issuer, ClientID: "client-1"}
	prov, err := discover(context.Background(), p, &http.Client{Transport: docs}, SystemClock{})
	if err != nil {
		t.Fatalf("discover %s: %v", issuer, err)
	}
	cfg := prov.oauth
	cfg.RedirectURL = "http://127.0.0.1:4711/callback"
	u, err := url.Parse(cfg.AuthCodeURL("st", prov.authParams...))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestGoogleAuthURLSelectsAccount: Google's authorization URL asks for the
// account chooser and the consent screen in one space-separated prompt (OpenID
// Connect Core §3.1.2.1), so that a profile can be signed in as another account
// (LESSONS.md) and still gets a new refresh token (GOOGLE.md).
func TestGoogleAuthURLSelectsAccount(t *testing.T) {
	t.Parallel()
	q := authURLFor(t, "https://accounts.google.com")
	if got := q["prompt"]; len(got) != 1 || got[0] != "select_account consent" {
		t.Errorf("prompt = %q, want exactly one prompt \"select_account consent\"", got)
	}
	if got := q.Get("access_type"); got != "offline" {
		t.Errorf("access_type = %q, want offline", got)
	}
	if strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("scope = %q, offline_access is not Google's", q.Get("scope"))
	}
}

// TestOtherIssuerAuthURLUnchanged: other issuers get neither prompt nor
// access_type, only the offline_access scope their discovery lists.
func TestOtherIssuerAuthURLUnchanged(t *testing.T) {
	t.Parallel()
	q := authURLFor(t, "https://login.example.test")
	for _, k := range []string{"prompt", "access_type"} {
		if q.Has(k) {
			t.Errorf("%s = %q, want none for a non-Google issuer", k, q[k])
		}
	}
	if got := strings.Fields(q.Get("scope")); !slices.Equal(got, []string{"openid", "email", "offline_access"}) {
		t.Errorf("scope = %q, want openid email offline_access", got)
	}
}

// TestGooglePromptAcceptedByDemo: the demo provider with Google's rules takes
// "select_account consent" as a prompt with consent: every sign-in, the first
// and a later one, gets a refresh token.
func TestGooglePromptAcceptedByDemo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, demo.Options{GoogleRules: true})
	googleRulesIssuers.Store(e.idp.Issuer(), true)
	t.Cleanup(func() { googleRulesIssuers.Delete(e.idp.Issuer()) })
	for i := range 2 {
		e.login()
		if got := strings.Fields(e.idp.Stats().LastAuthParams.Get("prompt")); !slices.Equal(got, []string{"select_account", "consent"}) {
			t.Fatalf("sign-in %d: prompt %q, want select_account consent", i+1, got)
		}
		if en, ok := e.entry(); !ok || en.RefreshToken == "" {
			t.Fatalf("sign-in %d stored no refresh token", i+1)
		}
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.b.Token(context.Background(), testProfile, IDToken, time.Minute); err != nil {
		t.Fatalf("refresh with the stored token: %v", err)
	}
}

// TestLoginIssuerHint: a sign-in that cannot get discovery from the issuer says
// what to fix by what failed: an issuer certificate this machine does not trust is
// a trust problem (trust store, SSL_CERT_FILE), a closed port a network one.
func TestLoginIssuerHint(t *testing.T) {
	t.Parallel()
	tests := issuertest.Unanswered(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, demo.Options{})
			e.client = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second} // system roots
			e.cfg.Profiles[0].Issuer = tc.Issuer
			e.b = e.newBroker()
			_, err := e.b.Login(context.Background(), testProfile, LoginOptions{Browser: newDemoBrowser(true), Timeout: 10 * time.Second})
			var ie *IssuerError
			if !errors.As(err, &ie) {
				t.Fatalf("Login: %v (%T), want an IssuerError", err, err)
			}
			for _, w := range tc.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, n := range tc.Not {
				if strings.Contains(ie.Hint, n) {
					t.Errorf("hint %q says %q", ie.Hint, n)
				}
			}
		})
	}
}

// TestIssuerHint: which fix each kind of failure to reach an issuer gets.
func TestIssuerHint(t *testing.T) {
	wrap := func(err error) error {
		return &url.Error{Op: "Get", URL: "https://idp.example/.well-known/openid-configuration", Err: err}
	}
	tests := map[string]struct {
		err  error
		want string
	}{
		"unknown authority": {wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), "trust store"},
		"wrong host name":   {wrap(&tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "idp.example"}}), "host name"},
		"expired":           {wrap(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}), "clock"},
		"refused":           {wrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}), "reachable"},
		"DNS":               {wrap(&net.DNSError{Err: "no such host", Name: "idp.example", IsNotFound: true}), "reachable"},
		"timeout":           {context.DeadlineExceeded, "reachable"},
		"a bad answer":      {errors.New("oidc: issuer did not match"), ""},
	}
	for name, tc := range tests {
		got := IssuerHint(tc.err)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: IssuerHint(%v) = %q, want one with %q", name, tc.err, got, tc.want)
		}
	}
}
