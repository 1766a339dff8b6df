package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
)

// Admit decides and records the candidates in one transaction (see
// admission.Ledger). The transaction first takes a transaction-level
// advisory lock keyed by the collector, so concurrent calls for one
// collector, from any process, run one after the other, while calls for
// different collectors run in parallel. The default READ COMMITTED
// isolation gives each statement after the lock a snapshot that includes
// every admission committed before the lock was granted.
func (s *Postgres) Admit(ctx context.Context, ref admission.Ref, p collector.Policy, now time.Time, candidates []admission.Candidate) ([]string, error) {
	if err := checkCandidates(candidates); err != nil {
		return nil, fmt.Errorf("admit records of collector %s: %w", describeRef(ref), err)
	}
	if len(candidates) == 0 {
		return []string{}, nil
	}

	var out []string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, admissionLockKey(s.schema, ref)); err != nil {
			return fmt.Errorf("take the collector's admission lock: %w", err)
		}
		var err error
		out, err = admit(ctx, pgxExecer{tx}, ref, p, now, candidates)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("admit records of collector %s: %w", describeRef(ref), err)
	}
	return out, nil
}

// PruneAdmissions deletes the admissions made before the given time.
func (s *Postgres) PruneAdmissions(ctx context.Context, before time.Time) (int, error) {
	removed, err := pruneAdmissions(ctx, pgxExecer{s.pool}, before)
	if err != nil {
		return 0, fmt.Errorf("prune admissions before %s: %w", before.UTC().Format(time.RFC3339Nano), err)
	}
	return int(removed), nil
}

// admissionLockKey returns the advisory lock key of one collector's
// admissions: the 64-bit FNV-1a hash of the schema and the collector's
// names. Two collectors whose keys collide only serialize their Admit
// calls; a collision with migrationLockKey only delays a migration.
func admissionLockKey(schema string, ref admission.Ref) int64 {
	h := fnv.New64a()
	for _, part := range []string{"admission", schema, ref.UserID, ref.AppID, ref.CollectorID} {
		// The NUL separator keeps ("ab", "c") and ("a", "bc") apart; names
		// never contain NUL because PostgreSQL text cannot hold it.
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}
