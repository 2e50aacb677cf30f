package app

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// idleTrimAfter is how long the app must be quiet (no broker event, no
// proxied request, no window shown or hidden) before it hands freed memory
// back to the operating system.
const idleTrimAfter = 10 * time.Second

// idleTrimmer returns freed Go heap to the OS once after each burst of
// activity.
//
// Measured (bench/README.md, "Desktop app"): after start-up and a sign-in
// the Go heap holds 15-25 MB of freed spans that the runtime's background
// scavenger gives back only slowly, so an idle window kept them for
// minutes. A tray app sits idle for hours; one debug.FreeOSMemory (a GC
// and a scavenge, a few milliseconds) per quiet period releases them and
// costs nothing while idle. (glibc's malloc_trim was tried for the C side
// and freed nothing measurable: Mesa's memory there is in use.)
type idleTrimmer struct {
	last    atomic.Int64 // unix nanoseconds of the last activity
	trimmed atomic.Bool  // trimmed since the last activity
	now     func() time.Time
	trim    func()
}

func newIdleTrimmer(now func() time.Time) *idleTrimmer {
	t := &idleTrimmer{now: now, trim: debug.FreeOSMemory}
	t.touch()
	return t
}

// touch records activity; safe from any goroutine.
func (t *idleTrimmer) touch() {
	t.last.Store(t.now().UnixNano())
	t.trimmed.Store(false)
}

// check trims when the app has been quiet for idleTrimAfter and has not
// trimmed since; the ticker calls it once a second. It reports whether it
// trimmed.
func (t *idleTrimmer) check() bool {
	if t.trimmed.Load() || t.now().UnixNano()-t.last.Load() < int64(idleTrimAfter) {
		return false
	}
	t.trimmed.Store(true)
	t.trim()
	return true
}
