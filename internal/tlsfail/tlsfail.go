// Package tlsfail tells apart the ways a peer's TLS certificate fails
// verification, so that the broker (about the issuer) and the proxy (about an
// upstream) can each say what to do about it: the fix for a certificate made for
// another name is not the fix for a private CA.
package tlsfail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// Kind is how a certificate failed verification.
type Kind int

const (
	// None: err is not a certificate verification failure.
	None Kind = iota
	// HostName: the certificate is valid but not for the host name dialled (a
	// wrong name in the config, or something else answering for that host).
	HostName
	// Expired: expired or not yet valid: this machine's clock, or a renewal due.
	Expired
	// Untrusted: no chain to a root this machine trusts (a private CA), or
	// another reason the chain is refused.
	Untrusted
)

// Of classifies err, which may wrap the verification error (url.Error,
// tls.CertificateVerificationError, net.OpError, …).
func Of(err error) Kind {
	var (
		he x509.HostnameError
		ci x509.CertificateInvalidError
		ua x509.UnknownAuthorityError
		ve *tls.CertificateVerificationError
	)
	switch {
	case err == nil:
		return None
	case errors.As(err, &he):
		return HostName
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return Expired
	case errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &ve):
		return Untrusted
	}
	return None
}
