// Package issuertest has issuers that give no answer, for the tests of what a
// sign-in and doctor say about them (broker.IssuerHint).
package issuertest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Case is an issuer URL and what an error about it, with its fix, must say and
// must not say.
type Case struct {
	Issuer    string
	Want, Not []string
}

// Unanswered returns one issuer per way of getting no answer: a TLS certificate
// no trust store has (a trust problem), and a closed port (a network one).
func Unanswered(t testing.TB) map[string]Case {
	t.Helper()
	untrusted := httptest.NewTLSServer(http.NotFoundHandler()) // its CA is in no trust store
	t.Cleanup(untrusted.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	_ = ln.Close()
	return map[string]Case{
		"untrusted certificate": {untrusted.URL, []string{"certificate", "not trusted by this machine", "trust store", "SSL_CERT_FILE"}, []string{"reachable"}},
		"closed port":           {closed, []string{"refused", "is the issuer reachable from here?", "`upstream_proxy`"}, []string{"trust"}},
	}
}
