package store

import (
	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/audit"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/workflow"
)

// Store is every contract a collectord store implements. The node and the
// command line hold a Store, so they work the same on SQLite and PostgreSQL.
type Store interface {
	collector.Store
	identity.KeyStore
	localapp.AppStore
	localapp.InputStore
	audit.Store
	workflow.Store
	admission.Ledger
	admission.PreviewStore

	// Close releases the store's connections and background work.
	Close() error
}

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)
