// Package storetest is the contract test suite of the product's stores. Every
// store implementation runs the same suite from its own tests:
//
//	storetest.Run(t, func(t *testing.T) storetest.Store { return openMyStore(t) })
package storetest

import (
	"testing"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/workflow"
)

// Store is every contract a product store implements.
type Store interface {
	collector.Store
	identity.KeyStore
	localapp.AppStore
	localapp.InputStore
	workflow.Store
	admission.Ledger
	admission.PreviewStore
}

// Factory opens a new, empty store for one test and registers its cleanup
// with t.
type Factory func(t *testing.T) Store

// Run runs the whole contract suite, each part as a subtest with a store of
// its own.
func Run(t *testing.T, open Factory) {
	t.Run("Collectors", func(t *testing.T) { RunCollectors(t, open) })
	t.Run("Match", func(t *testing.T) { RunMatch(t, open) })
	t.Run("Keys", func(t *testing.T) { RunKeys(t, open) })
	t.Run("Apps", func(t *testing.T) { RunApps(t, open) })
	t.Run("Inputs", func(t *testing.T) { RunInputs(t, open) })
	t.Run("Concurrency", func(t *testing.T) { RunConcurrency(t, open) })
	t.Run("Workflows", func(t *testing.T) { RunWorkflows(t, open) })
	t.Run("Policy", func(t *testing.T) { RunPolicy(t, open) })
	t.Run("Admission", func(t *testing.T) { RunAdmission(t, open) })
	t.Run("Preview", func(t *testing.T) { RunPreview(t, open) })
	t.Run("DeleteCascade", func(t *testing.T) { RunDeleteCascade(t, open) })
}
