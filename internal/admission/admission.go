// Package admission defines what the ingest worker consults before it posts
// a record: the Ledger that applies a collector's budgets, deduplication and
// class balance across every worker, and the PreviewStore that keeps what a
// preview collector would have ingested.
package admission

import (
	"context"
	"time"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Reasons a Ledger refuses a candidate. They are fixed values, usable as
// metric labels.
const (
	// ReasonDuplicate: a record with the same content was admitted within
	// the policy's DedupWindow.
	ReasonDuplicate = "deduplicated"
	// ReasonOverHourBudget and ReasonOverDayBudget: the collector already
	// admitted MaxPerHour (MaxPerDay) records in the last hour (day).
	ReasonOverHourBudget = "over_budget_hour"
	ReasonOverDayBudget  = "over_budget_day"
	// ReasonClassCapped: the collector already admitted MaxPerConcept
	// records with the same top concept within BalanceWindow.
	ReasonClassCapped = "class_capped"
)

// Ref names a collector.
type Ref struct {
	UserID      string
	AppID       string
	CollectorID string
}

// Candidate is one record asking to be admitted.
type Candidate struct {
	RecordID string
	// ContentHash identifies the content for deduplication; blank never
	// matches.
	ContentHash string
	// TopConceptID is the predicted top concept for class balance; blank
	// is a class of its own.
	TopConceptID string
}

// Ledger remembers the records each collector admitted, so that all ingest
// workers share one budget per collector.
type Ledger interface {
	// Admit decides for each candidate, in order, whether the collector may
	// keep it under p at now, and remembers the admitted ones. It returns
	// one entry per candidate: "" when admitted, else a Reason constant.
	// Checks run in this order. A RecordID admitted before is admitted
	// again, because it is a redelivery. Then come duplicate content within
	// DedupWindow, the hour budget, the day budget and the class cap.
	// Candidates admitted
	// earlier in the same call count against later ones. Admit is atomic
	// against concurrent calls for the same collector, also from other
	// processes on the same database.
	Admit(ctx context.Context, ref Ref, p collector.Policy, now time.Time, candidates []Candidate) ([]string, error)
	// PruneAdmissions deletes admissions made before the given time and
	// returns how many it removed.
	PruneAdmissions(ctx context.Context, before time.Time) (int, error)
}

// PreviewStore keeps, per collector, outcome counts and the newest records
// of a preview collector.
type PreviewStore interface {
	// AddPreview adds counts (outcome to count) to the collector's preview
	// and prepends records (newest first), keeping at most keep records.
	AddPreview(ctx context.Context, ref Ref, counts map[string]int64, records []*clarifaipb.PreviewRecord, keep int) error
	// GetPreview returns the collector's preview; a collector that never
	// previewed has an empty one (no error).
	GetPreview(ctx context.Context, ref Ref) (*clarifaipb.CollectorPreview, error)
}

// DefaultPreviewRecords is how many records a preview keeps by default.
const DefaultPreviewRecords = 20
