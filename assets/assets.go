// Package assets holds gatepass's bundled resources: the tray and app icons
// (PNG; Fyne's tray on Linux needs PNG) and the pages the broker's loopback
// redirect listener (RFC 8252 §7.3) shows in the browser after sign-in.
//
// It imports no GUI package: the broker serves the callback pages, and the
// desktop app wraps the icon bytes in fyne resources itself.
package assets

import (
	"embed"
	"html/template"
)

//go:generate go run gen/icons.go

//go:embed callback/success.html callback/error.html
var callbackFS embed.FS

// CallbackTemplates holds the pages served on the loopback redirect URI
// once the authorization response has been handled:
//
//   - "success.html" takes a value with an Email field (string) and says
//     "Signed in as {{.Email}} — you can close this tab".
//   - "error.html" takes a value with Title, Detail and Hint fields (strings):
//     what went wrong, the details (e.g. the RFC 6749 §4.1.2.1 error and its
//     description) and what to do next.
//
// Both are html/template, so values are escaped; the pages are
// self-contained (inline CSS, no scripts, no external resources).
var CallbackTemplates = template.Must(template.ParseFS(callbackFS, "callback/*.html"))

// SuccessPage is the data for the "success.html" callback template.
type SuccessPage struct {
	Email string
}

// ErrorPage is the data for the "error.html" callback template.
type ErrorPage struct {
	Title, Detail, Hint string
}
