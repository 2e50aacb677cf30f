package proxy

import (
	"bytes"
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	caLifetime      = 365 * 24 * time.Hour
	caRenewBefore   = 30 * 24 * time.Hour
	leafLifetime    = 24 * time.Hour
	leafRenewBefore = time.Hour
	leafBackdate    = 5 * time.Minute
	leafCacheSize   = 256
)

// CA is gatepass's local certificate authority. Its certificate carries critical X.509
// name constraints (RFC 5280 §4.2.1.10) listing only the gateway names, so even a
// stolen key can sign for nothing else, and MaxPathLen 0 so it cannot mint sub-CAs.
//
// Leaf certificates are short-lived and cached per host; mu guards the cache, and a
// leaf is signed under mu so concurrent first requests for a host sign once.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	names   []string

	now func() time.Time
	// issued is why EnsureCA generated this CA ("no CA stored yet", "stored CA
	// is corrupt …"); "" when it was loaded from the store.
	issued string

	mu    sync.Mutex
	lru   *list.List // of *leafEntry, most recently used first
	byKey map[string]*list.Element
	// signed counts leaf signatures, for tests and the status page.
	signed int
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// CertPEM returns the CA certificate in PEM, for `gatepass ca export`.
func (c *CA) CertPEM() []byte { return slices.Clone(c.certPEM) }

// Certificate returns the parsed CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Issued says why EnsureCA generated this CA just now (clients must trust the
// new certificate), or "" when it was loaded as it was.
func (c *CA) Issued() string { return c.issued }

// Names returns the normalised name constraints the CA was issued with.
func (c *CA) Names() []string { return slices.Clone(c.names) }

// EnsureCA loads the local CA from store, or (re)generates it when the entry is missing
// or corrupt, expires within 30 days, or was issued for other names than names (the
// gateways changed). A new CA is saved to store and logged in one line, since clients
// must trust it again. When certPath is not empty the certificate is written there
// (0644, directory 0700) for `gatepass ca path` and curl --cacert.
//
// names are DNS names ("api.team.example"), ".suffix" for a "*.suffix" gateway pattern,
// "localhost", or IP literals.
func EnsureCA(store CAStore, names []string, certPath string, log *slog.Logger) (*CA, error) {
	return ensureCA(store, names, certPath, log, time.Now)
}

func ensureCA(store CAStore, names []string, certPath string, log *slog.Logger, now func() time.Time) (*CA, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if store == nil {
		return nil, errors.New("local CA: no CA store configured")
	}
	want, err := normalizeCANames(names)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, found, err := store.LoadCA()
	if err != nil {
		return nil, fmt.Errorf("load local CA from the keychain: %w", err)
	}
	var reason string
	var ca *CA
	if !found {
		reason = "no CA stored yet"
	} else {
		ca, err = parseCA(certPEM, keyPEM)
		switch {
		case err != nil:
			reason = "stored CA is corrupt (" + err.Error() + ")"
			ca = nil
		case now().Add(caRenewBefore).After(ca.cert.NotAfter):
			reason = "stored CA expires " + ca.cert.NotAfter.Format(time.DateOnly)
			ca = nil
		case !slices.Equal(ca.names, want):
			reason = fmt.Sprintf("gateway names changed (CA was for %s, now %s)", strings.Join(ca.names, ","), strings.Join(want, ","))
			ca = nil
		case !constraintsCurrent(ca.cert, want):
			reason = "stored CA's name constraints are from an older gatepass (they did not exclude subdomains of exact gateway names)"
			ca = nil
		}
	}
	if ca == nil {
		ca, err = newCA(want, now())
		if err != nil {
			return nil, fmt.Errorf("generate local CA: %w", err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
		if err != nil {
			return nil, fmt.Errorf("encode local CA key: %w", err)
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		if err := store.SaveCA(ca.certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("save local CA to the keychain: %w", err)
		}
		trust := "clients must trust it again"
		if _, err := os.Stat(certPath); !found && (certPath == "" || errors.Is(err, fs.ErrNotExist)) {
			trust = "clients must trust it" // the first one: no other was handed out before
		}
		log.Warn("generated a new local CA: "+trust+" (`gatepass ca export` prints it)",
			"reason", reason, "names", strings.Join(want, ","), "cert", certPath)
		ca.issued = reason
	}
	ca.now = now
	if certPath != "" {
		if err := WriteCertFile(certPath, ca.certPEM); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// normalizeCANames lowercases, validates, sorts and de-duplicates the constraint names.
func normalizeCANames(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("local CA: no gateway names to sign for (add gateways to a profile)")
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		n = strings.TrimPrefix(strings.TrimSuffix(n, "]"), "[")
		if a, err := netip.ParseAddr(n); err == nil {
			if a.Zone() != "" {
				return nil, fmt.Errorf("local CA: bad name %q: IPv6 zones are not allowed", n)
			}
			out = append(out, a.Unmap().String())
			continue
		}
		name := strings.TrimPrefix(n, ".")
		if name == "" {
			return nil, fmt.Errorf("local CA: bad name %q", n)
		}
		if _, err := normalizeName(name); err != nil {
			return nil, fmt.Errorf("local CA: bad name %q: %w", n, err)
		}
		out = append(out, strings.TrimSuffix(n, "."))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func newCA(names []string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "gatepass local CA " + host, Organization: []string{"gatepass"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	applyConstraints(tmpl, names)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newCAFrom(cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// applyConstraints sets critical name constraints: the DNS names and IP addresses
// permitted. RFC 5280 constrains each name type separately, so a type with nothing
// permitted is excluded outright (all IPs when there are only DNS gateways, all DNS
// names when there are only IP gateways); otherwise that type would be unconstrained.
//
// A permitted DNS name also permits every name below it (RFC 5280 §4.2.1.10), but an
// exact gateway ("api.team.example") matches only itself. So the subdomains of each
// exact name are excluded (".api.team.example", subdomains only, as in the "*."
// wildcards' ".suffix"), unless a wildcard gateway covers them: without this, the CA
// key could sign for evil.api.team.example, which is no gateway.
func applyConstraints(tmpl *x509.Certificate, names []string) {
	tmpl.PermittedDNSDomainsCritical = true
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			bits := 32
			if a.Is6() {
				bits = 128
			}
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, bits)})
			continue
		}
		tmpl.PermittedDNSDomains = append(tmpl.PermittedDNSDomains, n)
	}
	for _, n := range tmpl.PermittedDNSDomains {
		if !strings.HasPrefix(n, ".") && !subdomainsPermitted(n, tmpl.PermittedDNSDomains) {
			tmpl.ExcludedDNSDomains = append(tmpl.ExcludedDNSDomains, "."+n)
		}
	}
	if len(tmpl.PermittedIPRanges) == 0 {
		tmpl.ExcludedIPRanges = []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		}
	}
	if len(tmpl.PermittedDNSDomains) == 0 {
		// An empty constraint matches every DNS name (RFC 5280 §4.2.1.10).
		tmpl.ExcludedDNSDomains = []string{""}
	}
}

// subdomainsPermitted reports whether a wildcard name (".suffix") among names covers
// every subdomain of the exact name n.
func subdomainsPermitted(n string, names []string) bool {
	for _, w := range names {
		if suffix, ok := strings.CutPrefix(w, "."); ok && (n == suffix || strings.HasSuffix(n, w)) {
			return true
		}
	}
	return false
}

// constraintsCurrent reports whether cert carries exactly the name constraints
// applyConstraints writes for its names today. A CA issued by an older gatepass may
// permit the same names with weaker exclusions; it is issued again.
func constraintsCurrent(cert *x509.Certificate, names []string) bool {
	var want x509.Certificate
	applyConstraints(&want, names)
	ipEqual := func(a, b []*net.IPNet) bool {
		return slices.EqualFunc(a, b, func(x, y *net.IPNet) bool { return x.String() == y.String() })
	}
	return slices.Equal(cert.PermittedDNSDomains, want.PermittedDNSDomains) &&
		slices.Equal(cert.ExcludedDNSDomains, want.ExcludedDNSDomains) &&
		ipEqual(cert.PermittedIPRanges, want.PermittedIPRanges) &&
		ipEqual(cert.ExcludedIPRanges, want.ExcludedIPRanges)
}

// constraintNames reads back the names applyConstraints wrote.
func constraintNames(cert *x509.Certificate) []string {
	var names []string
	names = append(names, cert.PermittedDNSDomains...)
	for _, r := range cert.PermittedIPRanges {
		if a, ok := netip.AddrFromSlice(r.IP); ok {
			names = append(names, a.Unmap().String())
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PKCS#8 private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("private key is not ECDSA")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("private key does not match the certificate")
	}
	if !cert.IsCA || !cert.PermittedDNSDomainsCritical || cert.MaxPathLen != 0 {
		return nil, errors.New("certificate is not a name-constrained CA")
	}
	return newCAFrom(cert, key, pem.EncodeToMemory(cb)), nil
}

func newCAFrom(cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM []byte) *CA {
	return &CA{
		cert:    cert,
		certPEM: certPEM,
		key:     key,
		names:   constraintNames(cert),
		now:     time.Now,
		lru:     list.New(),
		byKey:   make(map[string]*list.Element),
	}
}

// Leaf returns a certificate for host (a DNS name or IP literal, as normalised by the
// policy), from the cache when a fresh one is there.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[host]; ok {
		e := el.Value.(*leafEntry)
		if now.Add(leafRenewBefore).Before(e.cert.Leaf.NotAfter) {
			c.lru.MoveToFront(el)
			return e.cert, nil
		}
		c.lru.Remove(el)
		delete(c.byKey, host)
	}
	cert, err := c.sign(host, now)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", host, err)
	}
	c.signed++
	c.byKey[host] = c.lru.PushFront(&leafEntry{host: host, cert: cert})
	for c.lru.Len() > leafCacheSize {
		old := c.lru.Remove(c.lru.Back()).(*leafEntry)
		delete(c.byKey, old.host)
	}
	return cert, nil
}

func (c *CA) sign(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"gatepass"}},
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{net.IP(a.AsSlice())}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (c *CA) signedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signed
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand failed: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// WriteCertFile writes the CA certificate for `gatepass ca path`: the file is public
// (0644), its directory private to the user (0700). It is replaced atomically and only
// when the content changed, so a client reading it never sees half of it.
func WriteCertFile(path string, certPEM []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, certPEM) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".ca-*.pem")
	if err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(certPEM); err != nil {
		tmp.Close()
		return fmt.Errorf("write CA certificate %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write CA certificate %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write CA certificate %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write CA certificate %s: %w", path, err)
	}
	return nil
}

// CANamesFromPatterns turns config gateway patterns ("api.team.example",
// "*.gw.team.example", "localhost:9443", "[::1]:8443", "127.0.0.1") into the CA's name
// constraints (Options.CANames): the port is dropped and "*.suffix" becomes ".suffix"
// (subdomains only, RFC 5280 §4.2.1.10).
func CANamesFromPatterns(patterns []string) []string {
	var out []string
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case strings.HasPrefix(p, "["):
			if end := strings.IndexByte(p, ']'); end > 0 {
				p = p[1:end]
			}
		case strings.Count(p, ":") == 1:
			p = p[:strings.IndexByte(p, ':')]
		}
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			p = "." + rest
		}
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
