// Package identity resolves the caller of a request: the user a predict is
// made for, and the user and scopes behind a management API key.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Errors of key resolution; the API maps them to Clarifai status codes.
var (
	// ErrNoCredentials means the request carried no usable key.
	ErrNoCredentials = errors.New("no API key in the request")
	// ErrKeyNotFound means the key is well formed but unknown.
	ErrKeyNotFound = errors.New("API key not found")
)

// Scope names, as in the Clarifai API's key scopes.
const (
	ScopePredict          = "Predict"
	ScopeInputsAdd        = "Inputs_Add"
	ScopeInputsGet        = "Inputs_Get"
	ScopeInputsDelete     = "Inputs_Delete"
	ScopeAnnotationsAdd   = "Annotations_Add"
	ScopeAnnotationsGet   = "Annotations_Get"
	ScopeCollectorsAdd    = "Collectors_Add"
	ScopeCollectorsGet    = "Collectors_Get"
	ScopeCollectorsDelete = "Collectors_Delete"
	ScopeAppsAdd          = "Apps_Add"
	ScopeAppsGet          = "Apps_Get"
	ScopeWorkflowsAdd     = "Workflows_Add"
	ScopeWorkflowsGet     = "Workflows_Get"
	ScopeWorkflowsDelete  = "Workflows_Delete"
	ScopeModelsGet        = "Models_Get"
	ScopeConceptsGet      = "Concepts_Get"
)

// AllScopes lists every scope a key can hold, in a stable order.
var AllScopes = []string{
	ScopePredict, ScopeInputsAdd, ScopeInputsGet, ScopeInputsDelete,
	ScopeAnnotationsAdd, ScopeAnnotationsGet,
	ScopeCollectorsAdd, ScopeCollectorsGet, ScopeCollectorsDelete,
	ScopeAppsAdd, ScopeAppsGet,
	ScopeWorkflowsAdd, ScopeWorkflowsGet, ScopeWorkflowsDelete,
	ScopeModelsGet, ScopeConceptsGet,
}

// Key is a stored API key. Only the SHA-256 of the secret is kept.
type Key struct {
	// ID is a public identifier for listing and deleting; not the secret.
	ID string
	// Hash is the hex SHA-256 of the secret key.
	Hash   string
	UserID string
	// AppID is set for an app key, which acts only on that app; empty for a
	// personal key, which acts on every app of its user.
	AppID     string
	Scopes    []string
	CreatedAt time.Time
}

// HasScope reports whether the key holds scope.
func (k Key) HasScope(scope string) bool {
	for _, s := range k.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// KeyStore persists API keys by their hash.
type KeyStore interface {
	InsertKey(ctx context.Context, k Key) error
	// KeyByHash returns ErrKeyNotFound when no key has that hash.
	KeyByHash(ctx context.Context, hash string) (Key, error)
	// ListKeys returns the keys of one user, or of all users when userID is empty.
	ListKeys(ctx context.Context, userID string) ([]Key, error)
	// DeleteKey removes a key by ID; ErrKeyNotFound when it does not exist.
	DeleteKey(ctx context.Context, id string) error
}

// HashKey returns the hex SHA-256 of a secret key, the form in which keys are
// stored and cached.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
