//go:build unix

package broker

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// checkConfigFile refuses a config that another user could have written: the config
// says where the refresh token goes (issuer) and which hosts get tokens (gateways), so
// whoever can change it can have the developer's tokens sent to a host of theirs, as
// ssh refuses a config others can write. That covers its directory too (whoever can
// write it can replace the file), unless the directory is sticky, as /tmp is.
// Group-writable is allowed only for the owner's own private group (Debian and Ubuntu
// give each user one, and a umask of 002 is common there); macOS's staff and SUSE's
// users groups have other members.
func checkConfigFile(path string, fi fs.FileInfo) error {
	if msg := othersCanWrite(fi, false); msg != "" {
		fix := fmt.Sprintf("run chmod go-w %s, or copy it to a file of your own (cp %s ~/.config/gatepass/config.toml)", quoteArg(path), quoteArg(path))
		if strings.HasPrefix(msg, "belongs to") {
			fix = fmt.Sprintf("copy it to a file of your own (cp %s ~/.config/gatepass/config.toml) and use that", quoteArg(path))
		}
		return &ConfigError{File: path, Msg: msg + ", so another user could make gatepass send your tokens to a host of theirs: " + fix}
	}
	// The directory the path names, and the one the file is really in when the path
	// goes through a symlink: whoever can write either can put another file there.
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		di, err := os.Stat(dir)
		if err != nil {
			continue
		}
		if msg := othersCanWrite(di, true); msg != "" {
			return &ConfigError{File: path, Msg: "its directory " + dir + " " + msg + fmt.Sprintf(", so another user could replace the file: keep the config in a directory of your own (cp %s ~/.config/gatepass/config.toml)", quoteArg(path))}
		}
	}
	return nil
}

// othersCanWrite says how a user other than this one (or root) can write the file or
// directory fi: "" when none can. A sticky directory's files can be replaced only by
// their owners.
func othersCanWrite(fi fs.FileInfo, isDir bool) string {
	mode := fi.Mode()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if !peer.Trusted(st.Uid) {
		return fmt.Sprintf("belongs to %s, not to you (%s)", peer.UserName(st.Uid), peer.UserName(peer.Self()))
	}
	sticky := isDir && mode&fs.ModeSticky != 0
	if mode.Perm()&0o002 != 0 && !sticky {
		return fmt.Sprintf("is writable by every user (mode %#o)", mode.Perm())
	}
	if mode.Perm()&0o020 != 0 && !sticky && !privateGroup(st.Uid, st.Gid) {
		return fmt.Sprintf("is writable by its group %s (mode %#o), which is not yours alone", groupName(st.Gid), mode.Perm())
	}
	return ""
}

// privateGroup reports whether gid is uid's own group: its primary group, named as
// the user is (the user private group scheme). Root's files count as its own.
func privateGroup(uid, gid uint32) bool {
	if uid == 0 && gid == 0 {
		return true
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil || u.Gid != strconv.FormatUint(uint64(gid), 10) {
		return false
	}
	g, err := user.LookupGroupId(u.Gid)
	return err == nil && g.Name == u.Username
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return "gid " + strconv.FormatUint(uint64(gid), 10)
}

// quoteArg quotes s for a POSIX shell when it needs it.
func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\"$`\\!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
