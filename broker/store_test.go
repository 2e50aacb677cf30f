package broker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sampleEntry() *Entry {
	return &Entry{
		RefreshToken: "1//0gRefreshTokenValue-abcdefghijklmnopqrstuvwxyz0123456789",
		Issuer:       "https://accounts.google.com",
		ClientID:     "1234-abc.apps.googleusercontent.com",
		Subject:      "110169484474386276334",
		Email:        "ada@example.com",
		Scopes:       []string{"openid", "email"},
		SavedAt:      time.Date(2025, 3, 1, 12, 30, 45, 0, time.UTC),
	}
}

func TestStoreRoundTrip(t *testing.T) {
	tests := map[string]struct {
		in   func() *Entry
		want func() *Entry
	}{
		"full entry": {
			in:   sampleEntry,
			want: func() *Entry { e := sampleEntry(); e.Version = 1; return e },
		},
		"minimal entry, no email or scopes": {
			in: func() *Entry {
				return &Entry{RefreshToken: "rt-123456789", Issuer: "http://127.0.0.1:5556", ClientID: "demo",
					SavedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			},
			want: func() *Entry {
				return &Entry{Version: 1, RefreshToken: "rt-123456789", Issuer: "http://127.0.0.1:5556", ClientID: "demo",
					SavedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			},
		},
		"SavedAt stored in UTC to the second": {
			in: func() *Entry {
				e := sampleEntry()
				e.SavedAt = time.Date(2025, 3, 1, 14, 30, 45, 999_000_000, time.FixedZone("CEST", 2*3600))
				return e
			},
			want: func() *Entry { e := sampleEntry(); e.Version = 1; return e },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &FakeKeychain{}
			s := Store{Keychain: kc}
			if err := s.Save("work", tc.in()); err != nil {
				t.Fatalf("Save: %v", err)
			}
			got, err := s.Load("work")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tc.want(), got); diff != "" {
				t.Errorf("Load after Save (-want +got):\n%s", diff)
			}
			raw, _ := kc.Peek(KeychainService, "work")
			if strings.ContainsAny(raw, "\n\t") || strings.Contains(raw, ": ") {
				t.Errorf("entry is not compact JSON: %q", raw)
			}
			if kc.Writes() != 1 {
				t.Errorf("Writes = %d, want exactly 1 Set", kc.Writes())
			}
		})
	}
}

func TestStoreSaveDefaultsSavedAt(t *testing.T) {
	kc := &FakeKeychain{}
	s := Store{Keychain: kc}
	e := sampleEntry()
	e.SavedAt = time.Time{}
	before := time.Now().Add(-time.Second)
	if err := s.Save("work", e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("work")
	if err != nil {
		t.Fatal(err)
	}
	if got.SavedAt.Before(before) || got.SavedAt.After(time.Now()) {
		t.Errorf("SavedAt = %v, want about now", got.SavedAt)
	}
	if !e.SavedAt.IsZero() {
		t.Errorf("Save modified the caller's entry: SavedAt = %v", e.SavedAt)
	}
}

func TestStoreDecodeTable(t *testing.T) {
	tests := map[string]struct {
		raw        string
		wantReason string // substring of the CorruptEntryError reason; "" = valid
	}{
		"valid v1":                {raw: `{"v":1,"rt":"r-0123456789","iss":"https://i.example","aud":"c","sub":"s","at":"2025-01-01T00:00:00Z"}`},
		"valid v1, unknown field": {raw: `{"v":1,"rt":"r-0123456789","iss":"https://i.example","aud":"c","sub":"s","at":"2025-01-01T00:00:00Z","future":true}`},
		"garbage":                 {raw: "\x00\x01not json at all", wantReason: "not a gatepass entry"},
		"empty":                   {raw: "", wantReason: "not a gatepass entry"},
		"a bare refresh token":    {raw: "1//0gSECRETSECRETSECRET", wantReason: "not a gatepass entry"},
		"json array":              {raw: `["rt"]`, wantReason: "not a gatepass entry"},
		"truncated":               {raw: `{"v":1,"rt":"r-0123456789","iss":"https://i.exa`, wantReason: "not a gatepass entry"},
		"wrong type":              {raw: `{"v":"1","rt":"r","iss":"i","aud":"c"}`, wantReason: "not a gatepass entry"},
		"version 0 (missing)":     {raw: `{"rt":"r-0123456789","iss":"i","aud":"c"}`, wantReason: "format version 0"},
		"version 2":               {raw: `{"v":2,"rt":"r-0123456789","iss":"i","aud":"c"}`, wantReason: "format version 2"},
		"no refresh token":        {raw: `{"v":1,"iss":"i","aud":"c"}`, wantReason: "no refresh token"},
		"empty refresh token":     {raw: `{"v":1,"rt":"","iss":"i","aud":"c"}`, wantReason: "no refresh token"},
		"no issuer":               {raw: `{"v":1,"rt":"r-0123456789","aud":"c"}`, wantReason: "no issuer"},
		"no client id":            {raw: `{"v":1,"rt":"r-0123456789","iss":"i"}`, wantReason: "no client ID"},
		"bad time":                {raw: `{"v":1,"rt":"r-0123456789","iss":"i","aud":"c","at":"yesterday"}`, wantReason: "not a gatepass entry"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &FakeKeychain{}
			if err := kc.Set(KeychainService, "p1", tc.raw); err != nil {
				t.Fatal(err)
			}
			got, err := Store{Keychain: kc}.Load("p1")
			if tc.wantReason == "" {
				if err != nil || got == nil {
					t.Fatalf("Load = %v, %v; want an entry", got, err)
				}
				return
			}
			if got != nil {
				t.Errorf("Load returned an entry %v for a corrupt one", got)
			}
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("Load err = %v, want ErrCorruptEntry", err)
			}
			var ce *CorruptEntryError
			if !errors.As(err, &ce) || ce.Profile != "p1" {
				t.Fatalf("err = %#v, want *CorruptEntryError for p1", err)
			}
			msg := err.Error()
			for _, want := range []string{tc.wantReason, "gatepass logout --profile p1", "gatepass login --profile p1"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
			if strings.Contains(msg, "SECRET") || strings.Contains(msg, "r-0123456789") {
				t.Errorf("message leaks the stored value: %q", msg)
			}
		})
	}
}

func TestStoreSaveValidation(t *testing.T) {
	tests := map[string]struct {
		profile string
		mutate  func(*Entry) *Entry
		want    string
	}{
		"no refresh token": {"work", func(e *Entry) *Entry { e.RefreshToken = ""; return e }, "no refresh token"},
		"no issuer":        {"work", func(e *Entry) *Entry { e.Issuer = ""; return e }, "no issuer"},
		"no client id":     {"work", func(e *Entry) *Entry { e.ClientID = ""; return e }, "no client ID"},
		"future version":   {"work", func(e *Entry) *Entry { e.Version = 7; return e }, "version 7"},
		"nil entry":        {"work", func(*Entry) *Entry { return nil }, "nil entry"},
		"empty profile":    {"", func(e *Entry) *Entry { return e }, "empty profile"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &FakeKeychain{}
			err := Store{Keychain: kc}.Save(tc.profile, tc.mutate(sampleEntry()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Save err = %v, want one mentioning %q", err, tc.want)
			}
			if kc.Writes() != 0 {
				t.Errorf("keychain written %d times for an invalid entry", kc.Writes())
			}
		})
	}
}

func TestStoreSizeLimit(t *testing.T) {
	base := sampleEntry()
	b, err := encodeEntry(base)
	if err != nil {
		t.Fatal(err)
	}
	room := MaxEntryBytes - len(b) // extra refresh-token bytes that still fit
	tests := map[string]struct {
		extra   int
		wantErr bool
	}{
		"exactly at the limit": {extra: room},
		"one byte over":        {extra: room + 1, wantErr: true},
		"far over":             {extra: 10 * MaxEntryBytes, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kc := &FakeKeychain{}
			s := Store{Keychain: kc}
			old := sampleEntry()
			old.RefreshToken = "previous-refresh-token"
			if err := s.Save("work", old); err != nil {
				t.Fatal(err)
			}
			e := sampleEntry()
			e.RefreshToken += strings.Repeat("x", tc.extra)
			err := s.Save("work", e)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Save at %d bytes: %v", MaxEntryBytes, err)
				}
				raw, _ := kc.Peek(KeychainService, "work")
				if len(raw) != MaxEntryBytes {
					t.Errorf("stored %d bytes, want exactly %d", len(raw), MaxEntryBytes)
				}
				return
			}
			if !errors.Is(err, ErrEntryTooBig) {
				t.Fatalf("Save err = %v, want ErrEntryTooBig", err)
			}
			var tb *EntryTooBigError
			if !errors.As(err, &tb) || tb.Size <= MaxEntryBytes || tb.Profile != "work" {
				t.Errorf("err = %#v, want size > %d for profile work", err, MaxEntryBytes)
			}
			for _, want := range []string{"work", fmt.Sprint(MaxEntryBytes), "nothing was saved"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "xxxx") {
				t.Errorf("message leaks the token: %q", err)
			}
			if kc.Writes() != 1 {
				t.Errorf("Writes = %d, want 1 (only the earlier Save)", kc.Writes())
			}
			got, err := s.Load("work")
			if err != nil || got.RefreshToken != "previous-refresh-token" {
				t.Errorf("after refused Save, Load = %v, %v; want the previous entry", got, err)
			}
		})
	}
}

func TestStoreNeverHalfWritten(t *testing.T) {
	kc := &FakeKeychain{}
	s := Store{Keychain: kc}
	old := sampleEntry()
	old.RefreshToken = "rt-old-0123456789"
	if err := s.Save("work", old); err != nil {
		t.Fatal(err)
	}
	boom := &KeychainError{Op: "write", Account: "work", Kind: KeychainLocked}
	kc.FailNext("set", boom)
	e := sampleEntry()
	e.RefreshToken = "rt-new-0123456789"
	err := s.Save("work", e)
	if !errors.Is(err, boom) {
		t.Fatalf("Save err = %v, want the keychain's error", err)
	}
	got, err := s.Load("work")
	if err != nil {
		t.Fatalf("Load after failed Save: %v", err)
	}
	if got.RefreshToken != "rt-old-0123456789" {
		t.Errorf("after failed Save the entry holds %s, want the previous token", Redacted(got.RefreshToken))
	}
	if kc.Deletes() != 0 {
		t.Errorf("Save deleted the entry %d times; it must update in place", kc.Deletes())
	}
	// The failure was one-shot: the retry succeeds with one more Set.
	if err := s.Save("work", e); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got, _ := s.Load("work"); got.RefreshToken != "rt-new-0123456789" || kc.Writes() != 2 {
		t.Errorf("after retry: token %s, writes %d", Redacted(got.RefreshToken), kc.Writes())
	}
}

func TestStoreNotFoundAndDelete(t *testing.T) {
	kc := &FakeKeychain{}
	s := Store{Keychain: kc}
	if _, err := s.Load("none"); err != ErrNotFound {
		t.Errorf("Load of missing profile = %v, want ErrNotFound itself", err)
	}
	if err := s.Delete("none"); err != ErrNotFound {
		t.Errorf("Delete of missing profile = %v, want ErrNotFound itself", err)
	}
	if err := s.Save("a", sampleEntry()); err != nil {
		t.Fatal(err)
	}
	if err := s.Save("b", sampleEntry()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Load("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Load("b"); err != nil {
		t.Errorf("Delete of a removed b too: %v", err)
	}
	locked := &KeychainError{Op: "read", Account: "b", Kind: KeychainLocked}
	kc.FailNext("get", locked)
	if _, err := s.Load("b"); !errors.Is(err, locked) {
		t.Errorf("Load with a locked keychain = %v, want the keychain error passed through", err)
	}
}

func TestEntryFormattingRedactsToken(t *testing.T) {
	e := sampleEntry()
	for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%v", *e), fmt.Sprintf("%+v", *e), fmt.Sprintf("%#v", *e), fmt.Sprintf("%s", e)} {
		if strings.Contains(s, "RefreshTokenValue") {
			t.Errorf("formatted entry leaks the refresh token: %s", s)
		}
		if !strings.Contains(s, "ada@example.com") {
			t.Errorf("formatted entry lost metadata: %s", s)
		}
	}
}

func TestFakeKeychainFailNextAndConcurrency(t *testing.T) {
	kc := &FakeKeychain{}
	injected := errors.New("injected")
	kc.FailNext("Get", injected)
	kc.FailNext("get", ErrNotFound)
	if err := kc.Set("s", "a", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Get("s", "a"); err != injected {
		t.Errorf("first Get = %v, want injected", err)
	}
	if _, err := kc.Get("s", "a"); err != ErrNotFound {
		t.Errorf("second Get = %v, want the second injected error", err)
	}
	if v, err := kc.Get("s", "a"); v != "v" || err != nil {
		t.Errorf("third Get = %q, %v; want v", v, err)
	}
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				acct := fmt.Sprintf("a%d-%d", i, j)
				_ = kc.Set("s", acct, "x")
				_, _ = kc.Get("s", acct)
				_ = kc.Delete("s", acct)
			}
		}()
	}
	for range 8 {
		<-done
	}
	if kc.Writes() != 1+8*50 || kc.Deletes() != 8*50 {
		t.Errorf("Writes = %d, Deletes = %d; want %d, %d", kc.Writes(), kc.Deletes(), 1+8*50, 8*50)
	}
	defer func() {
		if recover() == nil {
			t.Error("FailNext with an unknown op did not panic")
		}
	}()
	kc.FailNext("sett", injected)
}
