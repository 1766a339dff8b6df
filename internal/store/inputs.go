package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// inputStoredDescription is the status description of a stored input.
const inputStoredDescription = "Input stored"

const inputColumns = `message, image_sha256, video_sha256, audio_sha256`

// storedInput is one input ready for its row: the message without media
// bytes, and the names of the blob files that now hold them.
type storedInput struct {
	id        string
	createdAt int64
	message   []byte
	image     string
	video     string
	audio     string
	// status is the status set on the caller's message once the row is
	// committed.
	status *clarifaipb.Status
}

// InsertInputs stores inputs in one transaction and returns one error per
// input: nil, localapp.ErrInputDuplicateID when the app already has the ID or
// an earlier input of the batch used it, or another failure. Image, video and
// audio bytes are written to blob files first. On success the store sets
// CreatedAt, ModifiedAt and Status on the caller's message as well as in the
// row; URLs are kept as given.
func (s *SQLite) InsertInputs(ctx context.Context, userID, appID string, inputs []*clarifaipb.Input) []error {
	prepared, errs := s.prepareInputs(inputs)

	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return insertInputRows(ctx, tx, userID, appID, prepared, errs)
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

// maxBlobWriters bounds the blob files one InsertInputs call writes at once.
// Each write waits for two fsyncs (file and directory), and parallel writes
// overlap those waits.
const maxBlobWriters = 8

// prepareInputs runs prepareInput on every input, up to maxBlobWriters at a
// time. Creation times are drawn first, in input order, so the batch keeps
// its order in ListInputs.
func (s *SQLite) prepareInputs(inputs []*clarifaipb.Input) ([]*storedInput, []error) {
	prepared := make([]*storedInput, len(inputs))
	errs := make([]error, len(inputs))
	createdAt := make([]int64, len(inputs))
	for i := range inputs {
		createdAt[i] = s.clock.Now()
	}

	var wg sync.WaitGroup
	slots := make(chan struct{}, maxBlobWriters)
	for i, in := range inputs {
		// Only blob writes wait on the disk; an input without media bytes
		// is encoded here, which costs less than a goroutine.
		if !hasMediaBytes(in) {
			prepared[i], errs[i] = s.prepareInput(i, in, createdAt[i])
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			prepared[i], errs[i] = s.prepareInput(i, in, createdAt[i])
		}()
	}
	wg.Wait()
	return prepared, errs
}

// hasMediaBytes reports whether an input carries image, video or audio bytes,
// which prepareInput writes to blob files.
func hasMediaBytes(in *clarifaipb.Input) bool {
	data := in.GetData()
	return len(data.GetImage().GetBase64()) > 0 || len(data.GetVideo().GetBase64()) > 0 || len(data.GetAudio().GetBase64()) > 0
}

// prepareInput validates one input, moves its media bytes into blob files and
// encodes the message for its row. The caller's message is not changed.
func (s *SQLite) prepareInput(index int, in *clarifaipb.Input, createdAt int64) (*storedInput, error) {
	return encodeInput(index, in, createdAt, s.blobs.Put)
}

// encodeInput validates one input, hands each media's bytes to put, which
// stores them and returns their name, and encodes the message without them.
// The caller's message is not changed.
func encodeInput(index int, in *clarifaipb.Input, createdAt int64, put func([]byte) (string, error)) (*storedInput, error) {
	if in == nil {
		return nil, fmt.Errorf("input %d is nil", index)
	}
	if in.GetId() == "" {
		return nil, fmt.Errorf("input %d has no ID; set Input.id", index)
	}

	msg := proto.Clone(in).(*clarifaipb.Input)
	p := &storedInput{id: msg.GetId(), createdAt: createdAt}

	var err error
	if data := msg.GetData(); data != nil {
		if p.image, err = moveBytes(data.GetImage(), put); err != nil {
			return nil, fmt.Errorf("input %q image: %w", p.id, err)
		}
		if p.video, err = moveBytes(data.GetVideo(), put); err != nil {
			return nil, fmt.Errorf("input %q video: %w", p.id, err)
		}
		if p.audio, err = moveBytes(data.GetAudio(), put); err != nil {
			return nil, fmt.Errorf("input %q audio: %w", p.id, err)
		}
	}

	p.status = &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_SUCCESS, Description: inputStoredDescription}
	msg.CreatedAt = timestamppb.New(fromNanos(p.createdAt))
	msg.ModifiedAt = msg.CreatedAt
	msg.Status = proto.Clone(p.status).(*clarifaipb.Status)

	p.message, err = proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode input %q: %w", p.id, err)
	}
	return p, nil
}

// mediaBytes is the base64 field shared by Image, Video and Audio.
type mediaBytes interface {
	GetBase64() []byte
}

// moveBytes hands the media's bytes to put, clears them in the message and
// returns the name put gave them. It returns "" when the media has no bytes.
func moveBytes(media mediaBytes, put func([]byte) (string, error)) (string, error) {
	if media == nil || len(media.GetBase64()) == 0 {
		return "", nil
	}

	name, err := put(media.GetBase64())
	if err != nil {
		return "", err
	}

	switch m := media.(type) {
	case *clarifaipb.Image:
		m.Base64 = nil
	case *clarifaipb.Video:
		m.Base64 = nil
	case *clarifaipb.Audio:
		m.Base64 = nil
	}
	return name, nil
}

// insertInputRows inserts the prepared inputs that have no error yet and marks
// the ones whose ID is taken with localapp.ErrInputDuplicateID.
func insertInputRows(ctx context.Context, tx *sql.Tx, userID, appID string, prepared []*storedInput, errs []error) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO inputs
    (user_id, app_id, id, created_at, `+inputColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, app_id, id) DO NOTHING`)
	if err != nil {
		return err
	}
	defer stmt.Close()

	for i, p := range prepared {
		if errs[i] != nil {
			continue
		}
		res, err := stmt.ExecContext(ctx, userID, appID, p.id, p.createdAt, p.message, p.image, p.video, p.audio)
		if err != nil {
			return err
		}
		affected, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if affected == 0 {
			errs[i] = fmt.Errorf("input %q in app %s/%s: %w", p.id, userID, appID, localapp.ErrInputDuplicateID)
		}
	}
	return nil
}

// GetInput returns localapp.ErrInputNotFound when the app has no input with
// that ID. Media bytes are read back from their blob files.
func (s *SQLite) GetInput(ctx context.Context, userID, appID, inputID string) (*clarifaipb.Input, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+inputColumns+` FROM inputs
WHERE user_id = $1 AND app_id = $2 AND id = $3`, userID, appID, inputID)

	in, err := s.scanInput(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get input %q in app %s/%s: %w", inputID, userID, appID, localapp.ErrInputNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get input %q in app %s/%s: %w", inputID, userID, appID, err)
	}
	return in, nil
}

// ListInputs returns one page of an app's inputs, oldest first. A limit of
// zero or less returns every input from offset.
func (s *SQLite) ListInputs(ctx context.Context, userID, appID string, offset, limit int) ([]*clarifaipb.Input, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.reader.QueryContext(ctx, `SELECT `+inputColumns+` FROM inputs
WHERE user_id = $1 AND app_id = $2
ORDER BY created_at, id
LIMIT $3 OFFSET $4`, userID, appID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list inputs of app %s/%s: %w", userID, appID, err)
	}
	defer rows.Close()

	var out []*clarifaipb.Input
	for rows.Next() {
		in, err := s.scanInput(rows)
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
// that ID.
//
// NOTE: blob files stay on disk after the last input that names them is
// deleted. Removing them safely needs a reference count, or a sweep that
// cannot race with an insert of the same content.
func (s *SQLite) DeleteInput(ctx context.Context, userID, appID, inputID string) error {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM inputs WHERE user_id = $1 AND app_id = $2 AND id = $3`,
			userID, appID, inputID)
		if err != nil {
			return err
		}
		affected, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete input %q in app %s/%s: %w", inputID, userID, appID, err)
	}
	if affected == 0 {
		return fmt.Errorf("delete input %q in app %s/%s: %w", inputID, userID, appID, localapp.ErrInputNotFound)
	}
	return nil
}

// scanInput decodes a row and puts the media bytes back from the blob files.
func (s *SQLite) scanInput(row rowScanner) (*clarifaipb.Input, error) {
	var (
		message             []byte
		image, video, audio string
	)
	if err := row.Scan(&message, &image, &video, &audio); err != nil {
		return nil, err
	}

	in := &clarifaipb.Input{}
	if err := proto.Unmarshal(message, in); err != nil {
		return nil, fmt.Errorf("decode stored input: %w", err)
	}

	if err := s.restoreMedia(in, image, video, audio); err != nil {
		return nil, err
	}
	return in, nil
}

// restoreMedia reads the named blob files back into the message.
func (s *SQLite) restoreMedia(in *clarifaipb.Input, image, video, audio string) error {
	return restoreMedia(in, image, video, audio, s.blobs.Get)
}

// restoreMedia puts the bytes that get returns for each non-empty name back
// into the message.
func restoreMedia(in *clarifaipb.Input, image, video, audio string, get func(name string) ([]byte, error)) error {
	if image == "" && video == "" && audio == "" {
		return nil
	}

	// The media messages were kept when their bytes moved out, but a row
	// written by hand may lack them, so they are created when missing.
	if in.Data == nil {
		in.Data = &clarifaipb.Data{}
	}
	var err error
	if image != "" {
		if in.Data.Image == nil {
			in.Data.Image = &clarifaipb.Image{}
		}
		if in.Data.Image.Base64, err = get(image); err != nil {
			return fmt.Errorf("input %q image: %w", in.GetId(), err)
		}
	}
	if video != "" {
		if in.Data.Video == nil {
			in.Data.Video = &clarifaipb.Video{}
		}
		if in.Data.Video.Base64, err = get(video); err != nil {
			return fmt.Errorf("input %q video: %w", in.GetId(), err)
		}
	}
	if audio != "" {
		if in.Data.Audio == nil {
			in.Data.Audio = &clarifaipb.Audio{}
		}
		if in.Data.Audio.Base64, err = get(audio); err != nil {
			return fmt.Errorf("input %q audio: %w", in.GetId(), err)
		}
	}
	return nil
}
