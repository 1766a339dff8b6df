package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// RunInputs covers the InputStore methods.
func RunInputs(t *testing.T, open Factory) {
	t.Run("RoundTrip", func(t *testing.T) { testInputRoundTrip(t, open(t)) })
	t.Run("Media", func(t *testing.T) { testInputMedia(t, open(t)) })
	t.Run("URL", func(t *testing.T) { testInputURL(t, open(t)) })
	t.Run("SharedBytes", func(t *testing.T) { testInputSharedBytes(t, open(t)) })
	t.Run("Duplicate", func(t *testing.T) { testInputDuplicate(t, open(t)) })
	t.Run("Invalid", func(t *testing.T) { testInputInvalid(t, open(t)) })
	t.Run("List", func(t *testing.T) { testInputList(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testInputDelete(t, open(t)) })
}

// RandomBytes returns n random bytes, so that stored content cannot be
// confused with any other test's.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return b
}

// NewImageInput returns an input with image bytes, concepts and metadata that
// holds nested and empty objects, lists and every scalar kind.
func NewImageInput(t *testing.T, id string, image []byte) *clarifaipb.Input {
	t.Helper()
	meta, err := structpb.NewStruct(map[string]any{
		"source": "collector",
		"score":  0.5,
		"ok":     true,
		"none":   nil,
		"empty":  map[string]any{},
		"nested": map[string]any{
			"list":  []any{1.0, "two", map[string]any{}, []any{}},
			"inner": map[string]any{"deep": map[string]any{"x": "y"}},
		},
	})
	if err != nil {
		t.Fatalf("build metadata: %v", err)
	}
	return &clarifaipb.Input{
		Id: id,
		Data: &clarifaipb.Data{
			Image:    &clarifaipb.Image{Base64: image},
			Concepts: []*clarifaipb.Concept{{Id: "cat", Name: "cat", Value: 0.98}},
			Metadata: meta,
		},
		DatasetIds: []string{"ds1"},
	}
}

func testInputRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	image := RandomBytes(t, 200<<10)
	in := NewImageInput(t, "in1", image)
	want := proto.Clone(in).(*clarifaipb.Input)

	errs := s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in})
	requireInsertErrors(t, errs, nil)

	got, err := s.GetInput(ctx, "u1", "a1", "in1")
	if err != nil {
		t.Fatalf("GetInput: %v", err)
	}
	if !bytes.Equal(got.GetData().GetImage().GetBase64(), image) {
		t.Errorf("image bytes differ after round trip: got %d bytes, want %d", len(got.GetData().GetImage().GetBase64()), len(image))
	}
	if got.GetStatus().GetCode() != clarifaipb.StatusCode_INPUT_SUCCESS {
		t.Errorf("status = %v, want INPUT_SUCCESS", got.GetStatus().GetCode())
	}
	if got.GetStatus().GetDescription() == "" {
		t.Errorf("status has no description")
	}
	if got.GetCreatedAt() == nil || got.GetModifiedAt() == nil {
		t.Errorf("created_at = %v, modified_at = %v; both should be set", got.GetCreatedAt(), got.GetModifiedAt())
	}

	// Apart from what the store sets, the input comes back unchanged.
	got.CreatedAt, got.ModifiedAt, got.Status = nil, nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("input changed in round trip:\n got  %v\n want %v", summarize(got), summarize(want))
	}
	if !proto.Equal(got.GetData().GetMetadata(), want.GetData().GetMetadata()) {
		t.Errorf("metadata = %v, want %v", got.GetData().GetMetadata(), want.GetData().GetMetadata())
	}
}

func testInputMedia(t *testing.T, s Store) {
	ctx := context.Background()
	video := RandomBytes(t, 64<<10)
	audio := RandomBytes(t, 32<<10)
	in := &clarifaipb.Input{Id: "media", Data: &clarifaipb.Data{
		Video: &clarifaipb.Video{Base64: video},
		Audio: &clarifaipb.Audio{Base64: audio},
		Text:  &clarifaipb.Text{Raw: "a caption"},
	}}

	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in}), nil)

	got, err := s.GetInput(ctx, "u1", "a1", "media")
	if err != nil {
		t.Fatalf("GetInput: %v", err)
	}
	if !bytes.Equal(got.GetData().GetVideo().GetBase64(), video) {
		t.Errorf("video bytes differ after round trip")
	}
	if !bytes.Equal(got.GetData().GetAudio().GetBase64(), audio) {
		t.Errorf("audio bytes differ after round trip")
	}
	if got.GetData().GetImage() != nil {
		t.Errorf("image = %v, want none", got.GetData().GetImage())
	}
	if got.GetData().GetText().GetRaw() != "a caption" {
		t.Errorf("text = %q, want %q", got.GetData().GetText().GetRaw(), "a caption")
	}
}

func testInputURL(t *testing.T, s Store) {
	ctx := context.Background()
	const url = "https://samples.example/cat.jpg"
	in := &clarifaipb.Input{Id: "by-url", Data: &clarifaipb.Data{
		Image: &clarifaipb.Image{Url: url, AllowDuplicateUrl: true},
	}}

	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in}), nil)

	got, err := s.GetInput(ctx, "u1", "a1", "by-url")
	if err != nil {
		t.Fatalf("GetInput: %v", err)
	}
	if got.GetData().GetImage().GetUrl() != url {
		t.Errorf("image URL = %q, want %q", got.GetData().GetImage().GetUrl(), url)
	}
	if len(got.GetData().GetImage().GetBase64()) != 0 {
		t.Errorf("image has %d bytes, want a URL only", len(got.GetData().GetImage().GetBase64()))
	}
	if !got.GetData().GetImage().GetAllowDuplicateUrl() {
		t.Errorf("allow_duplicate_url lost")
	}
}

// testInputSharedBytes stores the same image in two inputs and deletes one:
// the other must still read back its bytes.
func testInputSharedBytes(t *testing.T, s Store) {
	ctx := context.Background()
	image := RandomBytes(t, 10<<10)
	batch := []*clarifaipb.Input{NewImageInput(t, "first", image), NewImageInput(t, "second", image)}
	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", batch), []error{nil, nil})

	if err := s.DeleteInput(ctx, "u1", "a1", "first"); err != nil {
		t.Fatalf("DeleteInput: %v", err)
	}

	got, err := s.GetInput(ctx, "u1", "a1", "second")
	if err != nil {
		t.Fatalf("GetInput of the input sharing the bytes: %v", err)
	}
	if !bytes.Equal(got.GetData().GetImage().GetBase64(), image) {
		t.Errorf("shared image bytes differ after the other input was deleted")
	}
}

func testInputDuplicate(t *testing.T, s Store) {
	ctx := context.Background()
	original := RandomBytes(t, 1024)
	first := []*clarifaipb.Input{NewImageInput(t, "a", RandomBytes(t, 16)), NewImageInput(t, "b", original)}
	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", first), []error{nil, nil})

	// "b" exists already and "c" appears twice in the batch.
	second := []*clarifaipb.Input{
		NewImageInput(t, "b", RandomBytes(t, 16)),
		NewImageInput(t, "c", RandomBytes(t, 16)),
		NewImageInput(t, "c", RandomBytes(t, 16)),
	}
	errs := s.InsertInputs(ctx, "u1", "a1", second)
	requireInsertErrors(t, errs, []error{localapp.ErrInputDuplicateID, nil, localapp.ErrInputDuplicateID})

	got, err := s.GetInput(ctx, "u1", "a1", "b")
	if err != nil {
		t.Fatalf("GetInput b: %v", err)
	}
	if !bytes.Equal(got.GetData().GetImage().GetBase64(), original) {
		t.Errorf("a duplicate ID replaced the stored input")
	}

	list, err := s.ListInputs(ctx, "u1", "a1", 0, 10)
	if err != nil {
		t.Fatalf("ListInputs: %v", err)
	}
	requireIDs(t, "inputs", inputIDs(list), []string{"a", "b", "c"})

	// The same ID in another app is another input.
	other := []*clarifaipb.Input{NewImageInput(t, "a", RandomBytes(t, 16))}
	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a2", other), []error{nil})
}

func testInputInvalid(t *testing.T, s Store) {
	ctx := context.Background()
	batch := []*clarifaipb.Input{
		nil,
		{Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: "no ID"}}},
		{Id: "good", Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: "fine"}}},
	}
	errs := s.InsertInputs(ctx, "u1", "a1", batch)
	if len(errs) != len(batch) {
		t.Fatalf("InsertInputs returned %d errors for %d inputs", len(errs), len(batch))
	}
	if errs[0] == nil {
		t.Errorf("nil input was accepted")
	}
	if errs[1] == nil {
		t.Errorf("input without ID was accepted")
	}
	if errs[2] != nil {
		t.Errorf("valid input beside invalid ones failed: %v", errs[2])
	}
	if _, err := s.GetInput(ctx, "u1", "a1", "good"); err != nil {
		t.Errorf("GetInput of the valid input: %v", err)
	}
}

func testInputList(t *testing.T, s Store) {
	ctx := context.Background()
	// IDs out of alphabetical order, over two batches, so that creation order
	// is distinguishable from ID order.
	ids := []string{"z", "b", "y", "a", "x"}
	batches := [][]string{ids[:3], ids[3:]}
	for _, batch := range batches {
		var inputs []*clarifaipb.Input
		for _, id := range batch {
			inputs = append(inputs, &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: id}}})
		}
		requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", inputs), make([]error, len(inputs)))
	}

	all, err := s.ListInputs(ctx, "u1", "a1", 0, 100)
	if err != nil {
		t.Fatalf("ListInputs: %v", err)
	}
	requireIDs(t, "all inputs", inputIDs(all), ids)

	page, err := s.ListInputs(ctx, "u1", "a1", 2, 2)
	if err != nil {
		t.Fatalf("ListInputs offset 2 limit 2: %v", err)
	}
	requireIDs(t, "offset 2 limit 2", inputIDs(page), ids[2:4])

	past, err := s.ListInputs(ctx, "u1", "a1", 5, 2)
	if err != nil {
		t.Fatalf("ListInputs past the end: %v", err)
	}
	requireIDs(t, "past the end", inputIDs(past), nil)

	other, err := s.ListInputs(ctx, "u1", "empty-app", 0, 10)
	if err != nil {
		t.Fatalf("ListInputs of an empty app: %v", err)
	}
	requireIDs(t, "empty app", inputIDs(other), nil)
}

func testInputDelete(t *testing.T, s Store) {
	ctx := context.Background()
	batch := []*clarifaipb.Input{NewImageInput(t, "in1", RandomBytes(t, 64))}
	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", batch), []error{nil})

	if err := s.DeleteInput(ctx, "u1", "a1", "in1"); err != nil {
		t.Fatalf("DeleteInput: %v", err)
	}
	if _, err := s.GetInput(ctx, "u1", "a1", "in1"); !errors.Is(err, localapp.ErrInputNotFound) {
		t.Errorf("GetInput after delete error = %v, want ErrInputNotFound", err)
	}
	if err := s.DeleteInput(ctx, "u1", "a1", "in1"); !errors.Is(err, localapp.ErrInputNotFound) {
		t.Errorf("second DeleteInput error = %v, want ErrInputNotFound", err)
	}

	// The ID is free again after the delete.
	again := []*clarifaipb.Input{NewImageInput(t, "in1", RandomBytes(t, 64))}
	requireInsertErrors(t, s.InsertInputs(ctx, "u1", "a1", again), []error{nil})
}

// requireInsertErrors checks InsertInputs' result input by input: a nil want
// means success, any other want is matched with errors.Is. A nil want slice
// means a single successful input.
func requireInsertErrors(t *testing.T, got, want []error) {
	t.Helper()
	if want == nil {
		want = []error{nil}
	}
	if len(got) != len(want) {
		t.Fatalf("InsertInputs returned %d errors, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		switch {
		case want[i] == nil && got[i] != nil:
			t.Errorf("input %d: unexpected error %v", i, got[i])
		case want[i] != nil && !errors.Is(got[i], want[i]):
			t.Errorf("input %d: error = %v, want %v", i, got[i], want[i])
		}
	}
}

func inputIDs(inputs []*clarifaipb.Input) []string {
	var ids []string
	for _, in := range inputs {
		ids = append(ids, in.GetId())
	}
	return ids
}

// summarize prints an input for a failure message without its media bytes.
func summarize(in *clarifaipb.Input) string {
	c := proto.Clone(in).(*clarifaipb.Input)
	if img := c.GetData().GetImage(); img != nil && len(img.Base64) > 0 {
		img.Base64 = []byte("<bytes>")
	}
	return c.String()
}
