// Package workflow defines the stored workflow, the Store contract that
// persists workflows, and the Table of compiled workflows that the capture
// engine and the ingest workers consult.
package workflow

import (
	"context"
	"errors"
	"time"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Errors a Store returns; callers test them with errors.Is.
var (
	ErrNotFound      = errors.New("workflow not found")
	ErrAlreadyExists = errors.New("workflow already exists")
	// ErrInUse is returned when deleting a workflow that a collector of the
	// same app still names as its pre- or post-queue workflow.
	ErrInUse = errors.New("workflow is used by a collector")
)

// Workflow is a chain of filter operators owned by one app. Collectors of
// that app name it by ID as their pre- or post-queue workflow.
type Workflow struct {
	UserID string
	AppID  string
	ID     string

	Description string
	CreatedAt   time.Time
	ModifiedAt  time.Time

	// Nodes are the workflow's nodes as posted; filter.Compile accepted them.
	Nodes []*clarifaipb.WorkflowNode
	// Metadata is the workflow's free-form metadata, or nil.
	Metadata map[string]any

	// Version increases on every change, so a capture record can tell which
	// definition kept it.
	Version int64
}

// Store persists workflows. Implementations call the functions registered
// with OnWorkflowChange after every successful write, including writes made
// by other processes where the backend can observe them.
type Store interface {
	// InsertWorkflow stores a new workflow with Version 1; ErrAlreadyExists
	// when the app already has one with that ID.
	InsertWorkflow(ctx context.Context, w Workflow) error
	// UpdateWorkflow replaces a workflow and increments its Version;
	// ErrNotFound when it does not exist.
	UpdateWorkflow(ctx context.Context, w Workflow) error
	GetWorkflow(ctx context.Context, userID, appID, id string) (Workflow, error)
	// ListWorkflows returns one page ordered by creation time, then ID.
	ListWorkflows(ctx context.Context, userID, appID string, offset, limit int) ([]Workflow, error)
	// DeleteWorkflow removes one workflow; ErrNotFound when it does not
	// exist, ErrInUse (wrapped, naming the collector) when a collector of
	// the app names it.
	DeleteWorkflow(ctx context.Context, userID, appID, id string) error
	// OnWorkflowChange registers fn to run after every change of any
	// workflow.
	OnWorkflowChange(fn func())
}

// Compiled is a stored workflow compiled into its operators.
type Compiled struct {
	ID      string
	Version int64
	Flow    *filter.Workflow
}

// Finder returns compiled workflows; the Table implements it. Find returns
// ErrNotFound (wrapped) when the app has no workflow with that ID, and a
// compile error when the stored workflow no longer compiles, for example
// because a remote endpoint it names was removed from the configuration.
type Finder interface {
	Find(ctx context.Context, userID, appID, id string) (*Compiled, error)
}
