//go:build unix

package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config another user could have written is refused: it decides where tokens go.
func TestLoadConfigRefusesOthersWritableConfig(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "config", "good-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mode    os.FileMode
		chown   int // -1: keep
		wantErr string
	}{
		"0600":                {0o600, -1, ""},
		"0644":                {0o644, -1, ""},
		"0664 (user's group)": {0o664, -1, ""},
		"0666":                {0o666, -1, "is writable by every user (mode 0666)"},
		"0602":                {0o602, -1, "run chmod o-w"},
		"another user's":      {0o644, 65534, "belongs to uid 65534"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "my config.toml")
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if tc.chown >= 0 {
				if os.Getuid() != 0 {
					t.Skip("needs root to give a file to another user (CI runs as root)")
				}
				if err := os.Chown(path, tc.chown, tc.chown); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadConfig(path)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "'"+path+"'") {
				t.Fatalf("LoadConfig = %v, want a config error with %q and the quoted path", err, tc.wantErr)
			}
		})
	}
}
