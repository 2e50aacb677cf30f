package broker

import (
	"fmt"
	"strings"
	"sync"
)

// FakeKeychain is an in-memory Keychain for tests in any package: map-backed,
// safe for concurrent use, with fault injection (FailNext) and a write
// counter. It is not a substitute for the real-keychain tests in
// keychain_test.go. The zero value is ready to use.
type FakeKeychain struct {
	mu      sync.Mutex         // guards everything below
	entries map[string]string  // service + "\x00" + account → secret
	fail    map[string][]error // op ("get", "set", "delete") → queued errors
	writes  int                // successful Set calls
	deletes int                // successful Delete calls
	gets    int                // Get calls
	block   chan struct{}      // Get waits on it while set (BlockGets)
}

// BlockGets makes every Get wait, as a keychain behind a prompt or a hung
// D-Bus does, until the returned release is called.
func (f *FakeKeychain) BlockGets() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.block = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.block = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

// Gets counts Get calls.
func (f *FakeKeychain) Gets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets
}

var _ Keychain = (*FakeKeychain)(nil)

func fakeKey(service, account string) string { return service + "\x00" + account }

func normOp(op string) string {
	op = strings.ToLower(op)
	switch op {
	case "get", "set", "delete":
		return op
	}
	panic(fmt.Sprintf("FakeKeychain: unknown op %q (want get, set or delete)", op))
}

// FailNext makes the next call of op ("get", "set" or "delete") return err
// without touching the entries. Calls queue: FailNext twice fails the next
// two calls.
func (f *FakeKeychain) FailNext(op string, err error) {
	op = normOp(op)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string][]error{}
	}
	f.fail[op] = append(f.fail[op], err)
}

// injected pops a queued error for op; f.mu must be held.
func (f *FakeKeychain) injected(op string) error {
	q := f.fail[op]
	if len(q) == 0 {
		return nil
	}
	f.fail[op] = q[1:]
	return q[0]
}

// Get returns the secret or ErrNotFound.
func (f *FakeKeychain) Get(service, account string) (string, error) {
	f.mu.Lock()
	f.gets++
	if ch := f.block; ch != nil {
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if err := f.injected("get"); err != nil {
		return "", err
	}
	v, ok := f.entries[fakeKey(service, account)]
	if !ok {
		return "", ErrNotFound
	}
	return v, nil
}

// Set creates or replaces the entry.
func (f *FakeKeychain) Set(service, account, secret string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("set"); err != nil {
		return err
	}
	if f.entries == nil {
		f.entries = map[string]string{}
	}
	f.entries[fakeKey(service, account)] = secret
	f.writes++
	return nil
}

// Delete removes the entry or returns ErrNotFound.
func (f *FakeKeychain) Delete(service, account string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("delete"); err != nil {
		return err
	}
	k := fakeKey(service, account)
	if _, ok := f.entries[k]; !ok {
		return ErrNotFound
	}
	delete(f.entries, k)
	f.deletes++
	return nil
}

// Writes counts successful Set calls.
func (f *FakeKeychain) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// Deletes counts successful Delete calls.
func (f *FakeKeychain) Deletes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deletes
}

// Peek returns the stored secret without counting as a call or consuming an
// injected failure.
func (f *FakeKeychain) Peek(service, account string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.entries[fakeKey(service, account)]
	return v, ok
}
