package proxy

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// LogWriter buffers log output and writes it out from its own goroutine. The proxy
// logs one line per request; written straight to a terminal or file, each line
// costs a write(2), measured at 30-45% of the proxy's throughput on 2 cores
// (bench/HISTORY.md). Through a LogWriter a line costs a memory copy: the buffer is
// written every interval, or sooner once it holds 64 KiB, and never by the goroutine
// that logs. A stuck output (a paused terminal, a full pipe) therefore never holds up
// a request: once 4 MiB wait, further lines are dropped and counted, and a line
// saying how many follows when the output moves again.
// It is safe for concurrent use; Close writes what is left.
type LogWriter struct {
	mu      sync.Mutex // guards buf and dropped
	buf     []byte
	dropped int // lines not kept since the last write-out

	wmu   sync.Mutex // serialises writes to w; guards spare
	w     io.Writer
	spare []byte

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

const (
	logKickSize = 64 << 10 // write out early from this size
	logMaxSize  = 4 << 20  // lines are dropped from this size
)

// NewLogWriter starts a LogWriter over w that writes out every interval.
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
	l := &LogWriter{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-l.kick:
			case <-l.done:
				l.Flush()
				return
			}
			l.Flush()
		}
	}()
	return l
}

func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	if len(l.buf)+len(p) > logMaxSize {
		l.dropped++
	} else {
		l.buf = append(l.buf, p...)
	}
	n := len(l.buf)
	l.mu.Unlock()
	if n >= logKickSize {
		select {
		case l.kick <- struct{}{}:
		default: // already asked
		}
	}
	return len(p), nil
}

// Flush writes out what is buffered. Logging goes on meanwhile, into the other buffer.
func (l *LogWriter) Flush() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	out := l.buf
	if l.dropped > 0 {
		out = fmt.Appendf(out, "gatepass: %d log lines dropped: the log output did not keep up\n", l.dropped)
		l.dropped = 0
	}
	l.buf = l.spare[:0]
	l.mu.Unlock()
	if len(out) > 0 {
		_, _ = l.w.Write(out)
	}
	if cap(out) > logMaxSize {
		out = nil // after a burst, do not keep a large buffer
	}
	l.spare = out
}

// Close stops the writing goroutine and writes out the rest.
func (l *LogWriter) Close() error {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
	return nil
}
