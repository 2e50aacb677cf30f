package broker

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// DefaultListen is the proxy address used when the config has no listen key.
const DefaultListen = "127.0.0.1:8787"

// Config is a parsed and validated gatepass configuration file (DESIGN.md §3).
type Config struct {
	Path           string     // file it was loaded from ("" if built in memory)
	Listen         string     // proxy address; loopback with a port; DefaultListen when absent
	DefaultProfile string     // key default_profile; when absent and there is exactly one profile, that one
	UpstreamProxy  string     // key upstream_proxy: http(s) URL of a corporate proxy for IdP and upstream traffic
	Profiles       []*Profile // in file order
}

// Profile is one identity: an OIDC issuer and client, and the gateway hosts
// that receive its token.
type Profile struct {
	Name         string
	Issuer       string   // as written, minus one trailing "/"
	ClientID     string   // required
	ClientSecret string   // optional (Google Desktop clients need it even with PKCE)
	Scopes       []string // default ["openid", "email"]; always contains "openid"
	Gateways     []Pattern
	Inject       TokenKind // key inject: id_token (default) or access_token
	PlainHTTP    []Pattern // key plain_http: loopback hosts, each covered by Gateways
	// AllowedOrigins (key allowed_origins, written https://host[:port], "*." allowed)
	// are the web pages on other hosts that may use this profile's token from a
	// browser going through the proxy (pages on loopback and on the profile's own
	// gateways may without it).
	AllowedOrigins []Pattern
	// Overrides (key overrides, a table per gateway: [profiles.NAME.overrides."HOST"])
	// give a gateway of Gateways, written the same way, a token kind other than
	// Inject or another header: one sign-in serves gateways that take the ID token
	// and gateways that take the access token, in Authorization or (Google IAP, for
	// an app that needs Authorization itself) Proxy-Authorization.
	Overrides map[Pattern]Override
}

// Override is what a gateway gets differently from its profile; "" keeps the
// profile's choice (Inject; the Authorization header).
type Override struct {
	Inject TokenKind `json:"inject,omitempty"`
	Header string    `json:"header,omitempty"` // "Authorization" or "Proxy-Authorization"
}

// The headers a token may go in (key header of an override).
const (
	HeaderAuthorization      = "Authorization"
	HeaderProxyAuthorization = "Proxy-Authorization"
)

// googleRulesIssuers are issuers that tests treat as Google's (the demo provider
// with GoogleRules), so that Google's code path runs against it; see IsGoogle.
var googleRulesIssuers sync.Map

// ConfigError is a problem in a config file, located by file, line and key
// (for example profiles.work.gateways[1]). Line is 0 when unknown, as for a
// Config built in memory.
type ConfigError struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error renders "FILE:LINE: KEY: MSG", leaving out empty parts.
func (e *ConfigError) Error() string {
	var parts []string
	loc := e.File
	if e.Line > 0 {
		if loc != "" {
			loc += ":" + strconv.Itoa(e.Line)
		} else {
			loc = "line " + strconv.Itoa(e.Line)
		}
	}
	for _, s := range []string{loc, e.Key, e.Msg} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// DefaultConfigPath returns <os.UserConfigDir()>/gatepass/config.toml.
func DefaultConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config directory (pass --config or set GATEPASS_CONFIG): %w", err)
	}
	return filepath.Join(dir, "gatepass", "config.toml"), nil
}

// ResolveConfigPath picks the config file: the --config flag, else
// $GATEPASS_CONFIG, else DefaultConfigPath.
func ResolveConfigPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := os.Getenv("GATEPASS_CONFIG"); env != "" {
		return env, nil
	}
	return DefaultConfigPath()
}

// LoadConfig reads and parses the config file at path. A missing file gives
// an error wrapping fs.ErrNotExist that says how to create one.
func LoadConfig(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no config file at %s: create one as shown in the README, or run `gatepass demo` to try gatepass against a local demo provider: %w", path, err)
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return nil, err
	}
	if err != nil {
		// Config errors (exit 2), like a bad key: the fix is the path or the file.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		msg := fmt.Sprintf("cannot read the config file: %v", err)
		if errors.Is(err, fs.ErrPermission) {
			msg += ": make it readable by this user (chmod u+r), or point --config at another file"
		}
		return nil, &ConfigError{File: path, Msg: msg}
	}
	return ParseConfig(path, data)
}

// readConfigFile reads the config through one open file, whose mode and owner are
// the ones checked (checkConfigFile): a file swapped in between a check by name and
// the read cannot slip past it.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &ConfigError{File: path, Msg: "is a directory, not a config file: give --config (or GATEPASS_CONFIG) the path of the config.toml file itself"}
	}
	if err := checkConfigFile(path, fi); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// The keys a config may hold, in the order EncodeConfig writes them.
var (
	topKeys     = []string{"listen", "default_profile", "upstream_proxy", "profiles"}
	profileKeys = []string{"issuer", "client_id", "client_secret", "scopes", "gateways", "inject", "plain_http", "allowed_origins", "overrides"}
)

// fileConfig and fileProfile mirror the TOML layout for decoding.
type fileConfig struct {
	Listen         string                 `toml:"listen"`
	DefaultProfile string                 `toml:"default_profile"`
	UpstreamProxy  string                 `toml:"upstream_proxy"`
	Profiles       map[string]fileProfile `toml:"profiles"`
}

type fileProfile struct {
	Issuer       string    `toml:"issuer"`
	ClientID     string    `toml:"client_id"`
	ClientSecret string    `toml:"client_secret"`
	Scopes       *[]string `toml:"scopes"` // nil when absent: use the default
	Gateways     []string  `toml:"gateways"`
	Inject       string    `toml:"inject"`
	PlainHTTP    []string  `toml:"plain_http"`
	// AllowedOrigins: https:// origins whose pages may use the token.
	AllowedOrigins []string `toml:"allowed_origins"`
	// Overrides: per gateway pattern, what differs from the profile.
	Overrides map[string]fileOverride `toml:"overrides"`
}

type fileOverride struct {
	Inject string `toml:"inject"`
	Header string `toml:"header"`
}

// ParseConfig decodes and validates a config; path is used in errors and
// stored in Config.Path. Errors are *ConfigError values (several joined with
// errors.Join when there is more than one problem), each naming the file,
// line and key.
func ParseConfig(path string, data []byte) (*Config, error) {
	var fc fileConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// Unknown keys are reported with every other error in the file, so that one
	// run shows all there is to fix; any other decoding error stands alone.
	var errs []*ConfigError
	if err := dec.Decode(&fc); err != nil {
		var se *toml.StrictMissingError
		if !errors.As(err, &se) || len(se.Errors) == 0 {
			return nil, decodeError(path, err)
		}
		errs = unknownKeyErrors(path, se)
		fc = fileConfig{}
		if err := toml.Unmarshal(data, &fc); err != nil { // the strict pass would have said so first
			return nil, decodeError(path, err)
		}
	}
	// The document is valid TOML now, so the AST walk cannot fail.
	idx, err := indexKeys(data)
	if err != nil { // a key in the wrong case; the unknown keys found so far come with it
		err.File = path
		errs = append(errs, err)
		slices.SortStableFunc(errs, func(a, b *ConfigError) int { return cmp.Compare(lineOrMax(a.Line), lineOrMax(b.Line)) })
		return nil, joinConfigErrors(errs)
	}

	c := &Config{
		Path:           path,
		Listen:         cmp.Or(fc.Listen, DefaultListen),
		DefaultProfile: fc.DefaultProfile,
		UpstreamProxy:  fc.UpstreamProxy,
	}
	names := idx.profiles
	for name := range fc.Profiles { // cannot happen, but never drop a profile
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	badGateways := map[string]bool{}
	for _, name := range names {
		fp, ok := fc.Profiles[name]
		if !ok {
			continue
		}
		base := profileKey(name)
		p := &Profile{
			Name:         name,
			Issuer:       strings.TrimSuffix(fp.Issuer, "/"),
			ClientID:     fp.ClientID,
			ClientSecret: fp.ClientSecret,
			Scopes:       []string{"openid", "email"},
			Inject:       cmp.Or(TokenKind(fp.Inject), IDToken),
		}
		if fp.Scopes != nil {
			p.Scopes = slices.Clone(*fp.Scopes)
		}
		var perrs []*ConfigError
		p.Gateways, perrs = parsePatterns(fp.Gateways, base+".gateways")
		if len(perrs) > 0 {
			badGateways[name] = true
		}
		errs = append(errs, perrs...)
		p.PlainHTTP, perrs = parsePatterns(fp.PlainHTTP, base+".plain_http")
		errs = append(errs, perrs...)
		p.AllowedOrigins, perrs = parseOrigins(fp.AllowedOrigins, base+".allowed_origins")
		errs = append(errs, perrs...)
		p.Overrides, perrs = parseOverrides(fp.Overrides, name, idx.lines)
		errs = append(errs, perrs...)
		c.Profiles = append(c.Profiles, p)
	}
	if c.DefaultProfile == "" && len(c.Profiles) == 1 {
		c.DefaultProfile = c.Profiles[0].Name
	}
	errs = append(errs, c.validate(idx.lines, badGateways)...)
	if len(errs) > 0 {
		for _, e := range errs {
			e.File = path
			if e.Line == 0 {
				e.Line = idx.lineOf(e.Key)
			}
		}
		// File order, with errors that have no line last.
		slices.SortStableFunc(errs, func(a, b *ConfigError) int {
			return cmp.Compare(lineOrMax(a.Line), lineOrMax(b.Line))
		})
		return nil, joinConfigErrors(errs)
	}
	return c, nil
}

func lineOrMax(l int) int {
	if l <= 0 {
		return int(^uint(0) >> 1)
	}
	return l
}

func joinConfigErrors(errs []*ConfigError) error {
	if len(errs) == 1 {
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

func parsePatterns(ss []string, key string) ([]Pattern, []*ConfigError) {
	var out []Pattern
	var errs []*ConfigError
	for i, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			errs = append(errs, &ConfigError{Key: fmt.Sprintf("%s[%d]", key, i), Msg: err.Error()})
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// parseOverrides reads a profile's [profiles.NAME.overrides."PATTERN"] tables; which
// patterns and kinds are allowed is validate's to say. validate names an override by
// its pattern as normalised ("API.X." is "api.x"), so lines gets that key too, at the
// line of the table as written.
func parseOverrides(m map[string]fileOverride, profile string, lines map[string]int) (map[Pattern]Override, []*ConfigError) {
	if len(m) == 0 {
		return nil, nil
	}
	out := map[Pattern]Override{}
	written := map[Pattern]string{}
	var errs []*ConfigError
	for _, s := range slices.Sorted(maps.Keys(m)) {
		key := formatKey([]string{"profiles", profile, "overrides", s})
		p, err := ParsePattern(s)
		switch {
		case err != nil:
			errs = append(errs, &ConfigError{Key: key, Msg: err.Error()})
		case written[p] != "":
			errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf("%q and %q name the same gateway; keep one table", written[p], s)})
		default:
			h := m[s].Header
			if strings.EqualFold(h, HeaderAuthorization) || strings.EqualFold(h, HeaderProxyAuthorization) {
				h = textproto.CanonicalMIMEHeaderKey(h)
			}
			out[p] = Override{Inject: TokenKind(m[s].Inject), Header: h}
			written[p] = s
			if norm := formatKey([]string{"profiles", profile, "overrides", p.String()}); lines[norm] == 0 {
				lines[norm] = lines[key]
			}
		}
	}
	return out, errs
}

// parseOrigins reads allowed_origins: https://host[:port] with host a gateway-style
// pattern ("*." for subdomains), no path, query or user.
func parseOrigins(ss []string, key string) ([]Pattern, []*ConfigError) {
	var out []Pattern
	var errs []*ConfigError
	for i, s := range ss {
		bad := func(format string, a ...any) {
			errs = append(errs, &ConfigError{Key: fmt.Sprintf("%s[%d]", key, i), Msg: fmt.Sprintf(format, a...)})
		}
		scheme, rest, ok := strings.Cut(s, "://")
		switch {
		case !ok:
			bad("%q is not an origin: write it as https://host[:port]", s)
			continue
		case strings.EqualFold(scheme, "http"):
			bad("%q: only https:// pages may use the token (a plain-HTTP page can be changed on the way; pages on localhost may without being listed)", s)
			continue
		case !strings.EqualFold(scheme, "https"):
			bad("%q: an origin here is https://host[:port]", s)
			continue
		}
		rest = strings.TrimSuffix(rest, "/")
		if strings.ContainsAny(rest, "/?#@") {
			bad("%q: an origin has no path, query or user: write https://host[:port]", s)
			continue
		}
		p, err := ParsePattern(rest)
		if err != nil {
			bad("%q: %v", s, err)
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

// decodeError turns a go-toml error into ConfigErrors located by line.
func decodeError(path string, err error) error {
	var se *toml.StrictMissingError
	if errors.As(err, &se) && len(se.Errors) > 0 {
		return joinConfigErrors(unknownKeyErrors(path, se))
	}
	return asConfigError(path, err)
}

// unknownKeyErrors is one ConfigError per unknown key, with the keys allowed there.
func unknownKeyErrors(path string, se *toml.StrictMissingError) []*ConfigError {
	var errs []*ConfigError
	for i := range se.Errors {
		e := &se.Errors[i]
		line, _ := e.Position()
		key, msg := unknownKey(e.Key())
		errs = append(errs, &ConfigError{File: path, Line: line, Key: formatKey(key), Msg: msg})
	}
	return errs
}

// asConfigError locates a go-toml decoding error (a syntax error, a value of the
// wrong type) by line and key.
func asConfigError(path string, err error) *ConfigError {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := []string(de.Key())
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if rest, ok := strings.CutPrefix(msg, "cannot decode TOML "); ok {
			found, _, _ := strings.Cut(rest, " ")
			msg = fmt.Sprintf("expected %s, found a TOML %s", expectedType(key), found)
		}
		return &ConfigError{File: path, Line: line, Key: formatKey(key), Msg: msg}
	}
	return &ConfigError{File: path, Msg: err.Error()}
}

// unknownKey names the first part of an unknown key path that is unknown where it
// stands (go-toml reports the leaf: [profile.work] as "work"), and what to write.
func unknownKey(key []string) ([]string, string) {
	switch {
	case len(key) == 0:
		return key, "unknown key"
	case !slices.Contains(topKeys, key[0]):
		return key[:1], fmt.Sprintf("unknown key %q; %sthe top level holds %s and [profiles.NAME] tables",
			key[0], didYouMean(key[0], topKeys), strings.Join(topKeys[:3], ", "))
	case key[0] != "profiles" || len(key) < 3:
		return key, fmt.Sprintf("unknown key %q", key[len(key)-1])
	case !slices.Contains(profileKeys, key[2]):
		return key[:3], fmt.Sprintf("unknown key %q; %sa profile holds %s", key[2], didYouMean(key[2], profileKeys), strings.Join(profileKeys, ", "))
	case key[2] == "overrides" && len(key) > 5:
		// [profiles.w.overrides.api.team.example]: a dotted key, one table per part.
		gw := strings.Join(key[3:], ".")
		if last := key[len(key)-1]; last == "inject" || last == "header" {
			gw = strings.Join(key[3:len(key)-1], ".")
		}
		return key, fmt.Sprintf("a gateway goes in quotes: [%s]", formatKey([]string{key[0], key[1], key[2], gw}))
	case key[2] == "overrides" && len(key) == 5:
		return key, fmt.Sprintf("unknown key %q; an override holds inject and header", key[4])
	}
	return key, fmt.Sprintf("unknown key %q", key[len(key)-1])
}

// didYouMean is "did you mean "K"? " for the one key of keys within two edits of
// name (scope, clientid, plain-http), else "".
func didYouMean(name string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("did you mean %q? ", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes (keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func expectedType(key []string) string {
	last := ""
	if len(key) > 0 {
		last = key[len(key)-1]
	}
	switch {
	case len(key) == 2 && key[0] == "profiles":
		return "a table [" + formatKey(key) + "]"
	case last == "profiles":
		return "tables [profiles.NAME]"
	case last == "overrides":
		return `tables [profiles.NAME.overrides."GATEWAY"]`
	case len(key) == 4 && key[0] == "profiles" && key[2] == "overrides":
		return `a table [profiles.NAME.overrides."GATEWAY"] with inject or header`
	case last == "scopes" || last == "gateways" || last == "plain_http" || last == "allowed_origins":
		return `an array of strings like ["a", "b"]`
	}
	return "a string in quotes"
}

// keyIndex maps key paths of a TOML document to the line where each first
// appears, built from go-toml's parser so that validation errors found
// after decoding can still name a line.
type keyIndex struct {
	lines    map[string]int // "profiles.work.gateways[1]" -> line
	profiles []string       // profile names in file order
}

// lineOf returns the line of key, or of its nearest parent that has one.
func (x *keyIndex) lineOf(key string) int {
	for key != "" {
		if l, ok := x.lines[key]; ok {
			return l
		}
		if i := strings.LastIndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
			key = key[:i]
			continue
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 || strings.ContainsAny(key[i:], `"`) {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// indexKeys walks the document's expressions, tracking the current [table].
// It also refuses keys that differ from a known key only in case: go-toml
// matches struct fields case-insensitively, but TOML keys are
// case-sensitive and the README spells them in lowercase.
func indexKeys(data []byte) (*keyIndex, *ConfigError) {
	x := &keyIndex{lines: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			parts, line := keyParts(&p, it)
			table = parts
			if err := x.add(table, line); err != nil {
				return nil, err
			}
		case unstable.KeyValue:
			if err := x.addKeyValue(&p, table, e); err != nil {
				return nil, err
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	return x, nil
}

// keyParts returns the parts of a (dotted) key and the line of its first part.
func keyParts(p *unstable.Parser, it unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

func (x *keyIndex) addKeyValue(p *unstable.Parser, table []string, kv *unstable.Node) *ConfigError {
	rel, line := keyParts(p, kv.Key())
	parts := append(slices.Clone(table), rel...)
	if err := x.add(parts, line); err != nil {
		return err
	}
	v := kv.Value()
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				if err := x.addKeyValue(p, parts, c); err != nil {
					return err
				}
			}
		}
	case unstable.Array:
		base := formatKey(parts)
		it := v.Children()
		for i := 0; it.Next(); {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			l := line
			if c.Raw.Length > 0 {
				l = p.Shape(c.Raw).Start.Line
			}
			k := fmt.Sprintf("%s[%d]", base, i)
			if _, ok := x.lines[k]; !ok {
				x.lines[k] = l
			}
			i++
		}
	}
	return nil
}

// add records every prefix of parts at line (first sighting wins) and the
// order in which profiles appear.
func (x *keyIndex) add(parts []string, line int) *ConfigError {
	if err := checkKeyCase(parts); err != nil {
		err.Line = line
		return err
	}
	for i := 1; i <= len(parts); i++ {
		k := formatKey(parts[:i])
		if _, ok := x.lines[k]; !ok {
			x.lines[k] = line
			if i == 2 && parts[0] == "profiles" {
				x.profiles = append(x.profiles, parts[1])
			}
		}
	}
	return nil
}

func checkKeyCase(parts []string) *ConfigError {
	check := func(got string, known []string, n int) *ConfigError {
		if slices.Contains(known, got) {
			return nil
		}
		for _, k := range known {
			if strings.EqualFold(k, got) {
				return &ConfigError{Key: formatKey(parts[:n]), Msg: fmt.Sprintf("unknown key %q: keys are case-sensitive; write %q", got, k)}
			}
		}
		return nil
	}
	if len(parts) > 0 {
		if err := check(parts[0], topKeys, 1); err != nil {
			return err
		}
	}
	if len(parts) > 2 && parts[0] == "profiles" {
		if err := check(parts[2], profileKeys, 3); err != nil {
			return err
		}
	}
	if len(parts) > 4 && parts[0] == "profiles" && parts[2] == "overrides" {
		return check(parts[4], []string{"inject", "header"}, 5)
	}
	return nil
}

// formatKey renders a key path the way TOML writes it: bare parts joined
// with dots, other parts quoted.
func formatKey(parts []string) string {
	var b strings.Builder
	for i, s := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(s) {
			b.WriteString(s)
		} else {
			b.WriteString(tomlQuote(s))
		}
	}
	return b.String()
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func profileKey(name string) string { return formatKey([]string{"profiles", name}) }

// Validate runs the checks ParseConfig runs after decoding. On a Config
// built in memory the errors name keys but no lines. Empty Listen, Inject
// and nil Scopes stand for their defaults.
func (c *Config) Validate() error {
	errs := c.validate(nil, nil)
	for _, e := range errs {
		e.File = c.Path
	}
	if len(errs) == 0 {
		return nil
	}
	return joinConfigErrors(errs)
}

var profileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validate returns every problem found. lines (may be nil) locates other
// keys named in messages; skipCoverage names profiles whose gateways failed
// to parse, so plain_http is not reported as uncovered because of that.
func (c *Config) validate(lines map[string]int, skipCoverage map[string]bool) []*ConfigError {
	var errs []*ConfigError
	add := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	where := func(key string) string {
		if l, ok := lines[key]; ok {
			return fmt.Sprintf("%s, line %d", key, l)
		}
		return key
	}

	if c.Listen != "" {
		if msg := checkListen(c.Listen); msg != "" {
			add("listen", "%s", msg)
		}
	}
	if c.UpstreamProxy != "" {
		if msg := checkUpstreamProxy(c.UpstreamProxy); msg != "" {
			add("upstream_proxy", "%s", msg)
		} else if u, _ := url.Parse(c.UpstreamProxy); sameHostPort(hostPortOf(u), cmp.Or(c.Listen, DefaultListen)) {
			add("upstream_proxy", "upstream_proxy %q is gatepass's own listen address: every request would loop back into it; set your corporate proxy, or remove the key", u.Redacted())
		}
	}
	if len(c.Profiles) == 0 {
		add("profiles", "no profiles: add a [profiles.NAME] table with issuer, client_id and gateways (see the README, or run `gatepass demo`)")
	}
	names := make([]string, 0, len(c.Profiles))
	for _, p := range c.Profiles {
		names = append(names, p.Name)
	}
	if c.DefaultProfile != "" && !slices.Contains(names, c.DefaultProfile) {
		add("default_profile", "no profile named %q; profiles are: %s", c.DefaultProfile, strings.Join(names, ", "))
	}

	type owned struct {
		pat     Pattern
		profile string
		key     string
	}
	var seen []owned
	for i, p := range c.Profiles {
		base := profileKey(p.Name)
		if !profileNameRE.MatchString(p.Name) {
			add(base, "profile name %q must be 1 to 63 lowercase letters, digits, \"-\" or \"_\", starting with a letter or digit (it becomes the keychain account name)", p.Name)
		}
		if slices.Contains(names[:i], p.Name) {
			add(base, "profile %q is defined twice", p.Name)
		}
		if msg := checkIssuer(p.Issuer); msg != "" {
			add(base+".issuer", "%s", msg)
		}
		switch {
		case p.ClientID == "":
			add(base, "client_id is required: the OAuth client ID registered with the issuer")
		case strings.TrimSpace(p.ClientID) != p.ClientID:
			add(base+".client_id", "client_id has leading or trailing spaces")
		}
		if p.Scopes != nil {
			if !slices.Contains(p.Scopes, "openid") {
				add(base+".scopes", `scopes must include "openid": gatepass signs in with OpenID Connect`)
			}
			for j, s := range p.Scopes {
				if !validScope(s) {
					add(fmt.Sprintf("%s.scopes[%d]", base, j), "%q is not a valid scope: a scope is printable ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)", s)
				} else if slices.Contains(p.Scopes[:j], s) {
					add(fmt.Sprintf("%s.scopes[%d]", base, j), "scope %q is listed twice", s)
				}
			}
		}
		if p.Inject != "" && p.Inject != IDToken && p.Inject != AccessToken {
			add(base+".inject", "inject = %q: use %q or %q", p.Inject, IDToken, AccessToken)
		}
		for _, g := range slices.SortedFunc(maps.Keys(p.Overrides), comparePatterns) {
			key := formatKey([]string{"profiles", p.Name, "overrides", g.String()})
			if !slices.Contains(p.Gateways, g) {
				if cover := coveringGateway(p.Gateways, g); cover != nil {
					add(key, "%q is not one of the profile's gateways: add it to gateways (%q covers its hosts, but an override names a pattern listed there)", g.String(), cover.String())
				} else {
					add(key, "%q is not one of the profile's gateways: an override applies to a pattern listed in gateways", g.String())
				}
			}
			o := p.Overrides[g]
			if o == (Override{}) {
				add(key, "an override sets inject = %q or %q, or header = %q, for this gateway", IDToken, AccessToken, HeaderProxyAuthorization)
			}
			if o.Inject != "" && o.Inject != IDToken && o.Inject != AccessToken {
				add(key+".inject", "inject = %q: use %q or %q", o.Inject, IDToken, AccessToken)
			}
			if o.Header != "" && o.Header != HeaderAuthorization && o.Header != HeaderProxyAuthorization {
				add(key+".header", "header = %q: use %q (the default) or %q (Google IAP reads it when the app behind needs Authorization itself)",
					o.Header, HeaderAuthorization, HeaderProxyAuthorization)
			}
		}
		for j, g := range p.Gateways {
			key := fmt.Sprintf("%s.gateways[%d]", base, j)
			if msg := checkCanonical(g); msg != "" {
				add(key, "%s", msg)
				continue
			}
			for _, o := range seen {
				switch {
				case o.profile == p.Name && o.pat == g:
					add(key, "%q is listed twice (also %s); remove one", g.String(), where(o.key))
				case o.profile != p.Name && o.pat.Overlaps(g):
					add(key, "%q overlaps %q of profile %q (%s): a host can belong to only one profile", g.String(), o.pat.String(), o.profile, where(o.key))
				}
			}
			seen = append(seen, owned{g, p.Name, key})
		}
		for j, o := range p.AllowedOrigins {
			if msg := checkCanonical(o); msg != "" {
				add(fmt.Sprintf("%s.allowed_origins[%d]", base, j), "%s", msg)
			}
		}
		for j, h := range p.PlainHTTP {
			key := fmt.Sprintf("%s.plain_http[%d]", base, j)
			switch {
			case checkCanonical(h) != "":
				add(key, "%s", checkCanonical(h))
			case !isLoopbackPattern(h):
				add(key, "%q is not a loopback host: tokens travel over plain HTTP only to this machine (localhost, 127.0.0.1, [::1]); use https:// for %s", h.String(), h.String())
			case !skipCoverage[p.Name] && !coveredBy(h, p.Gateways):
				add(key, "%q is not one of this profile's gateways: add it to %s.gateways too", h.String(), base)
			}
		}
	}
	return errs
}

// checkCanonical reports a Pattern that ParsePattern would not produce (only
// possible for a Config built in memory).
func checkCanonical(p Pattern) string {
	q, err := ParsePattern(p.String())
	if err != nil {
		return err.Error()
	}
	if q != p {
		return fmt.Sprintf("pattern %+v is not in canonical form; build patterns with ParsePattern", p)
	}
	return ""
}

// coveredBy reports whether every host and port h matches is matched by one
// of gateways.
func coveredBy(h Pattern, gateways []Pattern) bool {
	ports := []string{h.Port}
	if h.Port == "" {
		ports = []string{"443", "80"}
	}
	for _, port := range ports {
		if !slices.ContainsFunc(gateways, func(g Pattern) bool { return g.Matches(h.Host, port) }) {
			return false
		}
	}
	return true
}

// validScope checks the RFC 6749 §3.3 scope-token syntax.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// CheckListen is the config's rule for a proxy address (the listen key), for an
// address given another way, such as `gatepass proxy --listen`.
func CheckListen(s string) error {
	if msg := checkListen(s); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// checkListen requires a loopback address with a port: the proxy hands out
// tokens, so it must not be reachable from other machines.
func checkListen(s string) string {
	const fix = `use a loopback address with a port, like "127.0.0.1:8787"`
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not HOST:PORT; %s", s, fix)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port %q is not a number from 1 to 65535; %s", s, port, fix)
	}
	if host == "" {
		return fmt.Sprintf("%q listens on every network interface, so other machines could use your tokens through the proxy; %s", s, fix)
	}
	if isLoopbackHost(host) {
		return ""
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		return fmt.Sprintf("%q listens on every network interface, so other machines could use your tokens through the proxy; %s", s, fix)
	}
	return fmt.Sprintf("%q is not a loopback address, so other machines could use your tokens through the proxy; %s", s, fix)
}

// checkIssuer applies OpenID Connect Core §2 (iss is an https URL without
// query or fragment), allowing http:// only on loopback hosts (local
// providers such as `gatepass demo`).
func checkIssuer(s string) string {
	if s == "" {
		return `issuer is required: the OpenID Connect issuer URL, like "https://accounts.google.com"`
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Sprintf("issuer %q contains spaces or control characters", s)
	}
	if strings.HasSuffix(s, "/") {
		return fmt.Sprintf("issuer %q: remove the extra trailing \"/\"", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("issuer %q is not a URL: %v", s, err)
	}
	switch {
	case u.Scheme == "" || u.Opaque != "" && u.Host == "":
		return fmt.Sprintf(`issuer %q must start with https://, like "https://%s"`, s, s)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Sprintf("issuer %q must use https://", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("issuer %q has no host", s)
	case u.User != nil:
		return fmt.Sprintf("issuer %q must not contain a user name or password", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Sprintf("issuer %q must not have a query or fragment (OpenID Connect Core §2)", s)
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		return fmt.Sprintf("issuer %q uses http://, which is only allowed on this machine (127.0.0.1, [::1], localhost); use https://", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("issuer %q: port %q is not a number from 1 to 65535", s, p)
		}
	}
	return ""
}

// hostPortOf is a proxy URL's host:port, with the scheme's default port.
func hostPortOf(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// checkUpstreamProxy never echoes a password that may sit in the URL.
func checkUpstreamProxy(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "upstream_proxy is not a URL; write it like \"http://proxy.example.com:3128\""
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("upstream_proxy %q must start with http:// or https://", u.Redacted())
	case u.Hostname() == "":
		return fmt.Sprintf("upstream_proxy %q has no host", u.Redacted())
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Sprintf("upstream_proxy %q must be just scheme://host:port", u.Redacted())
	}
	return ""
}

// Profile returns the named profile; "" means the default profile.
func (c *Config) Profile(name string) (*Profile, error) {
	names := make([]string, 0, len(c.Profiles))
	for _, p := range c.Profiles {
		names = append(names, p.Name)
	}
	if name == "" {
		name = c.DefaultProfile
		if name == "" && len(c.Profiles) == 1 {
			name = c.Profiles[0].Name
		}
		if name == "" {
			if len(names) == 0 {
				return nil, errors.New("no profiles configured: add a [profiles.NAME] table to the config (see the README)")
			}
			return nil, fmt.Errorf("no default profile: pass --profile NAME or set default_profile in the config (profiles: %s)", strings.Join(names, ", "))
		}
	}
	for _, p := range c.Profiles {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown profile %q: the config has %s", name, strings.Join(names, ", "))
}

// Lookup returns the profile whose gateways match host:port. host must be
// normalised (lowercase, no trailing dot, IPv6 without brackets) and port
// explicit. Validation guarantees at most one profile matches.
func (c *Config) Lookup(host, port string) (*Profile, bool) {
	for _, p := range c.Profiles {
		for _, g := range p.Gateways {
			if g.Matches(host, port) {
				return p, true
			}
		}
	}
	return nil, false
}

// GatewayToken is what host:port gets: the token kind and header its overrides
// (Overrides) set, else the profile's Inject in Authorization. Each field comes from
// the most specific matching override that sets it: a host over a "*." pattern, a
// longer domain over a shorter one, a port over none. So a header set for one host
// keeps the kind its wildcard's override chose.
func (p *Profile) GatewayToken(host, port string) Override {
	// One pass, no allocation: the proxy asks for every request. Two patterns that
	// match the same host:port are never equally specific, so map order does not
	// matter.
	var o Override
	var byInject, byHeader Pattern // where o's fields came from, when set
	for g, v := range p.Overrides {
		if !g.Matches(host, port) {
			continue
		}
		if v.Inject != "" && (o.Inject == "" || moreSpecific(g, byInject)) {
			byInject, o.Inject = g, v.Inject
		}
		if v.Header != "" && (o.Header == "" || moreSpecific(g, byHeader)) {
			byHeader, o.Header = g, v.Header
		}
	}
	return Override{Inject: cmp.Or(o.Inject, p.Inject, IDToken), Header: cmp.Or(o.Header, HeaderAuthorization)}
}

// coveringGateway is the first of gws that matches every host:port g does, or nil.
func coveringGateway(gws []Pattern, g Pattern) *Pattern {
	for _, c := range gws {
		host := g.Host
		if g.Wildcard {
			host = "x." + g.Host // g's hosts are subdomains of g.Host
			if !c.Wildcard {
				continue
			}
		}
		if c.Matches(host, cmp.Or(g.Port, "443")) && (g.Port != "" || c.Matches(host, "80")) {
			return &c
		}
	}
	return nil
}

// moreSpecific orders patterns that match the same host:port.
func moreSpecific(a, b Pattern) bool {
	if a.Wildcard != b.Wildcard {
		return !a.Wildcard
	}
	if len(a.Host) != len(b.Host) {
		return len(a.Host) > len(b.Host)
	}
	return a.Port != "" && b.Port == ""
}

// comparePatterns orders patterns by how they are written.
func comparePatterns(a, b Pattern) int { return strings.Compare(a.String(), b.String()) }

// IsGoogle reports whether the issuer is Google's, which needs
// access_type=offline and prompt=consent instead of the offline_access scope.
func (p *Profile) IsGoogle() bool {
	if _, ok := googleRulesIssuers.Load(p.Issuer); ok {
		return true
	}
	return p.Issuer == "https://accounts.google.com" || p.Issuer == "accounts.google.com"
}

// CheckClientSecret reports a Google profile without its client secret: Google's
// token endpoint refuses the code without it, even with PKCE (GOOGLE.md), so the
// sign-in would fail only after the consent. Other issuers may do without one.
func (p *Profile) CheckClientSecret() error {
	if p.IsGoogle() && p.ClientSecret == "" {
		return fmt.Errorf("profile %s: client_secret is missing: Google needs it even with PKCE; copy it from the OAuth client "+
			"(type Desktop app) in the Google Cloud console, APIs & Services > Credentials, into the config", p.Name)
	}
	return nil
}

// AllowsOrigin reports whether a page at https://host:port may use this profile's
// token (allowed_origins; host normalised as for Gateways).
func (p *Profile) AllowsOrigin(host, port string) bool {
	return slices.ContainsFunc(p.AllowedOrigins, func(q Pattern) bool { return q.Matches(host, port) })
}

// AllowsPlainHTTP reports whether host:port may receive this profile's token
// over plain HTTP.
func (p *Profile) AllowsPlainHTTP(host, port string) bool {
	return slices.ContainsFunc(p.PlainHTTP, func(q Pattern) bool { return q.Matches(host, port) })
}

// EncodeConfig writes c as TOML that ParseConfig reads back to an equal
// Config (for a Config whose defaults are filled in, as ParseConfig leaves
// them). It refuses strings that are not valid UTF-8, which TOML cannot hold.
func EncodeConfig(c *Config) ([]byte, error) {
	var b bytes.Buffer
	var bad []string
	str := func(key, v string) {
		if !utf8.ValidString(v) {
			bad = append(bad, key)
		}
		fmt.Fprintf(&b, "%s = %s\n", key, tomlQuote(v))
	}
	arr := func(key string, vs []string) {
		q := make([]string, len(vs))
		for i, v := range vs {
			if !utf8.ValidString(v) {
				bad = append(bad, key)
			}
			q[i] = tomlQuote(v)
		}
		fmt.Fprintf(&b, "%s = [%s]\n", key, strings.Join(q, ", "))
	}
	pats := func(key string, ps []Pattern) {
		ss := make([]string, len(ps))
		for i, p := range ps {
			ss[i] = p.String()
		}
		arr(key, ss)
	}

	b.WriteString("# gatepass configuration; see the README for every key.\n")
	if c.Listen != "" {
		str("listen", c.Listen)
	}
	if c.DefaultProfile != "" {
		str("default_profile", c.DefaultProfile)
	}
	if c.UpstreamProxy != "" {
		str("upstream_proxy", c.UpstreamProxy)
	}
	for _, p := range c.Profiles {
		if !utf8.ValidString(p.Name) {
			bad = append(bad, "profile name")
		}
		fmt.Fprintf(&b, "\n[%s]\n", profileKey(p.Name))
		str("issuer", p.Issuer)
		str("client_id", p.ClientID)
		if p.ClientSecret != "" {
			str("client_secret", p.ClientSecret)
		}
		if p.Scopes != nil {
			arr("scopes", p.Scopes)
		}
		pats("gateways", p.Gateways)
		if p.Inject != "" {
			str("inject", string(p.Inject))
		}
		if len(p.PlainHTTP) > 0 {
			pats("plain_http", p.PlainHTTP)
		}
		if len(p.AllowedOrigins) > 0 {
			origins := make([]string, len(p.AllowedOrigins))
			for i, o := range p.AllowedOrigins {
				origins[i] = "https://" + o.String()
			}
			arr("allowed_origins", origins)
		}
		// Sub-tables come after the profile's own keys.
		for _, g := range slices.SortedFunc(maps.Keys(p.Overrides), comparePatterns) {
			fmt.Fprintf(&b, "\n[%s]\n", formatKey([]string{"profiles", p.Name, "overrides", g.String()}))
			if o := p.Overrides[g]; o.Inject != "" {
				str("inject", string(o.Inject))
			}
			if o := p.Overrides[g]; o.Header != "" {
				str("header", o.Header)
			}
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("encode config: %s is not valid UTF-8", bad[0])
	}
	return b.Bytes(), nil
}

// tomlQuote writes s as a TOML basic string (TOML v1.0.0 "Basic strings").
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
