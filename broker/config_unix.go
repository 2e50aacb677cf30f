//go:build unix

package broker

import (
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/gatepass-dev/gatepass/internal/peer"
)

// checkConfigFile refuses a config that another user could have written: the config
// says where the refresh token goes (issuer) and which hosts get tokens (gateways), so
// whoever can change it can have the developer's tokens sent to a host of theirs, as
// ssh refuses a config others can write. Group-writable is allowed: on Debian and
// Ubuntu each user has a group of their own, and a umask of 002 is common there.
func checkConfigFile(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o002 != 0 {
		return &ConfigError{File: path, Msg: fmt.Sprintf("is writable by every user (mode %#o), so anyone on this machine could make gatepass send your tokens to a host of theirs: run chmod o-w %s", fi.Mode().Perm(), quoteArg(path))}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || peer.Trusted(st.Uid) {
		return nil
	}
	return &ConfigError{File: path, Msg: fmt.Sprintf("belongs to %s, not to you (%s), so its owner decides where your tokens go: copy it to a file of your own (cp %s ~/.config/gatepass/config.toml) and use that", peer.UserName(st.Uid), peer.UserName(peer.Self()), quoteArg(path))}
}

// quoteArg quotes s for a POSIX shell when it needs it.
func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\"$`\\!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
