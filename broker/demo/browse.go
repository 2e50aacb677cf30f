package demo

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// maxPage bounds how much of a page Browse reads.
const maxPage = 1 << 20

var (
	formAction = regexp.MustCompile(`<form[^>]*\baction="([^"]*)"`)
	requestID  = regexp.MustCompile(`name="request_id" value="([^"]*)"`)
)

// Browse is a scripted browser for the demo provider, as kubelogin's
// integration tests use: an HTTP client with a cookie jar GETs authURL,
// follows redirects, submits the consent form (Allow when approve, Cancel
// otherwise, which comes back as error=access_denied, RFC 6749 §4.1.2.1) and
// follows the final redirect to the loopback callback (RFC 8252 §7.3).
//
// authURL may also be an address that redirects to the authorization URL, such
// as the broker's loopback start address.
//
// It returns the status and body of the callback page. If the provider stops
// on a page without a consent form (an error page), it returns that page's
// status and body with an error.
func Browse(ctx context.Context, authURL string, approve bool) (status int, body string, err error) {
	if _, err := url.Parse(authURL); err != nil {
		return 0, "", fmt.Errorf("browse: parse the authorization URL: %w", err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return 0, "", fmt.Errorf("browse: create a cookie jar: %w", err)
	}
	// The callback is the redirect_uri of the first request that names one (the
	// authorization request), wherever the chain started.
	var callback *url.URL
	note := func(u *url.URL) {
		if ru := u.Query().Get("redirect_uri"); callback == nil && ru != "" {
			callback, _ = url.Parse(ru)
		}
	}
	isCallback := func(u *url.URL) bool {
		return callback != nil && u.Scheme == callback.Scheme && u.Host == callback.Host && u.Path == callback.Path
	}
	client := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		for _, r := range via {
			note(r.URL)
		}
		note(req.URL)
		return nil
	}}

	resp, page, err := fetch(ctx, client, http.MethodGet, authURL, nil)
	if err != nil {
		return 0, "", err
	}
	note(resp.Request.URL)
	form := formAction.FindStringSubmatch(page)
	id := requestID.FindStringSubmatch(page)
	if form == nil || id == nil {
		if !isCallback(resp.Request.URL) {
			return resp.StatusCode, page, fmt.Errorf("browse: the sign-in page answered %d without a consent form", resp.StatusCode)
		}
		return resp.StatusCode, page, nil // redirected straight to the callback
	}
	action, err := resp.Request.URL.Parse(html.UnescapeString(form[1]))
	if err != nil {
		return resp.StatusCode, page, fmt.Errorf("browse: bad consent form action: %w", err)
	}
	choice := "cancel"
	if approve {
		choice = "allow"
	}
	vals := url.Values{"request_id": {html.UnescapeString(id[1])}, "action": {choice}}
	resp, page, err = fetch(ctx, client, http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
	if err != nil {
		return 0, "", err
	}
	if !isCallback(resp.Request.URL) {
		return resp.StatusCode, page, fmt.Errorf("browse: the consent form was answered with %d and no redirect to the callback", resp.StatusCode)
	}
	return resp.StatusCode, page, nil
}

// fetch sends one request, follows redirects and reads the final page.
func fetch(ctx context.Context, c *http.Client, method, target string, form io.Reader) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, form)
	if err != nil {
		return nil, "", fmt.Errorf("browse: build the %s request: %w", method, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Say where it failed without printing a URL that carries a code.
			return nil, "", fmt.Errorf("browse: %s %s: %w", method, hostPath(ue.URL), ue.Err)
		}
		return nil, "", fmt.Errorf("browse: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return nil, "", fmt.Errorf("browse: read the page from %s: %w", hostPath(resp.Request.URL.String()), err)
	}
	return resp, string(b), nil
}

// hostPath drops the query of a URL, which may hold a code or state.
func hostPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
