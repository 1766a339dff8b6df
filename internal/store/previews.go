package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// AddPreview adds counts to the collector's preview and stores the newest
// keep of records (see admission.PreviewStore) in one write transaction. A
// keep of 0 or less keeps no records.
func (s *SQLite) AddPreview(ctx context.Context, ref admission.Ref, counts map[string]int64, records []*clarifaipb.PreviewRecord, keep int) error {
	encoded, err := encodePreviewRecords(records, keep)
	if err != nil {
		return fmt.Errorf("add preview of collector %s: %w", describeRef(ref), err)
	}

	err = s.inTx(ctx, func(tx *sql.Tx) error {
		return addPreview(ctx, sqlExecer{tx}, ref, counts, encoded, keep, s.clock.Now())
	})
	if err != nil {
		return fmt.Errorf("add preview of collector %s: %w", describeRef(ref), err)
	}
	return nil
}

// GetPreview returns the collector's preview, read in one transaction so
// that counts and records come from the same moment.
func (s *SQLite) GetPreview(ctx context.Context, ref admission.Ref) (*clarifaipb.CollectorPreview, error) {
	// The reader pool is query-only, so a plain transaction cannot write.
	tx, err := s.reader.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("get preview of collector %s: begin transaction: %w", describeRef(ref), err)
	}
	// A read-only transaction has nothing to commit.
	defer tx.Rollback()

	preview, err := getPreview(ctx, sqlExecer{tx}, ref)
	if err != nil {
		return nil, fmt.Errorf("get preview of collector %s: %w", describeRef(ref), err)
	}
	return preview, nil
}

// encodePreviewRecords returns the newest keep records in protobuf wire
// form, newest first as given.
func encodePreviewRecords(records []*clarifaipb.PreviewRecord, keep int) ([][]byte, error) {
	n := min(len(records), max(keep, 0))
	out := make([][]byte, n)
	for i, r := range records[:n] {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode record %d (%q): %w", i, r.GetRecordId(), err)
		}
		out[i] = b
	}
	return out, nil
}

// addPreview updates one collector's preview inside the caller's
// transaction. records are encoded, newest first, and at most keep long.
//
// Records are numbered per collector in the order they arrive, so the
// newest keep are those with the highest numbers. The upsert of the
// previews row comes first: on PostgreSQL it locks the row, so concurrent
// calls for one collector take their numbers one after the other.
func addPreview(ctx context.Context, q querier, ref admission.Ref, counts map[string]int64, records [][]byte, keep int, now int64) error {
	var next int64
	err := q.queryRow(ctx, `INSERT INTO previews (user_id, app_id, collector_id, updated_at, next_seq)
VALUES ($1, $2, $3, $4, 0)
ON CONFLICT (user_id, app_id, collector_id) DO UPDATE SET updated_at = excluded.updated_at
RETURNING next_seq`, ref.UserID, ref.AppID, ref.CollectorID, now).Scan(&next)
	if err != nil {
		return fmt.Errorf("update preview: %w", err)
	}

	// Sorted, so that concurrent transactions lock count rows in one order.
	outcomes := make([]string, 0, len(counts))
	for outcome, n := range counts {
		if n != 0 {
			outcomes = append(outcomes, outcome)
		}
	}
	sort.Strings(outcomes)
	for _, outcome := range outcomes {
		_, err := q.exec(ctx, `INSERT INTO preview_counts (user_id, app_id, collector_id, outcome, count)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id, app_id, collector_id, outcome) DO UPDATE
    SET count = preview_counts.count + excluded.count`,
			ref.UserID, ref.AppID, ref.CollectorID, outcome, counts[outcome])
		if err != nil {
			return fmt.Errorf("add count of outcome %q: %w", outcome, err)
		}
	}

	// records[0] is the newest, so it gets the highest number.
	for i, record := range records {
		seq := next + int64(len(records)-1-i)
		_, err := q.exec(ctx, `INSERT INTO preview_records (user_id, app_id, collector_id, seq, record)
VALUES ($1, $2, $3, $4, $5)`, ref.UserID, ref.AppID, ref.CollectorID, seq, record)
		if err != nil {
			return fmt.Errorf("store preview record: %w", err)
		}
	}
	next += int64(len(records))

	if _, err := q.exec(ctx, `UPDATE previews SET next_seq = $4
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3`,
		ref.UserID, ref.AppID, ref.CollectorID, next); err != nil {
		return fmt.Errorf("update preview: %w", err)
	}
	if _, err := q.exec(ctx, `DELETE FROM preview_records
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3 AND seq < $4`,
		ref.UserID, ref.AppID, ref.CollectorID, next-int64(max(keep, 0))); err != nil {
		return fmt.Errorf("trim preview records: %w", err)
	}
	return nil
}

// getPreview reads one collector's preview. A collector that never
// previewed gets an empty preview with only CollectorId set.
func getPreview(ctx context.Context, q querier, ref admission.Ref) (*clarifaipb.CollectorPreview, error) {
	preview := &clarifaipb.CollectorPreview{CollectorId: ref.CollectorID}

	var updatedAt int64
	err := q.queryRow(ctx, `SELECT updated_at FROM previews
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3`,
		ref.UserID, ref.AppID, ref.CollectorID).Scan(&updatedAt)
	if isNoRows(err) {
		return preview, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read preview: %w", err)
	}
	preview.UpdatedAt = timestamppb.New(fromNanos(updatedAt))

	err = q.queryEach(ctx, func(row rowScanner) error {
		c := &clarifaipb.PreviewCount{}
		if err := row.Scan(&c.Outcome, &c.Count); err != nil {
			return err
		}
		preview.Counts = append(preview.Counts, c)
		return nil
	}, `SELECT outcome, count FROM preview_counts
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3
ORDER BY outcome`, ref.UserID, ref.AppID, ref.CollectorID)
	if err != nil {
		return nil, fmt.Errorf("read preview counts: %w", err)
	}

	err = q.queryEach(ctx, func(row rowScanner) error {
		var seq int64
		var b []byte
		if err := row.Scan(&seq, &b); err != nil {
			return err
		}
		r := &clarifaipb.PreviewRecord{}
		if err := proto.Unmarshal(b, r); err != nil {
			return fmt.Errorf("decode preview record %d: %w", seq, err)
		}
		preview.Records = append(preview.Records, r)
		return nil
	}, `SELECT seq, record FROM preview_records
WHERE user_id = $1 AND app_id = $2 AND collector_id = $3
ORDER BY seq DESC`, ref.UserID, ref.AppID, ref.CollectorID)
	if err != nil {
		return nil, fmt.Errorf("read preview records: %w", err)
	}
	return preview, nil
}
