package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// pgInputColumns reads an input row with the bytes of its media, which are
// NULL when the input has none or its blob row is missing.
const pgInputColumns = `i.message, i.image_sha256, i.video_sha256, i.audio_sha256,
    (SELECT data FROM blobs WHERE sha256 = i.image_sha256),
    (SELECT data FROM blobs WHERE sha256 = i.video_sha256),
    (SELECT data FROM blobs WHERE sha256 = i.audio_sha256)`

// pgInput is one input ready for its row, with the media bytes it names.
type pgInput struct {
	*storedInput
	media map[string][]byte
}

// InsertInputs stores inputs and their media bytes in one transaction and
// returns one error per input: nil, localapp.ErrInputDuplicateID when the
// app already has the ID or an earlier input of the batch used it, or
// another failure. On success the store sets CreatedAt, ModifiedAt and
// Status on the caller's message as well as in the row; URLs are kept as
// given.
func (s *Postgres) InsertInputs(ctx context.Context, userID, appID string, inputs []*clarifaipb.Input) []error {
	prepared, errs := s.prepareInputs(inputs)

	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return insertPgInputs(ctx, tx, userID, appID, prepared, errs)
	})
	if err != nil {
		// Nothing of the batch was committed, so every input that had no
		// error of its own failed with the transaction.
		for i := range inputs {
			if errs[i] == nil || errors.Is(errs[i], localapp.ErrInputDuplicateID) {
				errs[i] = fmt.Errorf("insert inputs in app %s/%s: %w", userID, appID, err)
			}
		}
		return errs
	}

	for i, p := range prepared {
		if errs[i] != nil {
			continue
		}
		inputs[i].CreatedAt = timestamppb.New(fromNanos(p.createdAt))
		inputs[i].ModifiedAt = inputs[i].CreatedAt
		inputs[i].Status = p.status
	}
	return errs
}

// prepareInputs validates and encodes every input. Creation times are drawn
// in input order, so the batch keeps its order in ListInputs.
func (s *Postgres) prepareInputs(inputs []*clarifaipb.Input) ([]pgInput, []error) {
	prepared := make([]pgInput, len(inputs))
	errs := make([]error, len(inputs))
	for i, in := range inputs {
		media := map[string][]byte{}
		put := func(data []byte) (string, error) {
			sum := sha256.Sum256(data)
			name := hex.EncodeToString(sum[:])
			media[name] = data
			return name, nil
		}
		stored, err := encodeInput(i, in, s.clock.Now(), put)
		prepared[i], errs[i] = pgInput{storedInput: stored, media: media}, err
	}
	return prepared, errs
}

// insertPgInputs inserts the rows of the inputs that have no error yet,
// marks the ones whose ID is taken with localapp.ErrInputDuplicateID, then
// adds one reference to each blob per input column that names it.
//
// Rows are inserted in ID order and blobs are upserted in hash order, so
// two concurrent batches lock rows in the same order and cannot deadlock.
// A stable sort keeps the first of two equal IDs in a batch first.
func insertPgInputs(ctx context.Context, tx pgx.Tx, userID, appID string, prepared []pgInput, errs []error) error {
	var order []int
	for i := range prepared {
		if errs[i] == nil {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return prepared[order[a]].id < prepared[order[b]].id })

	refs := map[string]int64{}
	data := map[string][]byte{}
	for _, i := range order {
		p := prepared[i]
		tag, err := tx.Exec(ctx, `INSERT INTO inputs
    (user_id, app_id, id, created_at, `+inputColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, app_id, id) DO NOTHING`,
			userID, appID, p.id, p.createdAt, p.message, p.image, p.video, p.audio)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			errs[i] = fmt.Errorf("input %q in app %s/%s: %w", p.id, userID, appID, localapp.ErrInputDuplicateID)
			continue
		}
		for _, name := range []string{p.image, p.video, p.audio} {
			if name != "" {
				refs[name]++
				data[name] = p.media[name]
			}
		}
	}
	return addBlobRefs(ctx, tx, refs, data)
}

// addBlobRefs adds refs[name] references to each blob, inserting the blobs
// that do not exist yet. The bytes are sent only for those.
func addBlobRefs(ctx context.Context, tx pgx.Tx, refs map[string]int64, data map[string][]byte) error {
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	slices.Sort(names)

	for _, name := range names {
		tag, err := tx.Exec(ctx, `UPDATE blobs SET refs = refs + $2 WHERE sha256 = $1`, name, refs[name])
		if err != nil {
			return fmt.Errorf("add reference to blob %s: %w", name, err)
		}
		if tag.RowsAffected() > 0 {
			continue
		}
		// Another transaction may insert the same blob in between, so the
		// insert adds the references to its row on conflict.
		_, err = tx.Exec(ctx, `INSERT INTO blobs (sha256, data, refs) VALUES ($1, $2, $3)
ON CONFLICT (sha256) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs`, name, data[name], refs[name])
		if err != nil {
			return fmt.Errorf("store blob %s: %w", name, err)
		}
	}
	return nil
}

// GetInput returns localapp.ErrInputNotFound when the app has no input with
// that ID.
func (s *Postgres) GetInput(ctx context.Context, userID, appID, inputID string) (*clarifaipb.Input, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+pgInputColumns+` FROM inputs i
WHERE i.user_id = $1 AND i.app_id = $2 AND i.id = $3`, userID, appID, inputID)

	in, err := scanPgInput(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get input %q in app %s/%s: %w", inputID, userID, appID, localapp.ErrInputNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get input %q in app %s/%s: %w", inputID, userID, appID, err)
	}
	return in, nil
}

// ListInputs returns one page of an app's inputs, oldest first. A limit of
// zero or less returns every input from offset.
func (s *Postgres) ListInputs(ctx context.Context, userID, appID string, offset, limit int) ([]*clarifaipb.Input, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+pgInputColumns+` FROM inputs i
WHERE i.user_id = $1 AND i.app_id = $2
ORDER BY i.created_at, i.id
LIMIT $3 OFFSET $4`, userID, appID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list inputs of app %s/%s: %w", userID, appID, err)
	}
	defer rows.Close()

	var out []*clarifaipb.Input
	for rows.Next() {
		in, err := scanPgInput(rows)
		if err != nil {
			return nil, fmt.Errorf("list inputs of app %s/%s: %w", userID, appID, err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list inputs of app %s/%s: %w", userID, appID, err)
	}
	return out, nil
}

// DeleteInput returns localapp.ErrInputNotFound when the app has no input with
// that ID. It drops the input's references to its blobs in the same
// transaction and deletes the blobs no input names any more.
func (s *Postgres) DeleteInput(ctx context.Context, userID, appID, inputID string) error {
	found := true
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var image, video, audio string
		err := tx.QueryRow(ctx, `DELETE FROM inputs WHERE user_id = $1 AND app_id = $2 AND id = $3
RETURNING image_sha256, video_sha256, audio_sha256`, userID, appID, inputID).Scan(&image, &video, &audio)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		return dropBlobRefs(ctx, tx, image, video, audio)
	})
	if err != nil {
		return fmt.Errorf("delete input %q in app %s/%s: %w", inputID, userID, appID, err)
	}
	if !found {
		return fmt.Errorf("delete input %q in app %s/%s: %w", inputID, userID, appID, localapp.ErrInputNotFound)
	}
	return nil
}

// dropBlobRefs removes one reference per non-empty name, in hash order, and
// deletes each blob left with none. The row lock taken by the UPDATE makes
// a concurrent insert of the same content wait, and that insert then adds
// its reference to the row or, once the row is deleted, inserts it anew.
func dropBlobRefs(ctx context.Context, tx pgx.Tx, names ...string) error {
	refs := map[string]int64{}
	for _, name := range names {
		if name != "" {
			refs[name]++
		}
	}
	sorted := make([]string, 0, len(refs))
	for name := range refs {
		sorted = append(sorted, name)
	}
	slices.Sort(sorted)

	for _, name := range sorted {
		_, err := tx.Exec(ctx, `UPDATE blobs SET refs = GREATEST(refs - $2, 0) WHERE sha256 = $1`, name, refs[name])
		if err != nil {
			return fmt.Errorf("drop reference to blob %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM blobs WHERE sha256 = $1 AND refs = 0`, name); err != nil {
			return fmt.Errorf("delete blob %s: %w", name, err)
		}
	}
	return nil
}

// scanPgInput decodes a row and puts the media bytes back into the message.
func scanPgInput(row rowScanner) (*clarifaipb.Input, error) {
	var (
		message                         []byte
		image, video, audio             string
		imageData, videoData, audioData []byte
	)
	if err := row.Scan(&message, &image, &video, &audio, &imageData, &videoData, &audioData); err != nil {
		return nil, err
	}

	in := &clarifaipb.Input{}
	if err := proto.Unmarshal(message, in); err != nil {
		return nil, fmt.Errorf("decode stored input: %w", err)
	}

	loaded := map[string][]byte{image: imageData, video: videoData, audio: audioData}
	get := func(name string) ([]byte, error) {
		data := loaded[name]
		if data == nil {
			return nil, fmt.Errorf("blob %s missing from the blobs table", name)
		}
		return data, nil
	}
	if err := restoreMedia(in, image, video, audio, get); err != nil {
		return nil, err
	}
	return in, nil
}
