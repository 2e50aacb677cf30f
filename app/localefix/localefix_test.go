package localefix

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want bool
	}{
		"C.UTF-8 in LANG":         {map[string]string{"LANG": "C.UTF-8"}, true},
		"POSIX.UTF-8 in LC_ALL":   {map[string]string{"LC_ALL": "POSIX.UTF-8", "LANG": "de_DE.UTF-8"}, true},
		"LC_ALL wins over LANG":   {map[string]string{"LC_ALL": "en_GB.UTF-8", "LANG": "C.UTF-8"}, false},
		"plain C is fine already": {map[string]string{"LANG": "C"}, false},
		"a real locale":           {map[string]string{"LANG": "fr_FR.UTF-8"}, false},
		"LANGUAGE already set":    {map[string]string{"LANG": "C.UTF-8", "LANGUAGE": "de"}, false},
		"nothing set":             {map[string]string{}, false},
		"LC_MESSAGES before LANG": {map[string]string{"LC_MESSAGES": "C.utf8", "LANG": "en_US.UTF-8"}, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			set := map[string]string{}
			got := Apply(func(k string) string { return tc.env[k] }, func(k, v string) error { set[k] = v; return nil })
			if got != tc.want {
				t.Errorf("Apply = %v, want %v", got, tc.want)
			}
			if got && set["LANGUAGE"] != "en" {
				t.Errorf("set %v, want LANGUAGE=en", set)
			}
			if !got && len(set) != 0 {
				t.Errorf("changed the environment: %v", set)
			}
		})
	}
}

// TestNoFyneLocaleNoise runs the real gatepass binary under C.UTF-8 and
// checks that Fyne's init no longer complains on stderr.
func TestNoFyneLocaleNoise(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gatepass binary")
	}
	bin := t.TempDir() + "/gatepass"
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gatepass").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "LC_ALL=", "LC_MESSAGES=", "LANGUAGE=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gatepass version: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "locale") {
		t.Errorf("Fyne still logs about the locale:\n%s", out)
	}
}
