package demo

import (
	"bytes"
	"html/template"
	"net/http"
)

// scopeLine is one row of the consent page.
type scopeLine struct {
	Scope, Text string
}

// consentData fills the consent page. The form carries only RequestID; the
// authorization parameters stay on the server.
type consentData struct {
	RequestID, Action string
	Email, Name       string
	ClientID          string
	Redirect          string
	Scopes            []scopeLine
}

// describeScopes says in words what each requested scope grants, as Google's
// consent screen does.
func describeScopes(scope []string, offline bool) []scopeLine {
	var out []scopeLine
	for _, s := range scope {
		var text string
		switch s {
		case "openid":
			text = "Associate you with your personal info on the demo provider"
		case "email":
			text = "See your primary email address"
		case "profile":
			text = "See your personal info, including your name"
		case "offline_access":
			continue // shown below, once, with access_type=offline
		default:
			text = "Access " + s
		}
		out = append(out, scopeLine{Scope: s, Text: text})
	}
	if offline {
		out = append(out, scopeLine{Scope: "offline", Text: "Stay signed in: keep access while you are away (a refresh token)"})
	}
	return out
}

const pageStyle = `
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f1f3f4;color:#202124}
.card{max-width:440px;margin:64px auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:36px 40px}
.brand{font-weight:600;color:#1a73e8;letter-spacing:.02em}
h1{font-size:22px;font-weight:500;margin:12px 0 4px}
.who{display:flex;align-items:center;gap:10px;border:1px solid #dadce0;border-radius:16px;padding:4px 12px 4px 4px;width:max-content;margin:12px 0 20px}
.avatar{width:26px;height:26px;border-radius:50%;background:#1a73e8;color:#fff;display:grid;place-items:center;font-weight:600}
ul{padding:0;list-style:none;border-top:1px solid #e8eaed}
li{padding:10px 0;border-bottom:1px solid #e8eaed}
small,code{color:#5f6368}
code{font-size:13px;word-break:break-all}
.buttons{display:flex;justify-content:flex-end;gap:12px;margin-top:24px}
button{font:inherit;font-weight:500;border-radius:4px;padding:8px 22px;cursor:pointer}
.cancel{background:#fff;color:#1a73e8;border:1px solid #dadce0}
.allow{background:#1a73e8;color:#fff;border:1px solid #1a73e8}
.error h1{color:#c5221f}
`

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in – gatepass demo</title><style>` + pageStyle + `</style></head>
<body><main class="card">
<div class="brand">gatepass demo identity provider</div>
<h1>Sign in to continue</h1>
<div class="who"><span class="avatar">{{printf "%.1s" .Name}}</span><span>{{.Email}}</span></div>
<p><strong>{{.ClientID}}</strong> wants to:</p>
<ul>{{range .Scopes}}<li>{{.Text}} <small>({{.Scope}})</small></li>{{end}}</ul>
<p><small>You will be sent back to <code>{{.Redirect}}</code>. This is a local demo: no real account is used.</small></p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request_id" value="{{.RequestID}}">
<div class="buttons">
<button class="cancel" type="submit" name="action" value="cancel">Cancel</button>
<button class="allow" type="submit" name="action" value="allow" autofocus>Allow</button>
</div>
</form>
</main></body></html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Error – gatepass demo</title><style>` + pageStyle + `</style></head>
<body><main class="card error">
<div class="brand">gatepass demo identity provider</div>
<h1>Access blocked: {{.Code}}</h1>
<p>{{.Description}}</p>
<p><small>Close this tab and start the sign-in again from gatepass.</small></p>
</main></body></html>
`))

// renderConsent writes the consent page; it must not be framed or cached.
// form-action is left out of the CSP: browsers apply it to the redirect that
// follows the form, which goes to the client's loopback port.
func renderConsent(w http.ResponseWriter, d consentData) {
	render(w, http.StatusOK, consentPage, d)
}

// renderError writes the provider's error page, used where redirecting back
// would be unsafe (an unknown client or redirect URI, RFC 6749 §4.1.2.1).
func renderError(w http.ResponseWriter, status int, code, desc string) {
	render(w, status, errorPage, struct{ Code, Description string }{code, desc})
}

func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
