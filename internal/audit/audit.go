// Package audit records who changed what and when in the management API.
package audit

import (
	"context"
	"time"
)

// Actions recorded in the audit log.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// Entry is one change. It never carries a secret: Details holds a JSON
// summary of the change with every key masked.
type Entry struct {
	// ID orders entries; the store assigns it.
	ID   int64
	Time time.Time
	// ActorUserID and ActorKeyID name who made the change: the key's user
	// and the key's public ID (never the key).
	ActorUserID string
	ActorKeyID  string
	// Action is one of the Action constants.
	Action string
	// Resource is the kind of object changed, such as "collector" or "app".
	Resource string
	// UserID and AppID name the app the object belongs to; ResourceID the
	// object itself.
	UserID     string
	AppID      string
	ResourceID string
	// Details is a JSON object describing the change, secrets masked.
	Details string
}

// Store persists audit entries.
type Store interface {
	// AppendAudit stores an entry and sets nothing on the caller's value.
	AppendAudit(ctx context.Context, e Entry) error
	// ListAudit returns the entries of one app, newest first.
	ListAudit(ctx context.Context, userID, appID string, offset, limit int) ([]Entry, error)
}
