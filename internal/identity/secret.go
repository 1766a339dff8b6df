package identity

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// SecretPrefix starts every secret NewSecret makes, so a leaked key is easy
// to recognize in a secret scanner or a log.
const SecretPrefix = "cdk_"

// NewSecret returns a new API key secret: SecretPrefix followed by 32 random
// bytes in unpadded base64url (43 characters). Only HashKey(secret) is
// stored; the secret is shown to its owner once.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate API key secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// NewKeyID returns a new public key ID: 16 random bytes in hex (32
// characters).
func NewKeyID() string {
	b := make([]byte, 16)
	// Since Go 1.24, crypto/rand.Read never returns an error: it crashes the
	// program when the system's random source fails.
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
