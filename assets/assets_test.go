package assets

import (
	"bytes"
	"image"
	"image/png"
	"strings"
	"testing"
)

func TestCallbackSuccess(t *testing.T) {
	tests := map[string]struct {
		email   string
		want    []string
		notWant []string
	}{
		"email shown": {
			email: "ada@example.com",
			want:  []string{"Signed in", "ada@example.com", "close this tab"},
		},
		"email escaped": {
			email:   `<script>alert(1)</script>`,
			want:    []string{"&lt;script&gt;"},
			notWant: []string{"<script>"},
		},
		"no email": {
			want:    []string{"Signed in", "close this tab"},
			notWant: []string{" as "},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := CallbackTemplates.ExecuteTemplate(&buf, "success.html", SuccessPage{Email: tc.email}); err != nil {
				t.Fatal(err)
			}
			assertPage(t, buf.String(), tc.want, tc.notWant)
		})
	}
}

func TestCallbackError(t *testing.T) {
	tests := map[string]struct {
		page    ErrorPage
		want    []string
		notWant []string
	}{
		"all fields": {
			page: ErrorPage{Title: "Sign-in cancelled", Detail: "access_denied: the user denied the request", Hint: "Click Sign in in gatepass to try again."},
			want: []string{"Sign-in cancelled", "access_denied: the user denied the request", "Click Sign in in gatepass to try again.", `class="hint"`},
		},
		"no hint": {
			page:    ErrorPage{Title: "State mismatch", Detail: "the response did not match this sign-in"},
			want:    []string{"State mismatch", "did not match"},
			notWant: []string{`class="hint"`},
		},
		"escaped": {
			page:    ErrorPage{Title: "x", Detail: `<img src=x onerror=alert(1)>`},
			want:    []string{"&lt;img"},
			notWant: []string{"<img"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := CallbackTemplates.ExecuteTemplate(&buf, "error.html", tc.page); err != nil {
				t.Fatal(err)
			}
			assertPage(t, buf.String(), tc.want, tc.notWant)
		})
	}
}

// assertPage also checks the page is self-contained: no external resources.
func assertPage(t *testing.T, page string, want, notWant []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	for _, w := range append(notWant, "http://", "https://", "<script", "<link") {
		if strings.Contains(page, w) {
			t.Errorf("page contains %q", w)
		}
	}
}

func TestIcons(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range TrayIconNames {
		b := TrayIconPNG(name)
		checkPNG(t, name, b, 64)
		if seen[string(b)] {
			t.Errorf("tray icon %q is identical to another state's icon", name)
		}
		seen[string(b)] = true
	}
	checkPNG(t, "app", AppIconPNG(), 512)
}

func TestTrayIconUnknownPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("TrayIconPNG(unknown) did not panic")
		}
	}()
	TrayIconPNG("nope")
}

func checkPNG(t *testing.T, name string, b []byte, size int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if got := img.Bounds(); got != image.Rect(0, 0, size, size) {
		t.Errorf("%s: bounds %v, want %dx%d", name, got, size, size)
	}
	// Transparent corners (rounded badge), opaque centre.
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Errorf("%s: corner alpha %d, want transparent", name, a)
	}
	if _, _, _, a := img.At(size/2, size/2).RGBA(); a != 0xffff {
		t.Errorf("%s: centre alpha %d, want opaque", name, a)
	}
}
