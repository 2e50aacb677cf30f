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
	const nobody = 65534
	for name, tc := range map[string]struct {
		mode, dirMode os.FileMode
		uid, gid      int // of the file; -1: keep
		dirUID        int // of the directory; -1: keep
		wantErr       string
	}{
		"0600":                  {0o600, 0o700, -1, -1, -1, ""},
		"0644":                  {0o644, 0o755, -1, -1, -1, ""},
		"0664, own group":       {0o664, 0o700, -1, -1, -1, ""},
		"0666":                  {0o666, 0o700, -1, -1, -1, "is writable by every user (mode 0666)"},
		"0602":                  {0o602, 0o700, -1, -1, -1, "run chmod go-w"},
		"0664, a shared group":  {0o664, 0o700, -1, nobody, -1, "is writable by its group"},
		"0644, a shared group":  {0o644, 0o700, -1, nobody, -1, ""},
		"another user's":        {0o644, 0o700, nobody, -1, -1, "belongs to uid 65534"},
		"in a 0777 directory":   {0o600, 0o777, -1, -1, -1, "its directory"},
		"in a sticky directory": {0o600, 0o777 | os.ModeSticky, -1, -1, -1, ""},
		"in another user's dir": {0o600, 0o755, -1, -1, nobody, "its directory"},
	} {
		t.Run(name, func(t *testing.T) {
			if (tc.uid >= 0 || tc.gid >= 0 || tc.dirUID >= 0) && os.Getuid() != 0 {
				t.Skip("needs root to give a file to another user (CI runs as root)")
			}
			dir := filepath.Join(t.TempDir(), "conf dir")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "my config.toml")
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			if tc.uid >= 0 || tc.gid >= 0 {
				if err := os.Chown(path, tc.uid, tc.gid); err != nil {
					t.Fatal(err)
				}
			}
			if tc.dirUID >= 0 {
				if err := os.Chown(dir, tc.dirUID, -1); err != nil {
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
			if strings.Contains(err.Error(), "belongs to") && strings.Contains(err.Error(), "chmod") {
				t.Errorf("a file of another user is not fixed by chmod, yet the error says so: %v", err)
			}
		})
	}
}

// A config reached through a symlink is checked where the file really is: a link in
// a directory of the user's own to a file in a directory every user can write is
// refused.
func TestLoadConfigThroughSymlinkChecksTheRealDirectory(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "config", "good-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(shared, "config.toml")
	if err := os.WriteFile(real, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "mine.toml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(link); err == nil || !strings.Contains(err.Error(), "its directory "+shared+" is writable by every user") {
		t.Fatalf("LoadConfig through a symlink into a 0777 directory = %v, want refused naming that directory", err)
	}
	if err := os.Chmod(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(link); err != nil {
		t.Fatalf("LoadConfig through a symlink into a directory of one's own: %v", err)
	}
}
