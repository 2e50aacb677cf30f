package proxy

import (
	"testing"

	"github.com/gatepass-dev/gatepass/broker"
)

// brokerGateways is the allow-list built from the real config parser's patterns
// (broker.ParsePattern / Pattern.Matches), so the policy table also runs against the
// matching rules users get.
type brokerGateways []struct {
	p  broker.Pattern
	gw Gateway
}

func newBrokerGateways(t testing.TB, pats map[string]Gateway) brokerGateways {
	t.Helper()
	var out brokerGateways
	for s, gw := range pats {
		p, err := broker.ParsePattern(s)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", s, err)
		}
		out = append(out, struct {
			p  broker.Pattern
			gw Gateway
		}{p, gw})
	}
	return out
}

func (b brokerGateways) lookup(host, port string) (Gateway, bool) {
	for _, e := range b {
		if e.p.Matches(host, port) {
			return e.gw, true
		}
	}
	return Gateway{}, false
}

func TestDecideWithBrokerPatterns(t *testing.T) {
	gws := newBrokerGateways(t, policyGateways)
	for name, tc := range policyCases() {
		t.Run(name, func(t *testing.T) {
			checkDecision(t, tc, Decide(tc.in, gws.lookup))
		})
	}
}

// TestBrokerPatternsAgreeWithFake keeps the hand-written fake honest: on every normalised
// host:port the table produces, both lookups give the same answer.
func TestBrokerPatternsAgreeWithFake(t *testing.T) {
	gws := newBrokerGateways(t, policyGateways)
	extra := [][2]string{{"api.team.example", "443"}, {"api.team.example", "80"}, {"api.team.example", "8080"},
		{"x.gw.team.example", "443"}, {"gw.team.example", "443"}, {"localhost", "9443"}, {"localhost", "443"},
		{"::1", "443"}, {"::1", "80"}, {"127.0.0.1", "8443"}, {"127.0.0.1", "443"}}
	for _, tc := range policyCases() {
		if d := Decide(tc.in, policyGateways.lookup); d.Host != "" {
			extra = append(extra, [2]string{d.Host, d.Port})
		}
	}
	for _, hp := range extra {
		g1, ok1 := policyGateways.lookup(hp[0], hp[1])
		g2, ok2 := gws.lookup(hp[0], hp[1])
		if ok1 != ok2 || g1.Profile != g2.Profile || g1.PlainHTTP != g2.PlainHTTP {
			t.Errorf("%s:%s: fake says %v %+v, broker says %v %+v", hp[0], hp[1], ok1, g1, ok2, g2)
		}
	}
}
