// Package localefix keeps Fyne from logging "Error parsing user locale C"
// on every gatepass command when the locale is C.UTF-8 or POSIX.UTF-8, as in
// most containers, CI machines and WSL.
//
// Fyne's lang package reads the locale in an init function through
// github.com/jeandeaual/go-locale, which turns "C.UTF-8" into the tag "C"
// that golang.org/x/text cannot parse. This package sets LANGUAGE=en in that
// case, which go-locale prefers and gettext ignores under a C locale, so
// child processes see no difference.
//
// It must initialise before go-locale. Go (1.21+) initialises, among the
// packages whose imports are done, the one with the lexically smallest
// import path first; this package imports only os and strings, and
// "github.com/gatepass-dev/…" sorts before "github.com/jeandeaual/…".
// Package app imports it for that side effect.
package localefix

import (
	"os"
	"strings"
)

func init() {
	Apply(os.Getenv, os.Setenv)
}

// Apply sets LANGUAGE=en when the effective locale (LC_ALL, else
// LC_MESSAGES, else LANG) is C or POSIX with an encoding suffix and
// LANGUAGE is unset. It reports whether it did.
func Apply(getenv func(string) string, setenv func(string, string) error) bool {
	if getenv("LANGUAGE") != "" {
		return false
	}
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v := getenv(k)
		if v == "" {
			continue
		}
		base, _, hasEncoding := strings.Cut(v, ".")
		if hasEncoding && (base == "C" || base == "POSIX") {
			return setenv("LANGUAGE", "en") == nil
		}
		return false
	}
	return false
}
