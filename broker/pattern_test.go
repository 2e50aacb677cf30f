package broker

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Pattern
		str     string // canonical String(); "" = same as in
		wantErr string // substring of the error; "" = must succeed
	}{
		"host":                   {in: "api.example.com", want: Pattern{Host: "api.example.com"}},
		"uppercase folded":       {in: "API.Example.COM", want: Pattern{Host: "api.example.com"}, str: "api.example.com"},
		"trailing dot stripped":  {in: "api.example.com.", want: Pattern{Host: "api.example.com"}, str: "api.example.com"},
		"host and port":          {in: "localhost:9443", want: Pattern{Host: "localhost", Port: "9443"}},
		"leading zero port":      {in: "localhost:08443", want: Pattern{Host: "localhost", Port: "8443"}, str: "localhost:8443"},
		"port 1":                 {in: "a.example:1", want: Pattern{Host: "a.example", Port: "1"}},
		"port 65535":             {in: "a.example:65535", want: Pattern{Host: "a.example", Port: "65535"}},
		"wildcard":               {in: "*.gw.example.com", want: Pattern{Host: "gw.example.com", Wildcard: true}},
		"wildcard two labels":    {in: "*.example.com", want: Pattern{Host: "example.com", Wildcard: true}},
		"wildcard port case dot": {in: "*.GW.Example.com.:8443", want: Pattern{Host: "gw.example.com", Wildcard: true, Port: "8443"}, str: "*.gw.example.com:8443"},
		"ipv4":                   {in: "127.0.0.1", want: Pattern{Host: "127.0.0.1"}},
		"ipv4 port":              {in: "10.1.2.3:8080", want: Pattern{Host: "10.1.2.3", Port: "8080"}},
		"ipv6 bare":              {in: "::1", want: Pattern{Host: "::1"}},
		"ipv6 bracketed":         {in: "[::1]", want: Pattern{Host: "::1"}, str: "::1"},
		"ipv6 port":              {in: "[::1]:8443", want: Pattern{Host: "::1", Port: "8443"}},
		"ipv6 canonicalised":     {in: "[2001:DB8:0:0::1]:443", want: Pattern{Host: "2001:db8::1", Port: "443"}, str: "[2001:db8::1]:443"},
		"single label":           {in: "localhost", want: Pattern{Host: "localhost"}},
		"hyphen inside":          {in: "my-gw.example", want: Pattern{Host: "my-gw.example"}},

		"empty":                {in: "", wantErr: "empty pattern"},
		"only dot":             {in: ".", wantErr: "empty host"},
		"scheme":               {in: "https://api.example.com", wantErr: "has a scheme"},
		"path":                 {in: "api.example.com/v1", wantErr: "has a path"},
		"query":                {in: "api.example.com?x", wantErr: "has a path"},
		"userinfo":             {in: "gw@evil.example", wantErr: "user name"},
		"userinfo with port":   {in: "user:pw@evil.example:443", wantErr: "user name"},
		"star tld":             {in: "*.com", wantErr: "too broad"},
		"star tld dot":         {in: "*.com.", wantErr: "too broad"},
		"star alone":           {in: "*", wantErr: `"*" is only allowed`},
		"star dot":             {in: "*.", wantErr: `empty host after "*."`},
		"star middle":          {in: "api.*.example.com", wantErr: `"*" is only allowed`},
		"star partial label":   {in: "api*.example.com", wantErr: `"*" is only allowed`},
		"double star":          {in: "*.*.example.com", wantErr: `"*" is only allowed`},
		"space":                {in: " api.example.com", wantErr: "spaces"},
		"empty label":          {in: "api..example.com", wantErr: "empty label"},
		"leading dot":          {in: ".example.com", wantErr: "empty label"},
		"underscore":           {in: "my_gw.example.com", wantErr: "letters, digits and hyphens"},
		"leading hyphen":       {in: "-gw.example.com", wantErr: "hyphen"},
		"trailing hyphen":      {in: "gw-.example.com", wantErr: "hyphen"},
		"long label":           {in: strings.Repeat("a", 64) + ".example", wantErr: "longer than 63"},
		"long host":            {in: strings.Repeat("abcdefghi.", 26) + "example", wantErr: "longer than 253"},
		"unicode":              {in: "bücher.example", wantErr: "xn--"},
		"port zero":            {in: "a.example:0", wantErr: "1 to 65535"},
		"port too big":         {in: "a.example:65536", wantErr: "1 to 65535"},
		"port signed":          {in: "a.example:+443", wantErr: "1 to 65535"},
		"port empty":           {in: "a.example:", wantErr: "empty port"},
		"port name":            {in: "a.example:https", wantErr: "1 to 65535"},
		"ipv6 unbracketed":     {in: "::1:8443:x", wantErr: "bracket it"},
		"ipv6 zone":            {in: "[fe80::1%eth0]:443", wantErr: "zones"},
		"bracketed ipv4":       {in: "[127.0.0.1]:80", wantErr: "only for IPv6"},
		"unclosed bracket":     {in: "[::1:443", wantErr: `missing "]"`},
		"junk after bracket":   {in: "[::1]x", wantErr: `":PORT"`},
		"stray bracket":        {in: "a]b.example", wantErr: "brackets"},
		"bad ipv4":             {in: "256.0.0.1", wantErr: "not a valid IPv4"},
		"short ipv4":           {in: "127.1", wantErr: "not a valid IPv4"},
		"hex ipv4":             {in: "0x7f.0.0.1", wantErr: "not a valid IPv4"},
		"wildcard on ipv4":     {in: "*.0.0.1", wantErr: "IP address"},
		"wildcard on ipv6":     {in: "*.::1", wantErr: "IPv6 address"},
		"numeric last label":   {in: "host.123", wantErr: "not a valid IPv4"},
		"double colon no ipv6": {in: "a.example::443", wantErr: "not a valid IPv6"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParsePattern(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParsePattern(%q) = %+v, want error containing %q", tc.in, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePattern(%q) error = %q, want it to contain %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePattern(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParsePattern(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := ParsePattern(got.String())
			if err != nil || again != got {
				t.Errorf("ParsePattern(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestPatternMatches(t *testing.T) {
	type hp struct{ host, port string }
	tests := map[string]struct {
		pattern string
		match   []hp
		noMatch []hp
	}{
		"exact host default ports": {
			pattern: "api.example.com",
			match:   []hp{{"api.example.com", "443"}, {"api.example.com", "80"}, {"API.example.com.", "443"}},
			noMatch: []hp{{"api.example.com", "8443"}, {"x.api.example.com", "443"}, {"example.com", "443"}, {"api.example.com.evil", "443"}, {"evilapi.example.com", "443"}},
		},
		"exact host explicit port": {
			pattern: "localhost:9443",
			match:   []hp{{"localhost", "9443"}},
			noMatch: []hp{{"localhost", "443"}, {"localhost", "80"}, {"localhost", "09443"}},
		},
		"explicit 443 is not 80": {
			pattern: "api.example.com:443",
			match:   []hp{{"api.example.com", "443"}},
			noMatch: []hp{{"api.example.com", "80"}},
		},
		"wildcard any depth, not apex": {
			pattern: "*.gw.example.com",
			match:   []hp{{"a.gw.example.com", "443"}, {"a.b.gw.example.com", "80"}, {"A.GW.example.com", "443"}},
			noMatch: []hp{{"gw.example.com", "443"}, {"agw.example.com", "443"}, {".gw.example.com", "443"}, {"a.gw.example.com", "8443"}, {"a.gw.example.com.evil.com", "443"}},
		},
		"ipv6 with port": {
			pattern: "[::1]:8443",
			match:   []hp{{"::1", "8443"}, {"[::1]", "8443"}},
			noMatch: []hp{{"::1", "443"}, {"127.0.0.1", "8443"}},
		},
		"ipv4": {
			pattern: "127.0.0.1",
			match:   []hp{{"127.0.0.1", "80"}},
			noMatch: []hp{{"127.0.0.2", "80"}, {"localhost", "80"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.match {
				if !p.Matches(m.host, m.port) {
					t.Errorf("%q.Matches(%q, %q) = false, want true", tc.pattern, m.host, m.port)
				}
			}
			for _, m := range tc.noMatch {
				if p.Matches(m.host, m.port) {
					t.Errorf("%q.Matches(%q, %q) = true, want false", tc.pattern, m.host, m.port)
				}
			}
		})
	}
}

func TestPatternOverlaps(t *testing.T) {
	tests := map[string]struct {
		a, b string
		want bool
	}{
		"same host":                     {"api.example.com", "api.example.com", true},
		"same host case and dot":        {"API.example.com.", "api.example.com", true},
		"different hosts":               {"a.example.com", "b.example.com", false},
		"default ports vs 443":          {"api.example.com", "api.example.com:443", true},
		"default ports vs 80":           {"api.example.com", "api.example.com:80", true},
		"default ports vs 8443":         {"api.example.com", "api.example.com:8443", false},
		"different explicit ports":      {"localhost:8080", "localhost:9443", false},
		"same explicit port":            {"localhost:8080", "localhost:8080", true},
		"wildcard covers host":          {"*.example.com", "api.example.com", true},
		"host under wildcard":           {"a.b.example.com", "*.example.com", true},
		"wildcard excludes apex":        {"*.example.com", "example.com", false},
		"apex vs wildcard":              {"example.com", "*.example.com", false},
		"nested wildcards":              {"*.gw.example.com", "*.example.com", true},
		"nested wildcards reversed":     {"*.example.com", "*.gw.example.com", true},
		"same wildcard":                 {"*.example.com", "*.example.com", true},
		"sibling wildcards":             {"*.a.example.com", "*.b.example.com", false},
		"suffix but not label boundary": {"*.example.com", "badexample.com", false},
		"wildcard ports differ":         {"*.example.com:8443", "api.example.com", false},
		"ipv6 bracket forms":            {"[::1]:443", "::1", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := ParsePattern(tc.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParsePattern(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Overlaps(b); got != tc.want {
				t.Errorf("%q.Overlaps(%q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := b.Overlaps(a); got != tc.want {
				t.Errorf("%q.Overlaps(%q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

// TestOverlapsAgreesWithMatches checks Overlaps against brute force over a
// set of probe hosts and ports.
func TestOverlapsAgreesWithMatches(t *testing.T) {
	pats := []string{"example.com", "*.example.com", "a.example.com", "*.a.example.com", "b.a.example.com",
		"a.example.com:8443", "*.example.com:443", "localhost", "localhost:80", "::1", "[::1]:8443", "other.test"}
	hosts := []string{"example.com", "a.example.com", "b.a.example.com", "c.b.a.example.com", "x.example.com", "localhost", "::1", "other.test", "x.other.test"}
	ports := []string{"80", "443", "8443", "9000"}
	for _, as := range pats {
		for _, bs := range pats {
			a, _ := ParsePattern(as)
			b, _ := ParsePattern(bs)
			brute := false
			for _, h := range hosts {
				for _, p := range ports {
					if a.Matches(h, p) && b.Matches(h, p) {
						brute = true
					}
				}
			}
			if got := a.Overlaps(b); got != brute {
				t.Errorf("%q.Overlaps(%q) = %v, brute force says %v", as, bs, got, brute)
			}
		}
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"api.example.com", "*.gw.example.com", "localhost:9443", "[::1]:8443", "::1",
		"127.0.0.1", "*.com", "gw@evil", "A.B.", "[fe80::1%25eth0]", "0x7f.1", "*.", "a:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil {
			t.Fatalf("ParsePattern(%q) = %+v, but its String() %q does not parse: %v", s, p, p.String(), err)
		}
		if again != p {
			t.Fatalf("ParsePattern(%q) = %+v, String() %q parses to %+v", s, p, p.String(), again)
		}
		if p.Host == "" || strings.ContainsAny(p.Host, "*@/ []") {
			t.Fatalf("ParsePattern(%q) accepted host %q", s, p.Host)
		}
		if p.Wildcard && !strings.Contains(p.Host, ".") {
			t.Fatalf("ParsePattern(%q) accepted a single-label wildcard", s)
		}
		port := p.Port
		if port == "" {
			port = "443"
		}
		if !p.Wildcard && !p.Matches(p.Host, port) {
			t.Fatalf("%+v does not match its own host", p)
		}
		if p.Wildcard && (p.Matches(p.Host, port) || !p.Matches("x."+p.Host, port)) {
			t.Fatalf("wildcard %+v matches its apex or not a subdomain", p)
		}
		if !p.Overlaps(p) {
			t.Fatalf("%+v does not overlap itself", p)
		}
	})
}
