//go:build linux || freebsd || openbsd || netbsd || dragonfly

package app

import "github.com/godbus/dbus/v5"

// trayProbe reports whether there is a D-Bus session bus (without one
// fyne.io/systray cannot work at all, and its shutdown path crashes, so the
// tray is not started) and whether a StatusNotifierItem host is running on
// it: systray registers with org.kde.StatusNotifierWatcher, which GNOME
// lacks without the AppIndicator extension. Without a host the item stays
// exported and registers when a host appears later.
func trayProbe() (bus, host bool) {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return false, false
	}
	defer conn.Close()
	var has bool
	err = conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.kde.StatusNotifierWatcher").Store(&has)
	return true, err == nil && has
}
