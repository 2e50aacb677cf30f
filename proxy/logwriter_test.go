package proxy

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogWriterFlushesPeriodicallyAndOnClose(t *testing.T) {
	var out logBuffer
	w := NewLogWriter(&out, 20*time.Millisecond)
	fmt.Fprintln(w, "first")
	if out.String() != "" {
		t.Fatalf("written through at once; want buffered")
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if out.String() != "first\n" {
		t.Fatalf("after the interval: %q", out.String())
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); fmt.Fprintf(w, "line %02d\n", i) }()
	}
	wg.Wait()
	w.Close()
	if got := bytes.Count([]byte(out.String()), []byte("\n")); got != 51 {
		t.Errorf("%d lines after Close, want 51", got)
	}
}

// gateWriter blocks every Write until open is closed.
type gateWriter struct {
	open    chan struct{}
	started chan struct{}
	once    sync.Once
	out     logBuffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.started) })
	<-g.open
	return g.out.Write(p)
}

// TestLogWriterNeverWaitsForTheOutput: while the output is stuck (a paused terminal),
// logging returns at once, and nothing is lost once it moves again.
func TestLogWriterNeverWaitsForTheOutput(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), started: make(chan struct{})}
	w := NewLogWriter(g, time.Millisecond)
	fmt.Fprintln(w, "first")
	select {
	case <-g.started:
	case <-time.After(2 * time.Second):
		t.Fatal("the buffer was never written out")
	}
	// The writing goroutine is now stuck in the output.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 { // 2000 × 40 bytes: past the early write-out size
			fmt.Fprintf(w, "line %04d %s\n", i, strings.Repeat("x", 29))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write waited for a stuck output")
	}
	close(g.open)
	w.Close()
	if got := strings.Count(g.out.String(), "\n"); got != 2001 {
		t.Errorf("%d lines after Close, want 2001", got)
	}
}

// TestLogWriterDropsWhenFarBehind: with the output stuck, memory stays bounded; the
// lines past the limit are counted, and the count is written when it moves again.
func TestLogWriterDropsWhenFarBehind(t *testing.T) {
	g := &gateWriter{open: make(chan struct{}), started: make(chan struct{})}
	w := NewLogWriter(g, time.Millisecond)
	fmt.Fprintln(w, "first")
	<-g.started
	line := strings.Repeat("y", 99) + "\n"
	const n = 2 * logMaxSize / 100
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			io.WriteString(w, line)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write waited for a stuck output")
	}
	w.mu.Lock()
	held, dropped := len(w.buf), w.dropped
	w.mu.Unlock()
	if held > logMaxSize || dropped < n/3 {
		t.Errorf("holding %d bytes with %d lines dropped; want at most %d bytes held", held, dropped, logMaxSize)
	}
	close(g.open)
	w.Close()
	out := g.out.String()
	kept := strings.Count(out, line)
	if !strings.Contains(out, fmt.Sprintf("gatepass: %d log lines dropped", n-kept)) {
		t.Errorf("kept %d of %d lines, and the output does not say so: %q", kept, n, out[max(0, len(out)-200):])
	}
}
