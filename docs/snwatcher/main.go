//go:build ignore

// Command snwatcher is a minimal org.kde.StatusNotifierWatcher: a tray
// host stand-in for screenshots and benchmarks on a bare X server. It owns
// the watcher name on the session bus, accepts registrations and prints
// each one ("registered SENDER PATH after MSms at UNIXMS"), so a
// script can measure when gatepass's tray item appeared.
//
//	go run docs/snwatcher/main.go
package main

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/godbus/dbus/v5"
)

type watcher struct{ start time.Time }

func (w watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	fmt.Printf("registered %s %s after %dms at %d\n", sender, service, time.Since(w.start).Milliseconds(), time.Now().UnixMilli())
	os.Stdout.Sync()
	return nil
}

func (watcher) RegisterStatusNotifierHost(string) *dbus.Error { return nil }

func main() {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		log.Fatalf("snwatcher: %v", err)
	}
	if err := conn.Export(watcher{time.Now()}, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		log.Fatalf("snwatcher: %v", err)
	}
	reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		log.Fatalf("snwatcher: cannot own org.kde.StatusNotifierWatcher (reply %v): %v", reply, err)
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	select {}
}
