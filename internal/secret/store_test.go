package secret_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/secret"
)

// memStore is an in-memory collector store that also implements
// secret.RawKeyStore. It keeps values exactly as written, so tests can see
// what a real store would hold.
type memStore struct {
	mu   sync.Mutex
	rows map[string]collector.Collector
	fns  []func()
	// beforeReplace, when set, runs at the start of ReplacePostInputsKey, so
	// a test can change a row between Rotate's read and its replacement.
	beforeReplace func(m *memStore, userID, appID, id string)
}

var (
	_ collector.Store    = (*memStore)(nil)
	_ secret.RawKeyStore = (*memStore)(nil)
)

func newMemStore() *memStore { return &memStore{rows: map[string]collector.Collector{}} }

func rowKey(userID, appID, id string) string { return userID + "\x00" + appID + "\x00" + id }

func (m *memStore) InsertCollector(_ context.Context, c collector.Collector) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rowKey(c.UserID, c.AppID, c.ID)
	if _, ok := m.rows[k]; ok {
		return collector.ErrAlreadyExists
	}
	c.Version = 1
	m.rows[k] = c
	return nil
}

func (m *memStore) UpdateCollector(_ context.Context, c collector.Collector) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rowKey(c.UserID, c.AppID, c.ID)
	old, ok := m.rows[k]
	if !ok {
		return collector.ErrNotFound
	}
	c.Version = old.Version + 1
	m.rows[k] = c
	return nil
}

func (m *memStore) GetCollector(_ context.Context, userID, appID, id string) (collector.Collector, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.rows[rowKey(userID, appID, id)]
	if !ok {
		return collector.Collector{}, collector.ErrNotFound
	}
	return c, nil
}

func (m *memStore) sorted() []collector.Collector {
	out := make([]collector.Collector, 0, len(m.rows))
	for _, c := range m.rows {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b collector.Collector) int {
		return strings.Compare(rowKey(a.UserID, a.AppID, a.ID), rowKey(b.UserID, b.AppID, b.ID))
	})
	return out
}

func (m *memStore) ListCollectors(_ context.Context, userID, appID string, offset, limit int) ([]collector.Collector, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []collector.Collector
	for _, c := range m.sorted() {
		if c.UserID == userID && c.AppID == appID {
			out = append(out, c)
		}
	}
	out = out[min(offset, len(out)):]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memStore) DeleteCollector(_ context.Context, userID, appID, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rowKey(userID, appID, id)
	if _, ok := m.rows[k]; !ok {
		return collector.ErrNotFound
	}
	delete(m.rows, k)
	return nil
}

func (m *memStore) DeleteAllCollectors(_ context.Context, userID, appID string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, c := range m.rows {
		if c.UserID == userID && c.AppID == appID {
			delete(m.rows, k)
			n++
		}
	}
	return n, nil
}

func (m *memStore) MatchCollectors(_ context.Context, callerUserID string, model collector.ModelRef) ([]collector.Collector, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []collector.Collector
	for _, c := range m.sorted() {
		callerOK := c.CallerUserID == "" || c.CallerUserID == callerUserID
		modelOK := model.ModelID == "" || (c.Model.UserID == model.UserID && c.Model.AppID == model.AppID && c.Model.ModelID == model.ModelID)
		if !c.Paused && callerOK && modelOK {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memStore) OnChange(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fns = append(m.fns, fn)
}

func (m *memStore) ListAllCollectors(_ context.Context, afterUserID, afterAppID, afterID string, limit int) ([]collector.Collector, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	after := rowKey(afterUserID, afterAppID, afterID)
	var out []collector.Collector
	for _, c := range m.sorted() {
		if rowKey(c.UserID, c.AppID, c.ID) > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memStore) ReplacePostInputsKey(_ context.Context, userID, appID, id, oldValue, newValue string) (bool, error) {
	if m.beforeReplace != nil {
		m.beforeReplace(m, userID, appID, id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rowKey(userID, appID, id)
	c, ok := m.rows[k]
	if !ok || c.PostInputsKey != oldValue {
		return false, nil
	}
	c.PostInputsKey = newValue
	m.rows[k] = c
	return true, nil
}

// raw returns the stored value of one collector's key.
func (m *memStore) raw(t *testing.T, id string) string {
	t.Helper()
	c, err := m.GetCollector(context.Background(), "alice", "dest", id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return c.PostInputsKey
}

func newCollector(id, key string) collector.Collector {
	return collector.Collector{
		UserID: "alice", AppID: "dest", ID: id,
		Model:         collector.ModelRef{UserID: "clarifai", AppID: "main", ModelID: "general"},
		PostInputsKey: key,
		RandomSample:  0.5,
	}
}

func TestEncryptingStore_StoresCiphertext(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), nil)

	if err := s.InsertCollector(ctx, newCollector("c1", plaintextKey)); err != nil {
		t.Fatal(err)
	}
	stored := inner.raw(t, "c1")
	if !strings.HasPrefix(stored, "enc:v1:k1:") || strings.Contains(stored, plaintextKey) {
		t.Errorf("the wrapped store holds %q, want ciphertext under k1", stored)
	}

	got, err := s.GetCollector(ctx, "alice", "dest", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.PostInputsKey != plaintextKey {
		t.Errorf("GetCollector key = %q, want the plaintext", got.PostInputsKey)
	}
	list, err := s.ListCollectors(ctx, "alice", "dest", 0, 10)
	if err != nil || len(list) != 1 || list[0].PostInputsKey != plaintextKey {
		t.Errorf("ListCollectors = %v, %v; want one collector with the plaintext key", list, err)
	}
	match, err := s.MatchCollectors(ctx, "bob", collector.ModelRef{UserID: "clarifai", AppID: "main", ModelID: "general"})
	if err != nil || len(match) != 1 || match[0].PostInputsKey != plaintextKey {
		t.Errorf("MatchCollectors = %v, %v; want one collector with the plaintext key", match, err)
	}
	if inner.raw(t, "c1") != stored {
		t.Errorf("a read changed the stored value")
	}

	updated := got
	updated.PostInputsKey = plaintextKey + "-2"
	if err := s.UpdateCollector(ctx, updated); err != nil {
		t.Fatal(err)
	}
	stored = inner.raw(t, "c1")
	if !strings.HasPrefix(stored, "enc:v1:k1:") || strings.Contains(stored, plaintextKey) {
		t.Errorf("after update the wrapped store holds %q, want ciphertext", stored)
	}
	got, _ = s.GetCollector(ctx, "alice", "dest", "c1")
	if got.PostInputsKey != plaintextKey+"-2" {
		t.Errorf("key after update = %q, want the new plaintext", got.PostInputsKey)
	}
}

func TestEncryptingStore_EmptyKeyStaysEmpty(t *testing.T) {
	inner := newMemStore()
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), nil)
	if err := s.InsertCollector(context.Background(), newCollector("c1", "")); err != nil {
		t.Fatal(err)
	}
	if v := inner.raw(t, "c1"); v != "" {
		t.Errorf("an empty key is stored as %q, want empty", v)
	}
}

func TestEncryptingStore_DecryptErrorNamesCollector(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	other := requireKeyring(t, fixedKey("gone", 9))
	foreign := other.Encrypt(plaintextKey, "whatever")
	c := newCollector("c-broken", foreign)
	if err := inner.InsertCollector(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), nil)

	_, err := s.GetCollector(ctx, "alice", "dest", "c-broken")
	if !errors.Is(err, secret.ErrUnknownKey) {
		t.Fatalf("GetCollector error = %v, want ErrUnknownKey", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"c-broken"`) {
		t.Errorf("error %q does not name the collector", msg)
	}
	if strings.Contains(msg, foreign) || strings.Contains(msg, strings.TrimPrefix(foreign, "enc:v1:gone:")) {
		t.Errorf("error %q quotes the ciphertext", msg)
	}

	if _, err := s.ListCollectors(ctx, "alice", "dest", 0, 0); !errors.Is(err, secret.ErrUnknownKey) {
		t.Errorf("ListCollectors error = %v, want ErrUnknownKey", err)
	}
	if _, err := s.MatchCollectors(ctx, "", collector.ModelRef{}); !errors.Is(err, secret.ErrUnknownKey) {
		t.Errorf("MatchCollectors error = %v, want ErrUnknownKey", err)
	}
}

func TestEncryptingStore_CopiedCiphertextFails(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), nil)
	if err := s.InsertCollector(ctx, newCollector("victim", plaintextKey)); err != nil {
		t.Fatal(err)
	}

	// Someone with write access to the database copies the victim's value
	// into another collector: it must not decrypt there.
	thief := newCollector("thief", inner.raw(t, "victim"))
	if err := inner.InsertCollector(ctx, thief); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCollector(ctx, "alice", "dest", "thief"); !errors.Is(err, secret.ErrDecrypt) {
		t.Errorf("GetCollector of a copied value: error = %v, want ErrDecrypt", err)
	}
}

func TestEncryptingStore_PlaintextWarnsOnce(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	for _, id := range []string{"legacy1", "legacy2"} {
		if err := inner.InsertCollector(ctx, newCollector(id, plaintextKey)); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), slog.New(slog.NewTextHandler(&logs, nil)))

	list, err := s.ListCollectors(ctx, "alice", "dest", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.PostInputsKey != plaintextKey {
			t.Errorf("legacy key of %s = %q, want it unchanged", c.ID, c.PostInputsKey)
		}
	}
	if _, err := s.GetCollector(ctx, "alice", "dest", "legacy1"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "stored unencrypted"); n != 1 {
		t.Errorf("logged %d warnings, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), plaintextKey) {
		t.Errorf("the warning contains the key")
	}
}

func TestEncryptingStore_OnChangeForwarded(t *testing.T) {
	inner := newMemStore()
	s := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("k1", 1)), nil)
	called := false
	s.OnChange(func() { called = true })
	for _, fn := range inner.fns {
		fn()
	}
	if !called {
		t.Errorf("OnChange did not register with the wrapped store")
	}
}

func TestRotate_ReencryptsWithPrimary(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	oldKeys := requireKeyring(t, fixedKey("old", 1))
	oldStore := secret.NewEncryptingStore(inner, oldKeys, nil)

	// More than two pages of collectors under the old key, one stored
	// before encryption existed and one without a key.
	const n = 1201
	for i := range n {
		if err := oldStore.InsertCollector(ctx, newCollector(fmt.Sprintf("c%04d", i), fmt.Sprintf("%s-%d", plaintextKey, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := inner.InsertCollector(ctx, newCollector("legacy", plaintextKey)); err != nil {
		t.Fatal(err)
	}
	if err := inner.InsertCollector(ctx, newCollector("nokey", "")); err != nil {
		t.Fatal(err)
	}

	rotated := requireKeyring(t, fixedKey("new", 2), fixedKey("old", 1))
	res, err := secret.Rotate(ctx, inner, rotated)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if res.Scanned != n+2 || res.Rotated != n+1 || res.Failed != 0 {
		t.Errorf("Rotate result = %+v, want scanned %d, rotated %d, failed 0", res, n+2, n+1)
	}

	// With the old key removed, every key still decrypts.
	newOnly := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("new", 2)), nil)
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		if v := inner.raw(t, id); !strings.HasPrefix(v, "enc:v1:new:") {
			t.Fatalf("%s is stored as %q, want under key new", id, v)
		}
		c, err := newOnly.GetCollector(ctx, "alice", "dest", id)
		if err != nil {
			t.Fatalf("decrypt %s with the new key alone: %v", id, err)
		}
		if want := fmt.Sprintf("%s-%d", plaintextKey, i); c.PostInputsKey != want {
			t.Fatalf("%s key = %q, want %q", id, c.PostInputsKey, want)
		}
	}
	if v := inner.raw(t, "legacy"); !strings.HasPrefix(v, "enc:v1:new:") {
		t.Errorf("the unencrypted key was not encrypted: %q", v)
	}
	if v := inner.raw(t, "nokey"); v != "" {
		t.Errorf("an empty key became %q", v)
	}
	if c, _ := inner.GetCollector(ctx, "alice", "dest", "c0000"); c.Version != 1 {
		t.Errorf("rotation changed the version to %d; the definition did not change", c.Version)
	}

	again, err := secret.Rotate(ctx, inner, rotated)
	if err != nil || again.Rotated != 0 || again.Scanned != n+2 {
		t.Errorf("second Rotate = %+v, %v; want nothing rotated", again, err)
	}
}

func TestRotate_ConcurrentWrite(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	oldKeys := requireKeyring(t, fixedKey("old", 1))
	if err := secret.NewEncryptingStore(inner, oldKeys, nil).InsertCollector(ctx, newCollector("c1", plaintextKey)); err != nil {
		t.Fatal(err)
	}

	// A process still on the old keyring writes a new key between Rotate's
	// read and its replacement. Rotate must read and rotate that value.
	writes := 0
	inner.beforeReplace = func(m *memStore, userID, appID, id string) {
		if writes > 0 {
			return
		}
		writes++
		c, _ := m.GetCollector(ctx, userID, appID, id)
		c.PostInputsKey = plaintextKey + "-changed"
		if err := secret.NewEncryptingStore(m, oldKeys, nil).UpdateCollector(ctx, c); err != nil {
			t.Error(err)
		}
	}

	keys := requireKeyring(t, fixedKey("new", 2), fixedKey("old", 1))
	res, err := secret.Rotate(ctx, inner, keys)
	if err != nil || res.Rotated != 1 {
		t.Fatalf("Rotate = %+v, %v; want one rotated", res, err)
	}
	c, err := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("new", 2)), nil).GetCollector(ctx, "alice", "dest", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if c.PostInputsKey != plaintextKey+"-changed" {
		t.Errorf("key = %q, want the concurrently written one", c.PostInputsKey)
	}
}

func TestRotate_ReportsUndecryptable(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	keys := requireKeyring(t, fixedKey("new", 2), fixedKey("old", 1))
	lost := requireKeyring(t, fixedKey("lost", 3)).Encrypt(plaintextKey, "x")
	if err := inner.InsertCollector(ctx, newCollector("broken", lost)); err != nil {
		t.Fatal(err)
	}
	if err := secret.NewEncryptingStore(inner, requireKeyring(t, fixedKey("old", 1)), nil).InsertCollector(ctx, newCollector("fine", plaintextKey)); err != nil {
		t.Fatal(err)
	}

	res, err := secret.Rotate(ctx, inner, keys)
	if !errors.Is(err, secret.ErrUnknownKey) {
		t.Fatalf("Rotate error = %v, want ErrUnknownKey", err)
	}
	if !strings.Contains(err.Error(), `"broken"`) || strings.Contains(err.Error(), lost) {
		t.Errorf("error %q must name the collector and not quote the value", err)
	}
	if res.Failed != 1 || res.Rotated != 1 {
		t.Errorf("Rotate result = %+v, want one failed and one rotated", res)
	}
	if v := inner.raw(t, "broken"); v != lost {
		t.Errorf("the undecryptable value was changed")
	}
}
