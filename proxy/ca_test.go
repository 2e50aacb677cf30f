package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T, names ...string) (*CA, *memCAStore, *logBuffer) {
	t.Helper()
	store, logs := &memCAStore{}, &logBuffer{}
	ca, err := EnsureCA(store, names, "", slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return ca, store, logs
}

func TestCAHasNameConstraints(t *testing.T) {
	ca, _, _ := newTestCA(t, "api.team.example", ".gw.team.example", "LocalHost", "127.0.0.1", "::1")
	c := ca.Certificate()
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || !c.BasicConstraintsValid {
		t.Errorf("not a path-length-0 CA: IsCA=%v MaxPathLen=%d", c.IsCA, c.MaxPathLen)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("CA key is not ECDSA P-256")
	}
	if !c.PermittedDNSDomainsCritical {
		t.Errorf("name constraints not critical")
	}
	if want := []string{".gw.team.example", "api.team.example", "localhost"}; !slices.Equal(c.PermittedDNSDomains, want) {
		t.Errorf("PermittedDNSDomains = %v, want %v", c.PermittedDNSDomains, want)
	}
	if want := []string{".api.team.example", ".localhost"}; !slices.Equal(c.ExcludedDNSDomains, want) {
		t.Errorf("ExcludedDNSDomains = %v, want %v (the subdomains of the exact names)", c.ExcludedDNSDomains, want)
	}
	var ips []string
	for _, r := range c.PermittedIPRanges {
		ips = append(ips, r.String())
	}
	if want := []string{"127.0.0.1/32", "::1/128"}; !slices.Equal(ips, want) {
		t.Errorf("PermittedIPRanges = %v, want %v", ips, want)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < 360*24*time.Hour || life > 370*24*time.Hour {
		t.Errorf("CA lifetime %v, want about a year", life)
	}
}

// TestCAConstraintsEnforced signs leaves for gateway and non-gateway names (bypassing
// Leaf's own input) and checks x509 verification accepts exactly the gateway ones.
func TestCAConstraintsEnforced(t *testing.T) {
	ca, _, _ := newTestCA(t, "api.team.example", ".gw.team.example", "127.0.0.1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	tests := map[string]struct {
		host string
		ok   bool
	}{
		"exact gateway":          {"api.team.example", true},
		"below an exact gateway": {"evil.api.team.example", false},
		"deep below exact":       {"a.b.api.team.example", false},
		"wildcard subdomain":     {"a.gw.team.example", true},
		"wildcard deep":          {"a.b.gw.team.example", true},
		"wildcard apex":          {"gw.team.example", false},
		"other domain":           {"www.google.com", false},
		"suffix trick":           {"evilapi.team.example", false},
		"gateway IP":             {"127.0.0.1", true},
		"other IP":               {"10.0.0.1", false},
		"IPv6 (no IP permitted)": {"::1", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			leaf, err := ca.sign(tc.host, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tc.ok {
				t.Errorf("verify %s: err = %v, want ok=%v", tc.host, err, tc.ok)
			}
		})
	}
}

// TestCAConstraintsWildcardCoversExact: an exact name that a wildcard covers keeps
// its subdomains (they are gateways through the wildcard); "localhost" alone does not.
func TestCAConstraintsWildcardCoversExact(t *testing.T) {
	ca, _, _ := newTestCA(t, "team.example", ".team.example", "api.team.example", "localhost")
	if want := []string{".localhost"}; !slices.Equal(ca.Certificate().ExcludedDNSDomains, want) {
		t.Errorf("ExcludedDNSDomains = %v, want %v", ca.Certificate().ExcludedDNSDomains, want)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	for host, ok := range map[string]bool{
		"team.example": true, "api.team.example": true, "a.api.team.example": true, "x.team.example": true,
		"localhost": true, "evil.localhost": false, "127.0.0.1": false,
	} {
		leaf, err := ca.sign(host, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); (err == nil) != ok {
			t.Errorf("verify %s: err = %v, want ok=%v", host, err, ok)
		}
	}
}

func TestCAOnlyDNSNamesExcludesAllIPs(t *testing.T) {
	ca, _, _ := newTestCA(t, "api.team.example")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	for _, ip := range []string{"10.0.0.1", "127.0.0.1", "::1"} {
		leaf, err := ca.sign(ip, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: ip, Roots: roots}); err == nil {
			t.Errorf("a CA for a DNS gateway only could sign %s", ip)
		}
	}
}

func TestCAOnlyIPNamesExcludesAllDNS(t *testing.T) {
	ca, _, _ := newTestCA(t, "127.0.0.1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	leaf, err := ca.sign("example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Errorf("a CA for an IP gateway only could sign example.com")
	}
	leaf, _ = ca.sign("127.0.0.1", time.Now())
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: roots}); err != nil {
		t.Errorf("IP gateway leaf: %v", err)
	}
}

func TestLeafCache(t *testing.T) {
	ca, _, _ := newTestCA(t, "api.team.example", ".gw.team.example")
	now := time.Now()
	ca.now = func() time.Time { return now }
	a, err := ca.Leaf("api.team.example")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ca.Leaf("api.team.example")
	if a != b || ca.signedCount() != 1 {
		t.Errorf("second Leaf for the same host signed again (signed %d)", ca.signedCount())
	}
	if pk, ok := a.PrivateKey.(*ecdsa.PrivateKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("leaf key is not ECDSA P-256")
	}
	if life := a.Leaf.NotAfter.Sub(a.Leaf.NotBefore); life > 25*time.Hour {
		t.Errorf("leaf lifetime %v, want short-lived", life)
	}
	// Near expiry the leaf is renewed.
	now = now.Add(leafLifetime - 30*time.Minute)
	c, _ := ca.Leaf("api.team.example")
	if c == a || ca.signedCount() != 2 {
		t.Errorf("leaf near expiry was not renewed")
	}
	// The cache is bounded.
	for i := range leafCacheSize + 10 {
		if _, err := ca.Leaf(fmt.Sprintf("h%d.gw.team.example", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := ca.lru.Len(); n != leafCacheSize || len(ca.byKey) != leafCacheSize {
		t.Errorf("cache holds %d (%d), want %d", n, len(ca.byKey), leafCacheSize)
	}
}

func TestEnsureCAReusesStoredCA(t *testing.T) {
	ca1, store, logs := newTestCA(t, "api.team.example", "localhost")
	ca2, err := EnsureCA(store, []string{"LOCALHOST", "api.team.example."}, "", slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1.CertPEM(), ca2.CertPEM()) || store.saves != 1 {
		t.Errorf("same names: CA regenerated (saves %d)", store.saves)
	}
	if n := strings.Count(logs.String(), "generated a new local CA"); n != 1 {
		t.Errorf("%d regeneration lines, want 1 (first use only):\n%s", n, logs)
	}
	if ca1.Issued() != "no CA stored yet" || ca2.Issued() != "" {
		t.Errorf("Issued: first %q, reused %q; want the reason, then none", ca1.Issued(), ca2.Issued())
	}
}

func TestEnsureCARegenerates(t *testing.T) {
	tests := map[string]struct {
		prepare    func(s *memCAStore)
		names      []string
		wantReason string
	}{
		"missing":      {prepare: func(s *memCAStore) { s.cert, s.key = nil, nil }, wantReason: "no CA stored yet"},
		"corrupt cert": {prepare: func(s *memCAStore) { s.cert = []byte("garbage") }, wantReason: "corrupt"},
		"corrupt key":  {prepare: func(s *memCAStore) { s.key = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }, wantReason: "corrupt"},
		"key of another CA": {prepare: func(s *memCAStore) {
			other := &memCAStore{}
			EnsureCA(other, []string{"x.example"}, "", nil)
			s.key = other.key
		}, wantReason: "does not match"},
		"gateways changed":   {names: []string{"api.team.example", "new.team.example"}, wantReason: "gateway names changed"},
		"unconstrained cert": {prepare: func(s *memCAStore) { s.cert, s.key = unconstrainedCA(t) }, wantReason: "not a name-constrained CA"},
		"older constraints":  {prepare: func(s *memCAStore) { s.cert, s.key = permitOnlyCA(t, "api.team.example") }, wantReason: "from an older gatepass"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			old, store, _ := newTestCA(t, "api.team.example")
			if tc.prepare != nil {
				tc.prepare(store)
			}
			names := tc.names
			if names == nil {
				names = []string{"api.team.example"}
			}
			logs := &logBuffer{}
			ca, err := EnsureCA(store, names, "", slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(ca.CertPEM(), old.CertPEM()) {
				t.Errorf("CA not regenerated")
			}
			if !bytes.Equal(store.cert, ca.CertPEM()) {
				t.Errorf("new CA not saved")
			}
			line := logs.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, "generated a new local CA") || !strings.Contains(line, "gatepass ca export") || !strings.Contains(line, tc.wantReason) {
				t.Errorf("want one line with the reason %q and the fix, got:\n%s", tc.wantReason, line)
			}
			if tc.wantReason != "no CA stored yet" && !strings.Contains(line, "trust it again") {
				t.Errorf("a replaced CA must be trusted again, and the line should say so:\n%s", line)
			}
			if !slices.Equal(ca.Names(), normalized(t, names)) {
				t.Errorf("names %v", ca.Names())
			}
			if !strings.Contains(ca.Issued(), tc.wantReason) {
				t.Errorf("Issued() = %q, want the reason %q (the window shows it)", ca.Issued(), tc.wantReason)
			}
		})
	}
}

// TestFirstCASaysTrustIt: the first CA is to be trusted, not trusted "again".
func TestFirstCASaysTrustIt(t *testing.T) {
	_, _, logs := newTestCA(t, "api.team.example")
	if line := logs.String(); !strings.Contains(line, "clients must trust it (") || strings.Contains(line, "again") {
		t.Errorf("the first CA's line: %s", line)
	}
	// The keychain entry gone, but a certificate was handed out before (its file is
	// still there): that one may be trusted, so the new one must be trusted again.
	certPath := filepath.Join(t.TempDir(), "gatepass-ca.pem")
	if err := os.WriteFile(certPath, []byte("an earlier CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs = &logBuffer{}
	if _, err := EnsureCA(&memCAStore{}, []string{"api.team.example"}, certPath, slog.New(slog.NewTextHandler(logs, nil))); err != nil {
		t.Fatal(err)
	}
	if line := logs.String(); !strings.Contains(line, "clients must trust it again") {
		t.Errorf("a CA after one was handed out: %s", line)
	}
}

func normalized(t *testing.T, names []string) []string {
	n, err := normalizeCANames(names)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func unconstrainedCA(t *testing.T) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kd)
}

// permitOnlyCA is a CA as gatepass issued it before subdomains of exact names were
// excluded: the same permitted names, no DNS exclusion.
func permitOnlyCA(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "old"}, NotBefore: time.Now(), NotAfter: time.Now().Add(caLifetime),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign}
	applyConstraints(tmpl, names)
	tmpl.ExcludedDNSDomains = nil
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kd)
}

func TestEnsureCAErrors(t *testing.T) {
	if _, err := EnsureCA(&memCAStore{loadErr: errors.New("keychain locked")}, []string{"a.example"}, "", nil); err == nil || !strings.Contains(err.Error(), "keychain locked") {
		t.Errorf("load error: %v", err)
	}
	if _, err := EnsureCA(&memCAStore{}, nil, "", nil); err == nil {
		t.Errorf("no names: no error")
	}
	if _, err := EnsureCA(&memCAStore{}, []string{"bad name!"}, "", nil); err == nil {
		t.Errorf("bad name: no error")
	}
}

func TestEnsureCAWritesCertFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gatepass")
	path := filepath.Join(dir, "ca.pem")
	ca, err := EnsureCA(&memCAStore{}, []string{"a.example"}, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, ca.CertPEM()) {
		t.Fatalf("cert file: %v", err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o644 || di.Mode().Perm() != 0o700 {
		t.Errorf("modes: file %v dir %v, want 0644 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	if strings.Contains(string(b), "PRIVATE") {
		t.Errorf("private key in the exported file")
	}
}

func TestNewRefusesNonLoopbackListen(t *testing.T) {
	for _, l := range []string{"0.0.0.0:8787", ":8787", "192.168.1.1:8787", "example.com:8787", "[::]:8787", "127.0.0.1"} {
		if _, err := New(Options{Listen: l, Tokens: newFakeSource()}); err == nil {
			t.Errorf("New(listen %q) succeeded", l)
		}
	}
	for _, l := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "LocalHost:0", "127.0.0.2:8787"} {
		if _, err := New(Options{Listen: l, Tokens: newFakeSource()}); err != nil {
			t.Errorf("New(listen %q): %v", l, err)
		}
	}
}

func TestListenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s, err := New(Options{Listen: ln.Addr().String(), Tokens: newFakeSource()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "port "+port+" is already in use") {
		t.Errorf("error does not name the port: %v", err)
	}
	if _, statErr := os.Stat("/proc/net/tcp"); statErr == nil && !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error does not name the process holding the port: %v", err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestCANamesFromPatterns(t *testing.T) {
	got := CANamesFromPatterns([]string{"api.team.example", "*.gw.team.example", "localhost:9443", "localhost:8080", "[::1]:8443", "::1", "127.0.0.1:8443", "API.team.example"})
	want := []string{"api.team.example", ".gw.team.example", "localhost", "::1", "127.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("CANamesFromPatterns = %v, want %v", got, want)
	}
	if _, err := normalizeCANames(got); err != nil {
		t.Errorf("names not accepted by EnsureCA: %v", err)
	}
}
