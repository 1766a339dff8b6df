// Package collector defines the Collector, the Store contract that persists
// collectors, and the Table that the request path consults.
package collector

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns; callers test them with errors.Is.
var (
	ErrNotFound      = errors.New("collector not found")
	ErrAlreadyExists = errors.New("collector already exists")
)

// ModelRef names a model. An empty VersionID matches any version.
type ModelRef struct {
	UserID    string
	AppID     string
	ModelID   string
	VersionID string
}

// Collector copies the inputs of matching predicts into the app that owns it.
type Collector struct {
	// UserID and AppID name the owner, which is also the destination app.
	UserID string
	AppID  string
	ID     string

	Description string
	CreatedAt   time.Time
	ModifiedAt  time.Time

	// Model is the source model; Model.VersionID empty matches any version.
	Model ModelRef
	// CallerUserID restricts capture to one caller; empty matches all callers.
	CallerUserID string
	// PostInputsKey is the key used to post into the destination app: a secret
	// that never appears in logs, metrics or capture records.
	PostInputsKey string

	PreQueueWorkflowID  string
	PostQueueWorkflowID string
	// RandomSample is the fraction in (0,1] of matching predicts to keep; 0
	// means no sampling step (keep all that pass the workflows).
	RandomSample float32
	// CollectOutputs also posts the predicted concepts with each input.
	CollectOutputs bool
	// Paused collectors (status COLLECTOR_INACTIVE) collect nothing.
	Paused bool
	// Policy limits what the collector keeps beyond sampling and workflows.
	Policy Policy

	// Version increases on every change, so a capture record can tell which
	// definition kept it.
	Version int64
}

// Policy limits what a collector keeps beyond sampling and workflows. The
// zero value has no limits. The ingest worker applies it, because only the
// worker receives the records of every sidecar.
type Policy struct {
	// MaxPerHour and MaxPerDay cap the inputs kept per rolling hour and day;
	// 0 is no cap.
	MaxPerHour int
	MaxPerDay  int
	// DedupWindow drops an input whose content equals one kept within the
	// window; 0 turns deduplication off.
	DedupWindow time.Duration
	// MaxPerConcept caps the inputs kept per predicted top concept within
	// BalanceWindow (class-balanced sampling); it needs both set.
	MaxPerConcept int
	BalanceWindow time.Duration
	// Preview counts what the collector would keep and stores the last few
	// records for inspection, but ingests nothing.
	Preview bool
}

// Store persists collectors. Implementations call the functions registered
// with OnChange after every successful write, including writes made by other
// processes where the backend can observe them.
type Store interface {
	// InsertCollector stores a new collector; ErrAlreadyExists when the owner
	// already has one with that ID.
	InsertCollector(ctx context.Context, c Collector) error
	// UpdateCollector replaces a collector; ErrNotFound when it does not exist.
	UpdateCollector(ctx context.Context, c Collector) error
	GetCollector(ctx context.Context, userID, appID, id string) (Collector, error)
	// ListCollectors returns one page ordered by creation time, then ID.
	ListCollectors(ctx context.Context, userID, appID string, offset, limit int) ([]Collector, error)
	// DeleteCollector removes one collector; ErrNotFound when it does not exist.
	DeleteCollector(ctx context.Context, userID, appID, id string) error
	// DeleteAllCollectors removes every collector of an app and returns how many.
	DeleteAllCollectors(ctx context.Context, userID, appID string) (int, error)
	// MatchCollectors returns the active collectors whose caller is callerUserID
	// or blank and whose source model equals model by user, app and model ID.
	// An empty model.ModelID matches every model: the gRPC fast path uses it
	// because the model is only known from the body. model.VersionID is ignored;
	// the caller compares versions once they are known.
	MatchCollectors(ctx context.Context, callerUserID string, model ModelRef) ([]Collector, error)
	// OnChange registers fn to run after every change of any collector.
	OnChange(fn func())
}
