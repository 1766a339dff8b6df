// Package localapp defines the built-in destination: apps and their inputs
// stored by collectord itself, so captured inputs can be listed through the API.
package localapp

import (
	"context"
	"errors"
	"time"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Errors of the app and input stores; callers test them with errors.Is.
var (
	ErrAppNotFound      = errors.New("app not found")
	ErrAppExists        = errors.New("app already exists")
	ErrInputNotFound    = errors.New("input not found")
	ErrInputDuplicateID = errors.New("input has a duplicate ID")
)

// App is an app of the local destination, owned by one user.
type App struct {
	UserID      string
	ID          string
	Name        string
	Description string
	CreatedAt   time.Time
}

// AppStore persists apps.
type AppStore interface {
	// InsertApp returns ErrAppExists when the user already has an app with that ID.
	InsertApp(ctx context.Context, a App) error
	// GetApp returns ErrAppNotFound when it does not exist.
	GetApp(ctx context.Context, userID, appID string) (App, error)
	ListApps(ctx context.Context, userID string, offset, limit int) ([]App, error)
}

// InputStore persists the inputs of local apps. Inputs are Clarifai Input
// messages; image, video and audio bytes live in files, not in the rows.
type InputStore interface {
	// InsertInputs stores inputs in the app and returns one error per input:
	// nil, ErrInputDuplicateID, or another failure. The input's created_at and
	// status are set by the store.
	InsertInputs(ctx context.Context, userID, appID string, inputs []*clarifaipb.Input) []error
	// GetInput returns ErrInputNotFound when it does not exist.
	GetInput(ctx context.Context, userID, appID, inputID string) (*clarifaipb.Input, error)
	// ListInputs returns one page ordered by creation, oldest first.
	ListInputs(ctx context.Context, userID, appID string, offset, limit int) ([]*clarifaipb.Input, error)
	// DeleteInput returns ErrInputNotFound when it does not exist.
	DeleteInput(ctx context.Context, userID, appID, inputID string) error
}
