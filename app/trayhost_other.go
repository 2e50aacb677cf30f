//go:build !(linux || freebsd || openbsd || netbsd || dragonfly)

package app

// trayProbe: macOS and Windows always have a menu bar / notification area.
func trayProbe() (bus, host bool) { return true, true }
