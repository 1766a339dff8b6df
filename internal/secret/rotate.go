package secret

import (
	"context"
	"errors"
	"fmt"

	"github.com/collectord/collectord/internal/collector"
)

// rotatePageSize is the number of collectors Rotate reads per query.
const rotatePageSize = 500

// maxReplaceAttempts bounds how often Rotate retries one collector whose
// stored value changed between its read and its replacement.
const maxReplaceAttempts = 3

// RawKeyStore is a collector store seen from below the EncryptingStore: its
// values are the stored ones (ciphertext). Rotate needs it to walk every
// collector of every app and to replace one stored key without touching the
// rest of the collector.
type RawKeyStore interface {
	// ListAllCollectors returns up to limit collectors of every app ordered
	// by user ID, app ID and ID, starting after the collector named by
	// afterUserID, afterAppID and afterID (all empty: from the first).
	ListAllCollectors(ctx context.Context, afterUserID, afterAppID, afterID string, limit int) ([]collector.Collector, error)
	// ReplacePostInputsKey sets the stored key of one collector to newValue
	// if it still equals oldValue, and reports whether it did. It changes
	// neither the version nor the modification time, because the collector's
	// definition stays the same.
	ReplacePostInputsKey(ctx context.Context, userID, appID, id, oldValue, newValue string) (bool, error)
	// GetCollector returns one collector as stored.
	GetCollector(ctx context.Context, userID, appID, id string) (collector.Collector, error)
}

// RotateResult counts what Rotate did.
type RotateResult struct {
	// Scanned is the number of collectors read.
	Scanned int
	// Rotated is the number of keys re-encrypted with the primary key,
	// including keys that were stored unencrypted.
	Rotated int
	// Failed is the number of keys that could not be decrypted or replaced;
	// the error of Rotate names each.
	Failed int
}

// Rotate re-encrypts with the primary key every stored post-inputs key that
// another key encrypted or that is stored unencrypted. It continues past a
// key that fails and returns the failures together, each naming its
// collector. Running it again is harmless: keys already under the primary
// key are left as they are.
func Rotate(ctx context.Context, st RawKeyStore, keys *Keyring) (RotateResult, error) {
	var (
		res  RotateResult
		errs []error
		last collector.Collector
	)
	for {
		page, err := st.ListAllCollectors(ctx, last.UserID, last.AppID, last.ID, rotatePageSize)
		if err != nil {
			return res, errors.Join(append(errs, fmt.Errorf("list collectors: %w", err))...)
		}
		for _, c := range page {
			res.Scanned++
			rotated, err := rotateOne(ctx, st, keys, c)
			switch {
			case err != nil:
				res.Failed++
				errs = append(errs, err)
			case rotated:
				res.Rotated++
			}
		}
		if len(page) < rotatePageSize {
			return res, errors.Join(errs...)
		}
		last = page[len(page)-1]
	}
}

// rotateOne re-encrypts the key of c when it needs it. When another writer
// changed the key in between, it reads the collector again and retries.
func rotateOne(ctx context.Context, st RawKeyStore, keys *Keyring, c collector.Collector) (bool, error) {
	for range maxReplaceAttempts {
		if !needsRotation(c.PostInputsKey, keys) {
			return false, nil
		}

		newValue, err := reencrypt(c, keys)
		if err != nil {
			return false, err
		}
		ok, err := st.ReplacePostInputsKey(ctx, c.UserID, c.AppID, c.ID, c.PostInputsKey, newValue)
		if err != nil {
			return false, fmt.Errorf("replace post_inputs_key of collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, err)
		}
		if ok {
			return true, nil
		}

		current, err := st.GetCollector(ctx, c.UserID, c.AppID, c.ID)
		if errors.Is(err, collector.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read collector %q in app %s/%s again: %w", c.ID, c.UserID, c.AppID, err)
		}
		c = current
	}
	return false, fmt.Errorf("collector %q in app %s/%s: its post_inputs_key changed %d times during rotation; run rotate again",
		c.ID, c.UserID, c.AppID, maxReplaceAttempts)
}

func needsRotation(value string, keys *Keyring) bool {
	if value == "" {
		return false
	}
	keyID, ok := KeyIDOf(value)
	return !ok || keyID != keys.PrimaryID()
}

// reencrypt returns the key of c encrypted with the primary key.
func reencrypt(c collector.Collector, keys *Keyring) (string, error) {
	context := collectorContext(c.UserID, c.AppID, c.ID)
	plain := c.PostInputsKey
	if IsEncrypted(plain) {
		var err error
		plain, err = keys.Decrypt(c.PostInputsKey, context)
		if err != nil {
			return "", fmt.Errorf("decrypt post_inputs_key of collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, err)
		}
	}
	return keys.Encrypt(plain, context), nil
}
