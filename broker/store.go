package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KeychainService is the keychain service name of every gatepass entry; the
// account is the profile name.
const KeychainService = "gatepass"

// MaxEntryBytes caps an encoded entry. Windows Credential Manager stores at
// most 2,560 bytes of secret and macOS about 3,000 bytes of service, account
// and secret together, so gatepass stays under both on every OS.
const MaxEntryBytes = 2500

// entryVersion is the only Entry.Version this build reads and writes.
const entryVersion = 1

// Entry is what gatepass keeps in the keychain for a profile: the refresh
// token and the small metadata needed to use it. Access and ID tokens are
// never stored. Field names are short to keep entries small.
type Entry struct {
	Version      int       `json:"v"` // 1
	RefreshToken string    `json:"rt"`
	Issuer       string    `json:"iss"`
	ClientID     string    `json:"aud"`
	Subject      string    `json:"sub"`
	Email        string    `json:"email,omitempty"`
	Scopes       []string  `json:"scp,omitempty"`
	SavedAt      time.Time `json:"at"`
	// Refused is why the issuer refused this refresh token (invalid_grant), kept
	// so that every later process (status, token, a new agent) says "sign-in
	// required" without spending the dead token again. A new sign-in replaces
	// the entry and clears it.
	Refused string `json:"refused,omitempty"`
}

// String describes the entry with the refresh token redacted, so an Entry
// printed with %v never leaks it.
func (e Entry) String() string {
	return fmt.Sprintf("{v%d rt:%s iss:%s aud:%s sub:%s email:%s scp:%v at:%s refused:%q}",
		e.Version, Redacted(e.RefreshToken), e.Issuer, e.ClientID, e.Subject, e.Email, e.Scopes,
		e.SavedAt.Format(time.RFC3339), e.Refused)
}

// GoString is String, for %#v.
func (e Entry) GoString() string { return "broker.Entry" + e.String() }

// ErrCorruptEntry matches (errors.Is) a *CorruptEntryError.
var ErrCorruptEntry = errors.New("corrupt keychain entry")

// CorruptEntryError means the keychain holds something for the profile that
// this gatepass cannot use. Its message never quotes the entry.
type CorruptEntryError struct {
	Profile string
	Reason  string // what is wrong, in gatepass's words
}

func (e *CorruptEntryError) Error() string {
	return fmt.Sprintf("keychain entry for profile %q is unusable (%s); run `gatepass logout --profile %s` then `gatepass login --profile %s`",
		e.Profile, e.Reason, e.Profile, e.Profile)
}

// Is makes errors.Is(err, ErrCorruptEntry) true.
func (e *CorruptEntryError) Is(target error) bool { return target == ErrCorruptEntry }

// ErrEntryTooBig matches (errors.Is) the error Save returns for an entry over
// MaxEntryBytes.
var ErrEntryTooBig = errors.New("keychain entry too big")

// EntryTooBigError is returned by Save, before the keychain is touched, when
// the encoded entry exceeds MaxEntryBytes.
type EntryTooBigError struct {
	Profile string
	Size    int
}

func (e *EntryTooBigError) Error() string {
	return fmt.Sprintf("sign-in for profile %q needs a %d-byte keychain entry, over the %d-byte limit of OS keychains; nothing was saved: request fewer scopes for the profile, or report the issuer's unusually large refresh token",
		e.Profile, e.Size, MaxEntryBytes)
}

// Is makes errors.Is(err, ErrEntryTooBig) true.
func (e *EntryTooBigError) Is(target error) bool { return target == ErrEntryTooBig }

// Store reads and writes profile entries in a Keychain.
type Store struct {
	Keychain Keychain
}

// Load returns the profile's entry. It returns ErrNotFound (unwrapped) when
// there is none, a *CorruptEntryError when the entry cannot be used, and
// keychain errors (e.g. *KeychainError) as they are.
func (s Store) Load(profile string) (*Entry, error) {
	raw, err := s.Keychain.Get(KeychainService, profile)
	if err != nil {
		return nil, err
	}
	return decodeEntry(profile, raw)
}

func decodeEntry(profile, raw string) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		// The json error text may quote input; keep it out of the message.
		return nil, &CorruptEntryError{Profile: profile, Reason: "not a gatepass entry"}
	}
	if e.Version != entryVersion {
		return nil, &CorruptEntryError{Profile: profile, Reason: fmt.Sprintf("format version %d, this gatepass reads version %d", e.Version, entryVersion)}
	}
	if err := validateEntry(&e); err != nil {
		return nil, &CorruptEntryError{Profile: profile, Reason: err.Error()}
	}
	return &e, nil
}

func validateEntry(e *Entry) error {
	switch {
	case e.RefreshToken == "":
		return errors.New("no refresh token")
	case e.Issuer == "":
		return errors.New("no issuer")
	case e.ClientID == "":
		return errors.New("no client ID")
	}
	return nil
}

// encodeEntry returns the compact JSON form with Version set and SavedAt in
// UTC, truncated to the second.
func encodeEntry(e *Entry) ([]byte, error) {
	c := *e
	if c.Version == 0 {
		c.Version = entryVersion
	}
	if c.Version != entryVersion {
		return nil, fmt.Errorf("cannot save entry format version %d, only %d", c.Version, entryVersion)
	}
	if err := validateEntry(&c); err != nil {
		return nil, fmt.Errorf("cannot save sign-in: %w", err)
	}
	if c.SavedAt.IsZero() {
		c.SavedAt = time.Now()
	}
	c.SavedAt = c.SavedAt.UTC().Truncate(time.Second)
	return json.Marshal(&c)
}

// Save validates and writes the profile's entry with a single Keychain.Set,
// which updates an existing entry in place (never delete-and-re-add, so the
// entry keeps its keychain access rules). An invalid or oversized entry is
// refused before the keychain is touched, so nothing is half-written. A zero
// SavedAt is set to now; SavedAt is stored in UTC to the second.
func (s Store) Save(profile string, e *Entry) error {
	if profile == "" {
		return errors.New("cannot save sign-in: empty profile name")
	}
	if e == nil {
		return errors.New("cannot save sign-in: nil entry")
	}
	b, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("profile %q: %w", profile, err)
	}
	if len(b) > MaxEntryBytes {
		return &EntryTooBigError{Profile: profile, Size: len(b)}
	}
	return s.Keychain.Set(KeychainService, profile, string(b))
}

// Delete removes the profile's entry. It returns ErrNotFound when there was
// none, so callers can say "was not signed in".
func (s Store) Delete(profile string) error {
	return s.Keychain.Delete(KeychainService, profile)
}
