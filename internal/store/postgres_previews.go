package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// AddPreview adds counts to the collector's preview and stores the newest
// keep of records (see admission.PreviewStore) in one transaction. A keep
// of 0 or less keeps no records.
func (s *Postgres) AddPreview(ctx context.Context, ref admission.Ref, counts map[string]int64, records []*clarifaipb.PreviewRecord, keep int) error {
	encoded, err := encodePreviewRecords(records, keep)
	if err != nil {
		return fmt.Errorf("add preview of collector %s: %w", describeRef(ref), err)
	}

	err = s.inTx(ctx, func(tx pgx.Tx) error {
		return addPreview(ctx, pgxExecer{tx}, ref, counts, encoded, keep, s.clock.Now())
	})
	if err != nil {
		return fmt.Errorf("add preview of collector %s: %w", describeRef(ref), err)
	}
	return nil
}

// GetPreview returns the collector's preview, read in one REPEATABLE READ
// transaction so that counts and records come from the same snapshot.
func (s *Postgres) GetPreview(ctx context.Context, ref admission.Ref) (*clarifaipb.CollectorPreview, error) {
	var preview *clarifaipb.CollectorPreview
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
		var err error
		preview, err = getPreview(ctx, pgxExecer{tx}, ref)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get preview of collector %s: %w", describeRef(ref), err)
	}
	return preview, nil
}
