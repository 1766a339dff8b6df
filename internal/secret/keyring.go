// Package secret encrypts collector post-inputs keys at rest. A Keyring holds
// the data-encryption keys (AES-256-GCM): one primary key encrypts new values,
// and older keys stay to decrypt values written before a rotation.
// EncryptingStore applies the keyring to any collector.Store, and Rotate
// re-encrypts stored values with the primary key.
//
// An encrypted value is text of the form
//
//	enc:v1:<key-id>:<base64url(nonce | ciphertext | tag)>
//
// with a random 96-bit nonce per value. The header and the owning collector
// are bound to the ciphertext as additional data, so a value copied to
// another collector, or relabelled with another key ID, fails to decrypt.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// KeySize is the size in bytes of a data-encryption key (AES-256).
const KeySize = 32

// valuePrefix starts every encrypted value. Its version lets a later format
// coexist with this one.
const valuePrefix = "enc:v1:"

// Errors of Decrypt, which callers test with errors.Is. None of them quotes
// the value or a key.
var (
	ErrMalformed  = errors.New("malformed encrypted value")
	ErrUnknownKey = errors.New("the value was encrypted with a key that is not in the keyring")
	ErrDecrypt    = errors.New("decryption failed: wrong key or corrupted value")
)

// validKeyID reports whether id is 1 to 64 characters from [A-Za-z0-9_.-],
// which cannot be confused with the separators of an encrypted value or a
// key file line. A loop instead of a regexp keeps Decrypt cheap, because the
// request path decrypts on every collector table miss.
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Key is one data-encryption key. Its String and LogValue methods print the
// ID alone, so a key passed to a logger or fmt never shows its bytes.
type Key struct {
	// ID names the key in every value it encrypts.
	ID string
	// Bytes is the KeySize-byte AES key.
	Bytes []byte
}

// String returns the key ID alone.
func (k Key) String() string { return "secret.Key(" + k.ID + ")" }

// GoString returns the key ID alone, so %#v does not print the bytes either.
func (k Key) GoString() string { return k.String() }

// LogValue logs the key ID alone.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.ID) }

// NewKey returns a new random key whose ID is derived from its bytes.
func NewKey() Key {
	b := make([]byte, KeySize)
	// Since Go 1.24, crypto/rand.Read never returns an error: it crashes the
	// program when the system's random source fails.
	_, _ = rand.Read(b)
	return Key{ID: derivedKeyID(b), Bytes: b}
}

// derivedKeyID names a key given without an ID: "k" and the first 4 bytes
// of the SHA-256 of its bytes in hex. Four bytes of a hash of a random
// 256-bit key reveal nothing useful about the key.
func derivedKeyID(b []byte) string {
	sum := sha256.Sum256(b)
	return "k" + hex.EncodeToString(sum[:4])
}

// Keyring encrypts with its primary key and decrypts with any of its keys.
// It is safe for concurrent use.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// NewKeyring returns a keyring of keys, the first one being the primary. It
// fails when there is no key, a key is not KeySize bytes, or two keys share
// an ID.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("the keyring needs at least one key")
	}
	kr := &Keyring{primary: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if !validKeyID(k.ID) {
			return nil, fmt.Errorf("key ID %q is invalid: use 1 to 64 characters from [A-Za-z0-9_.-]", k.ID)
		}
		if len(k.Bytes) != KeySize {
			return nil, fmt.Errorf("key %q is %d bytes; it must be %d", k.ID, len(k.Bytes), KeySize)
		}
		if _, dup := kr.aeads[k.ID]; dup {
			return nil, fmt.Errorf("key ID %q appears more than once", k.ID)
		}
		block, err := aes.NewCipher(k.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		kr.aeads[k.ID] = aead
	}
	return kr, nil
}

// PrimaryID returns the ID of the key that encrypts new values.
func (kr *Keyring) PrimaryID() string { return kr.primary }

// Encrypt returns plaintext encrypted with the primary key. context names
// what the value belongs to (such as the owning collector), and Decrypt must be
// given the same context.
func (kr *Keyring) Encrypt(plaintext, context string) string {
	aead := kr.aeads[kr.primary]
	header := valuePrefix + kr.primary + ":"

	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read returns no error since Go 1.24.
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), additionalData(header, context))
	return header + base64.RawURLEncoding.EncodeToString(sealed)
}

// Decrypt returns the plaintext of a value made by Encrypt with the same
// context. Its errors wrap ErrMalformed, ErrUnknownKey or ErrDecrypt and
// name the key ID, never the value.
func (kr *Keyring) Decrypt(value, context string) (string, error) {
	keyID, payload, err := splitValue(value)
	if err != nil {
		return "", err
	}
	aead, ok := kr.aeads[keyID]
	if !ok {
		return "", fmt.Errorf("%w: key ID %q", ErrUnknownKey, keyID)
	}

	sealed, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
		return "", fmt.Errorf("%w: the payload is not base64url of a nonce and a sealed value", ErrMalformed)
	}
	nonce, ciphertext := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	header := valuePrefix + keyID + ":"
	plaintext, err := aead.Open(nil, nonce, ciphertext, additionalData(header, context))
	if err != nil {
		return "", fmt.Errorf("%w (key ID %q)", ErrDecrypt, keyID)
	}
	return string(plaintext), nil
}

// additionalData binds the value's header and context to the ciphertext.
func additionalData(header, context string) []byte {
	return []byte(header + "\x00" + context)
}

// IsEncrypted reports whether value has the form of an encrypted value.
func IsEncrypted(value string) bool {
	return strings.HasPrefix(value, valuePrefix)
}

// KeyIDOf returns the ID of the key that encrypted value, or false when
// value is not an encrypted value.
func KeyIDOf(value string) (string, bool) {
	keyID, _, err := splitValue(value)
	return keyID, err == nil
}

func splitValue(value string) (keyID, payload string, err error) {
	rest, ok := strings.CutPrefix(value, valuePrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: it does not start with %q", ErrMalformed, valuePrefix)
	}
	keyID, payload, ok = strings.Cut(rest, ":")
	if !ok || !validKeyID(keyID) {
		return "", "", fmt.Errorf("%w: no valid key ID after %q", ErrMalformed, valuePrefix)
	}
	return keyID, payload, nil
}
