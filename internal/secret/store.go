package secret

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/collectord/collectord/internal/collector"
)

// EncryptingStore is a collector.Store that encrypts PostInputsKey before
// every write to the store it wraps and decrypts it after every read, so
// the wrapped store holds only ciphertext.
//
// A stored value that is not encrypted (written before encryption existed)
// is returned as it is, with one warning per process. Rotate encrypts such
// values.
type EncryptingStore struct {
	inner collector.Store
	keys  *Keyring
	log   *slog.Logger

	plaintextWarned atomic.Bool
}

var _ collector.Store = (*EncryptingStore)(nil)

// NewEncryptingStore returns inner with its post-inputs keys encrypted by
// keys. A nil logger discards.
func NewEncryptingStore(inner collector.Store, keys *Keyring, logger *slog.Logger) *EncryptingStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &EncryptingStore{inner: inner, keys: keys, log: logger}
}

// collectorContext is the additional data that binds a post-inputs key to
// its collector. IDs never contain a NUL byte.
func collectorContext(userID, appID, id string) string {
	return "collector\x00" + userID + "\x00" + appID + "\x00" + id
}

// encrypt returns c with its key encrypted by the primary key. An empty key
// stays empty: there is nothing to hide.
func (s *EncryptingStore) encrypt(c collector.Collector) collector.Collector {
	if c.PostInputsKey != "" {
		c.PostInputsKey = s.keys.Encrypt(c.PostInputsKey, collectorContext(c.UserID, c.AppID, c.ID))
	}
	return c
}

// decrypt returns c with its key in plaintext. Its error names the
// collector, never the value or a key.
func (s *EncryptingStore) decrypt(c collector.Collector) (collector.Collector, error) {
	if c.PostInputsKey == "" {
		return c, nil
	}
	if !IsEncrypted(c.PostInputsKey) {
		s.warnPlaintext(c)
		return c, nil
	}

	plain, err := s.keys.Decrypt(c.PostInputsKey, collectorContext(c.UserID, c.AppID, c.ID))
	if err != nil {
		return collector.Collector{}, fmt.Errorf("decrypt post_inputs_key of collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, err)
	}
	c.PostInputsKey = plain
	return c, nil
}

func (s *EncryptingStore) warnPlaintext(c collector.Collector) {
	if s.plaintextWarned.Swap(true) {
		return
	}
	s.log.Warn("a collector's post_inputs_key is stored unencrypted; run `collectord secrets rotate` to encrypt every stored key "+
		"(this warning is logged once per process)",
		"user_id", c.UserID, "app_id", c.AppID, "collector_id", c.ID)
}

// decryptAll returns a decrypted copy of cs and leaves cs unchanged, in
// case the wrapped store shares it.
func (s *EncryptingStore) decryptAll(cs []collector.Collector) ([]collector.Collector, error) {
	out := make([]collector.Collector, len(cs))
	for i, c := range cs {
		plain, err := s.decrypt(c)
		if err != nil {
			return nil, err
		}
		out[i] = plain
	}
	return out, nil
}

// InsertCollector stores c with its key encrypted.
func (s *EncryptingStore) InsertCollector(ctx context.Context, c collector.Collector) error {
	return s.inner.InsertCollector(ctx, s.encrypt(c))
}

// UpdateCollector stores c with its key encrypted.
func (s *EncryptingStore) UpdateCollector(ctx context.Context, c collector.Collector) error {
	return s.inner.UpdateCollector(ctx, s.encrypt(c))
}

// GetCollector returns the collector with its key decrypted.
func (s *EncryptingStore) GetCollector(ctx context.Context, userID, appID, id string) (collector.Collector, error) {
	c, err := s.inner.GetCollector(ctx, userID, appID, id)
	if err != nil {
		return collector.Collector{}, err
	}
	return s.decrypt(c)
}

// ListCollectors returns one page with the keys decrypted. One key that
// fails to decrypt fails the whole page.
func (s *EncryptingStore) ListCollectors(ctx context.Context, userID, appID string, offset, limit int) ([]collector.Collector, error) {
	cs, err := s.inner.ListCollectors(ctx, userID, appID, offset, limit)
	if err != nil {
		return nil, err
	}
	return s.decryptAll(cs)
}

// DeleteCollector deletes through the wrapped store.
func (s *EncryptingStore) DeleteCollector(ctx context.Context, userID, appID, id string) error {
	return s.inner.DeleteCollector(ctx, userID, appID, id)
}

// DeleteAllCollectors deletes through the wrapped store.
func (s *EncryptingStore) DeleteAllCollectors(ctx context.Context, userID, appID string) (int, error) {
	return s.inner.DeleteAllCollectors(ctx, userID, appID)
}

// MatchCollectors returns the matching collectors with their keys
// decrypted. One key that fails to decrypt fails the match.
func (s *EncryptingStore) MatchCollectors(ctx context.Context, callerUserID string, model collector.ModelRef) ([]collector.Collector, error) {
	cs, err := s.inner.MatchCollectors(ctx, callerUserID, model)
	if err != nil {
		return nil, err
	}
	return s.decryptAll(cs)
}

// OnChange registers fn with the wrapped store.
func (s *EncryptingStore) OnChange(fn func()) { s.inner.OnChange(fn) }
