package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
)

// Windows of the budgets in collector.Policy.
const (
	hourWindow = time.Hour
	dayWindow  = 24 * time.Hour
)

// Admit decides and records the candidates in one write transaction (see
// admission.Ledger). SQLite has one writer at a time, also across processes
// that opened the same file, so concurrent calls are serialized.
func (s *SQLite) Admit(ctx context.Context, ref admission.Ref, p collector.Policy, now time.Time, candidates []admission.Candidate) ([]string, error) {
	if err := checkCandidates(candidates); err != nil {
		return nil, fmt.Errorf("admit records of collector %s: %w", describeRef(ref), err)
	}
	if len(candidates) == 0 {
		return []string{}, nil
	}

	var out []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = admit(ctx, sqlExecer{tx}, ref, p, now, candidates)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("admit records of collector %s: %w", describeRef(ref), err)
	}
	return out, nil
}

// PruneAdmissions deletes the admissions made before the given time.
func (s *SQLite) PruneAdmissions(ctx context.Context, before time.Time) (int, error) {
	var removed int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		removed, err = pruneAdmissions(ctx, sqlExecer{tx}, before)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune admissions before %s: %w", before.UTC().Format(time.RFC3339Nano), err)
	}
	return int(removed), nil
}

// checkCandidates rejects a candidate without a RecordID, because the
// ledger recognizes redeliveries by it.
func checkCandidates(candidates []admission.Candidate) error {
	for i, c := range candidates {
		if c.RecordID == "" {
			return fmt.Errorf("candidate %d: RecordID is empty", i)
		}
	}
	return nil
}

func describeRef(ref admission.Ref) string {
	return fmt.Sprintf("%q in app %s/%s", ref.CollectorID, ref.UserID, ref.AppID)
}

// admit runs the checks of admission.Ledger.Admit for each candidate inside
// the caller's transaction and inserts the admitted ones. The caller makes
// sure that no other transaction admits for the same collector at the same
// time.
//
// A stored admission counts in a window when admitted_at > now - window, so
// an admission exactly one window old no longer counts. Admissions stamped
// after now, by a worker whose clock is ahead, count too.
func admit(ctx context.Context, q querier, ref admission.Ref, p collector.Policy, now time.Time, candidates []admission.Candidate) ([]string, error) {
	l := ledgerTx{q: q, ref: ref, now: now.UnixNano()}
	hour := windowCount{limit: p.MaxPerHour, since: l.since(hourWindow)}
	day := windowCount{limit: p.MaxPerDay, since: l.since(dayWindow)}
	concepts := map[string]*windowCount{}

	out := make([]string, len(candidates))
	for i, c := range candidates {
		seen, err := l.admitted(ctx, c.RecordID)
		if err != nil {
			return nil, err
		}
		if seen {
			// A redelivery: its first admission counted, and it does not count twice.
			continue
		}

		if p.DedupWindow > 0 && c.ContentHash != "" {
			dup, err := l.duplicate(ctx, c.ContentHash, l.since(p.DedupWindow))
			if err != nil {
				return nil, err
			}
			if dup {
				out[i] = admission.ReasonDuplicate
				continue
			}
		}

		full, err := l.full(ctx, &hour)
		if err != nil {
			return nil, err
		}
		if full {
			out[i] = admission.ReasonOverHourBudget
			continue
		}
		if full, err = l.full(ctx, &day); err != nil {
			return nil, err
		}
		if full {
			out[i] = admission.ReasonOverDayBudget
			continue
		}

		var concept *windowCount
		if p.MaxPerConcept > 0 && p.BalanceWindow > 0 {
			concept = concepts[c.TopConceptID]
			if concept == nil {
				concept = &windowCount{
					limit:     p.MaxPerConcept,
					since:     l.since(p.BalanceWindow),
					byConcept: true,
					concept:   c.TopConceptID,
				}
				concepts[c.TopConceptID] = concept
			}
			full, err := l.full(ctx, concept)
			if err != nil {
				return nil, err
			}
			if full {
				out[i] = admission.ReasonClassCapped
				continue
			}
		}

		if err := l.insert(ctx, c); err != nil {
			return nil, err
		}
		hour.count++
		day.count++
		if concept != nil {
			concept.count++
		}
	}
	return out, nil
}

// windowCount is the number of admissions in one window, read from the
// table once and then counted up as the call admits more. A limit of 0 or
// less is no limit, and its count is never read.
type windowCount struct {
	limit int
	since int64
	// byConcept restricts the window to admissions whose top concept is
	// concept; a blank concept is a class of its own.
	byConcept bool
	concept   string

	known bool
	count int64
}

// ledgerTx runs the ledger's queries for one collector in one transaction.
type ledgerTx struct {
	q   querier
	ref admission.Ref
	now int64
}

// since returns the exclusive lower bound of admitted_at for a window that
// ends at now.
func (l ledgerTx) since(window time.Duration) int64 {
	return l.now - window.Nanoseconds()
}

func (l ledgerTx) admitted(ctx context.Context, recordID string) (bool, error) {
	var n int64
	err := l.q.queryRow(ctx, `SELECT COUNT(*) FROM admissions
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3 AND record_id = $4`,
		l.ref.UserID, l.ref.AppID, l.ref.CollectorID, recordID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up record %q: %w", recordID, err)
	}
	return n > 0, nil
}

func (l ledgerTx) duplicate(ctx context.Context, contentHash string, since int64) (bool, error) {
	var n int64
	err := l.q.queryRow(ctx, `SELECT COUNT(*) FROM (
    SELECT 1 FROM admissions
    WHERE user_id = $1 AND app_id = $2 AND collector_id = $3
        AND content_hash = $4 AND admitted_at > $5
    LIMIT 1) AS hit`,
		l.ref.UserID, l.ref.AppID, l.ref.CollectorID, contentHash, since).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up content hash %q: %w", contentHash, err)
	}
	return n > 0, nil
}

// full reports whether w has reached its limit, reading its count on first
// use.
func (l ledgerTx) full(ctx context.Context, w *windowCount) (bool, error) {
	if w.limit <= 0 {
		return false, nil
	}
	if !w.known {
		n, err := l.countSince(ctx, w)
		if err != nil {
			return false, err
		}
		w.count, w.known = n, true
	}
	return w.count >= int64(w.limit), nil
}

// countSince counts the admissions in w. The count stops at the limit, so
// a long window costs no more than the limit's entries of an index.
func (l ledgerTx) countSince(ctx context.Context, w *windowCount) (int64, error) {
	var n int64
	var err error
	if w.byConcept {
		err = l.q.queryRow(ctx, `SELECT COUNT(*) FROM (
    SELECT 1 FROM admissions
    WHERE user_id = $1 AND app_id = $2 AND collector_id = $3
        AND top_concept_id = $4 AND admitted_at > $5
    LIMIT $6) AS recent`,
			l.ref.UserID, l.ref.AppID, l.ref.CollectorID, w.concept, w.since, int64(w.limit)).Scan(&n)
	} else {
		err = l.q.queryRow(ctx, `SELECT COUNT(*) FROM (
    SELECT 1 FROM admissions
    WHERE user_id = $1 AND app_id = $2 AND collector_id = $3 AND admitted_at > $4
    LIMIT $5) AS recent`,
			l.ref.UserID, l.ref.AppID, l.ref.CollectorID, w.since, int64(w.limit)).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("count admissions: %w", err)
	}
	return n, nil
}

func (l ledgerTx) insert(ctx context.Context, c admission.Candidate) error {
	_, err := l.q.exec(ctx, `INSERT INTO admissions
    (user_id, app_id, collector_id, record_id, content_hash, top_concept_id, admitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		l.ref.UserID, l.ref.AppID, l.ref.CollectorID, c.RecordID, c.ContentHash, c.TopConceptID, l.now)
	if err != nil {
		return fmt.Errorf("record admission of %q: %w", c.RecordID, err)
	}
	return nil
}

func pruneAdmissions(ctx context.Context, q querier, before time.Time) (int64, error) {
	return q.exec(ctx, `DELETE FROM admissions WHERE admitted_at < $1`, before.UnixNano())
}

// deleteCollectorState deletes the admissions and the preview of one
// collector, or of every collector of the app when id is empty, inside the
// caller's transaction.
//
// NOTE: Admit and AddPreview do not check that the collector exists. A
// worker that commits one of them after the delete, for a record captured
// before it, leaves rows behind. PruneAdmissions removes such admissions in
// time, but such a preview stays until the collector ID is deleted again.
func deleteCollectorState(ctx context.Context, q querier, userID, appID, id string) error {
	for _, table := range []string{"admissions", "previews", "preview_counts", "preview_records"} {
		var err error
		if id == "" {
			_, err = q.exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND app_id = $2`, userID, appID)
		} else {
			_, err = q.exec(ctx, `DELETE FROM `+table+`
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3`, userID, appID, id)
		}
		if err != nil {
			return fmt.Errorf("delete %s: %w", strings.ReplaceAll(table, "_", " "), err)
		}
	}
	return nil
}
