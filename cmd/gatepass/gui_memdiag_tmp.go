package main

// TEMPORARY (memory investigation, issue 4): on SIGUSR1 write MemStats and a
// heap profile to $GATEPASS_MEMDIAG.{txt,pprof}. Removed before hand-off.

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

func init() {
	path := os.Getenv("GATEPASS_MEMDIAG")
	if path == "" {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			f, _ := os.Create(path + ".txt")
			mb := func(x uint64) float64 { return float64(x) / (1 << 20) }
			fmt.Fprintf(f, "HeapAlloc %.1f HeapInuse %.1f HeapIdle %.1f HeapReleased %.1f HeapSys %.1f StackSys %.1f Sys %.1f GoRSSest %.1f NumGC %d goroutines %d\n",
				mb(m.HeapAlloc), mb(m.HeapInuse), mb(m.HeapIdle), mb(m.HeapReleased), mb(m.HeapSys), mb(m.StackSys), mb(m.Sys), mb(m.Sys-m.HeapReleased), m.NumGC, runtime.NumGoroutine())
			f.Close()
			p, _ := os.Create(path + ".pprof")
			pprof.WriteHeapProfile(p)
			p.Close()
			g, _ := os.Create(path + ".goroutines")
			pprof.Lookup("goroutine").WriteTo(g, 1)
			g.Close()
		}
	}()
}
