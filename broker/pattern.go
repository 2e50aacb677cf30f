package broker

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Pattern is one gateway host pattern from the config: a host, optionally a
// port. The proxy injects a token only into requests whose host and port a
// Pattern matches, so the parser is deliberately strict: anything that is not
// plainly a host name, an IP literal or a "*." wildcard is refused rather than
// guessed at.
type Pattern struct {
	// Host is lowercase, without a trailing dot; an IPv6 literal is stored
	// without brackets. For a wildcard it is the part after "*.".
	Host string
	// Wildcard is true when the pattern was written "*.Host": it matches
	// strict subdomains of Host (any depth), never Host itself.
	Wildcard bool
	// Port is a decimal port without leading zeros, or "" for the scheme
	// default ports only (443 and 80).
	Port string
}

// ParsePattern parses a gateway pattern such as "api.example.com",
// "*.gw.example.com", "localhost:9443", "127.0.0.1", "[::1]:8443" or "::1".
//
// Host names must be made of RFC 1123 §2.1 labels (letters, digits, hyphens;
// 1–63 characters; no leading or trailing hyphen; 253 characters in all). An
// IPv6 literal must be bracketed when a port is given (RFC 3986 §3.2.2). A
// wildcard is only a leading "*." label and needs at least two labels after
// it, so "*.com" is refused as too broad.
func ParsePattern(s string) (Pattern, error) {
	const hint = `; write a host like "api.example.com" or "*.gw.example.com"`
	switch {
	case s == "":
		return Pattern{}, errors.New(`empty pattern` + hint)
	case strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n"):
		return Pattern{}, fmt.Errorf("%q contains spaces%s", s, hint)
	case strings.Contains(s, "://"):
		return Pattern{}, fmt.Errorf("%q has a scheme: write the host only, without http:// or https://%s", s, hint)
	case strings.ContainsAny(s, "/?#"):
		return Pattern{}, fmt.Errorf("%q has a path: a pattern is a host and optional port, without /path, ? or #%s", s, hint)
	case strings.Contains(s, "@"):
		return Pattern{}, fmt.Errorf("%q has a user name (user@host): write the host only%s", s, hint)
	}

	host, port, err := splitPatternHostPort(s)
	if err != nil {
		return Pattern{}, err
	}
	var p Pattern
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return Pattern{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
		}
		p.Port = strconv.Itoa(n)
	}

	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.Wildcard = true
		host = rest
		if host == "" {
			return Pattern{}, fmt.Errorf("%q: empty host after \"*.\"%s", s, hint)
		}
	}
	if strings.Contains(host, "*") {
		return Pattern{}, fmt.Errorf(`%q: "*" is only allowed as a whole leading label, as in "*.gw.example.com"`, s)
	}

	// IP literals. IPv6 contains ':' and reaches here only unbracketed
	// without a port, or bracketed (brackets already removed).
	if strings.Contains(host, ":") {
		if p.Wildcard {
			return Pattern{}, fmt.Errorf("%q: a wildcard cannot apply to an IP address", s)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return Pattern{}, fmt.Errorf("%q: %q is not a valid IPv6 address (zones like %%eth0 are not allowed)", s, host)
		}
		p.Host = a.String()
		return p, nil
	}

	host = strings.ToLower(host)
	if strings.HasSuffix(host, ".") {
		host = host[:len(host)-1]
	}
	if host == "" {
		return Pattern{}, fmt.Errorf("%q: empty host%s", s, hint)
	}
	if len(host) > 253 {
		return Pattern{}, fmt.Errorf("%q: host is longer than 253 characters", s)
	}
	labels := strings.Split(host, ".")
	if looksNumeric(labels[len(labels)-1]) {
		// A name whose last label is numeric is read as IPv4 by URL parsers
		// (WHATWG URL "ends in a number"), so it must be a valid dotted quad.
		if p.Wildcard {
			return Pattern{}, fmt.Errorf("%q: a wildcard cannot apply to an IP address", s)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return Pattern{}, fmt.Errorf("%q: %q looks like an IP address but is not a valid IPv4 address", s, host)
		}
		p.Host = a.String()
		return p, nil
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return Pattern{}, fmt.Errorf("%q: %w%s", s, err, hint)
		}
	}
	if p.Wildcard && len(labels) < 2 {
		return Pattern{}, fmt.Errorf("%q is too broad: a wildcard needs at least two labels after \"*.\", as in \"*.example.com\"", s)
	}
	p.Host = host
	return p, nil
}

// splitPatternHostPort splits s into host and port ("" when absent). A
// bracketed host loses its brackets and must be IPv6; an unbracketed host
// with several colons is an IPv6 literal without a port.
func splitPatternHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("%q: missing \"]\" after the IPv6 address", s)
		}
		host, rest := s[1:end], s[end+1:]
		if !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("%q: brackets are only for IPv6 addresses", s)
		}
		switch {
		case rest == "":
			return host, "", nil
		case strings.HasPrefix(rest, ":") && len(rest) > 1:
			return host, rest[1:], nil
		}
		return "", "", fmt.Errorf("%q: expected \":PORT\" after \"]\"", s)
	}
	if strings.ContainsAny(s, "[]") {
		return "", "", fmt.Errorf("%q: brackets are only allowed around a whole IPv6 address, as in \"[::1]:8443\"", s)
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", nil
	case 1:
		host, port, _ = strings.Cut(s, ":")
		if port == "" {
			return "", "", fmt.Errorf("%q: empty port after \":\"", s)
		}
		return host, port, nil
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return "", "", fmt.Errorf("%q: not a valid IPv6 address; with a port, bracket it as in \"[::1]:8443\"", s)
	}
	return s, "", nil
}

// looksNumeric reports whether a label is a decimal or 0x-hex number, which
// URL parsers read as (part of) an IPv4 address.
func looksNumeric(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return l != "" && strings.Trim(l, "0123456789") == ""
}

// checkLabel enforces the RFC 1123 §2.1 host name label syntax.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label (two dots in a row, or a leading dot)")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q is longer than 63 characters", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(l)-1 {
				return fmt.Errorf("label %q starts or ends with a hyphen", l)
			}
		case c >= 0x80:
			return fmt.Errorf("label %q is not ASCII: write an internationalised name in its xn-- (punycode) form", l)
		default:
			return fmt.Errorf("label %q contains %q: host names use letters, digits and hyphens", l, string(rune(c)))
		}
	}
	return nil
}

// String returns the canonical form, which ParsePattern reads back to the
// same Pattern: "*.gw.example.com", "localhost:9443", "[::1]:8443", "::1".
func (p Pattern) String() string {
	h := p.Host
	if p.Wildcard {
		h = "*." + h
	}
	if p.Port == "" {
		return h
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + p.Port
}

// Matches reports whether a request to host:port falls under the pattern.
// port is always explicit ("443", "80", "9443"); a pattern without a port
// matches only the scheme defaults 443 and 80. host is expected normalised
// (lowercase, no trailing dot, IPv6 without brackets); it is normalised
// again here so that a careless caller cannot leak a token by spelling.
func (p Pattern) Matches(host, port string) bool {
	if !p.portMatches(port) {
		return false
	}
	host = normalizeHost(host)
	if !p.Wildcard {
		return host == p.Host
	}
	return len(host) > len(p.Host)+1 && strings.HasSuffix(host, "."+p.Host)
}

func (p Pattern) portMatches(port string) bool {
	if p.Port == "" {
		return port == "443" || port == "80"
	}
	return port == p.Port
}

// normalizeHost lowercases host, strips one trailing dot and IPv6 brackets.
func normalizeHost(host string) string {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}

// Overlaps reports whether some host and port match both p and q. The config
// uses it to keep a host in at most one profile.
func (p Pattern) Overlaps(q Pattern) bool {
	if !portsOverlap(p.Port, q.Port) {
		return false
	}
	switch {
	case !p.Wildcard && !q.Wildcard:
		return p.Host == q.Host
	case p.Wildcard && !q.Wildcard:
		return isStrictSubdomain(q.Host, p.Host)
	case !p.Wildcard && q.Wildcard:
		return isStrictSubdomain(p.Host, q.Host)
	}
	// Two wildcards share hosts when one base is the other or a subdomain
	// of it: "*.a.example.com" and "*.example.com" both match x.a.example.com.
	return p.Host == q.Host || isStrictSubdomain(p.Host, q.Host) || isStrictSubdomain(q.Host, p.Host)
}

func portsOverlap(a, b string) bool {
	switch {
	case a == b:
		return true
	case a == "":
		return b == "443" || b == "80"
	case b == "":
		return a == "443" || a == "80"
	}
	return false
}

func isStrictSubdomain(host, base string) bool {
	return len(host) > len(base)+1 && strings.HasSuffix(host, "."+base)
}

// isLoopbackPattern reports whether p names only this machine: localhost,
// an address in 127.0.0.0/8, or ::1. Wildcards never qualify.
func isLoopbackPattern(p Pattern) bool {
	return !p.Wildcard && isLoopbackHost(p.Host)
}

// isLoopbackHost reports whether host (unbracketed) is localhost or a
// loopback IP address (RFC 6890: 127.0.0.0/8 and ::1).
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}
