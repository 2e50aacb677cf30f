package proxy

import (
	"bytes"
	"fmt"
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
