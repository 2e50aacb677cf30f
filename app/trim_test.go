package app

import (
	"testing"
	"time"

	"github.com/gatepass-dev/gatepass/broker"
)

func TestIdleTrimmer(t *testing.T) {
	type step struct {
		advance time.Duration
		touch   bool
		want    bool // check trims
	}
	tests := map[string]struct {
		steps []step
	}{
		"not before the quiet period": {steps: []step{{advance: idleTrimAfter - time.Second, want: false}}},
		"once after it":               {steps: []step{{advance: idleTrimAfter, want: true}, {advance: time.Minute, want: false}}},
		"activity restarts it": {steps: []step{
			{advance: idleTrimAfter, want: true},
			{advance: time.Second, touch: true, want: false},
			{advance: idleTrimAfter - time.Second, want: false},
			{advance: time.Second, want: true},
		}},
		"activity postpones it": {steps: []step{
			{advance: idleTrimAfter - time.Second, touch: true, want: false},
			{advance: time.Second, want: false},
			{advance: idleTrimAfter, want: true},
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clock := &fakeClock{t: testStart}
			tr := newIdleTrimmer(clock.Now)
			n := 0
			tr.trim = func() { n++ }
			for i, s := range tc.steps {
				clock.Add(s.advance)
				if s.touch {
					tr.touch()
				}
				before := n
				if got := tr.check(); got != s.want || n-before != map[bool]int{true: 1}[s.want] {
					t.Fatalf("step %d: check() = %v with %d trims, want %v", i, got, n-before, s.want)
				}
			}
		})
	}
}

// A broker event counts as activity: the UI trims only after things settle.
func TestBrokerEventPostponesTrim(t *testing.T) {
	br := newFakeBroker(signedIn(time.Hour))
	e := newTestEnv(t, Options{Broker: br, Proxy: newFakeProxy()})
	n := 0
	e.u.trimmer.trim = func() { n++ }
	e.clock.Add(idleTrimAfter - time.Second)
	br.events <- broker.Event{Status: signedIn(time.Hour)}
	e.q.run(t)
	e.clock.Add(time.Second)
	if e.u.trimmer.check() || n != 0 {
		t.Fatalf("trimmed %d times right after a broker event", n)
	}
	e.clock.Add(idleTrimAfter)
	if !e.u.trimmer.check() || n != 1 {
		t.Fatalf("trimmed %d times after a quiet period, want 1", n)
	}
}
