package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// RunPreview covers admission.PreviewStore: counts that add up, records
// trimmed to the newest, and the empty preview.
func RunPreview(t *testing.T, open Factory) {
	t.Run("Empty", func(t *testing.T) { testPreviewEmpty(t, open(t)) })
	t.Run("Counts", func(t *testing.T) { testPreviewCounts(t, open(t)) })
	t.Run("Keep", func(t *testing.T) { testPreviewKeep(t, open(t)) })
	t.Run("KeepNone", func(t *testing.T) { testPreviewKeepNone(t, open(t)) })
	t.Run("RecordRoundTrip", func(t *testing.T) { testPreviewRecordRoundTrip(t, open(t)) })
	t.Run("PerCollector", func(t *testing.T) { testPreviewPerCollector(t, open(t)) })
}

// PreviewRecord returns a preview record with the given ID.
func PreviewRecord(id string) *clarifaipb.PreviewRecord {
	return &clarifaipb.PreviewRecord{
		RecordId:         id,
		CapturedAt:       timestamppb.New(admitTime),
		RequestId:        "req-" + id,
		CallerUserId:     "caller",
		CollectorVersion: 3,
	}
}

func testPreviewEmpty(t *testing.T, s Store) {
	got, err := s.GetPreview(context.Background(), refC1)
	if err != nil {
		t.Fatalf("GetPreview of a collector that never previewed: %v", err)
	}
	if got.GetCollectorId() != "c1" {
		t.Errorf("CollectorId = %q, want c1", got.GetCollectorId())
	}
	if len(got.GetCounts()) != 0 || len(got.GetRecords()) != 0 {
		t.Errorf("empty preview has %d counts and %d records, want none", len(got.GetCounts()), len(got.GetRecords()))
	}
	if got.GetUpdatedAt() != nil {
		t.Errorf("empty preview UpdatedAt = %v, want unset", got.GetUpdatedAt().AsTime())
	}
}

func testPreviewCounts(t *testing.T, s Store) {
	ctx := context.Background()
	adds := []map[string]int64{
		{"kept": 2, "sampled_out": 3},
		{"kept": 1, "deduplicated": 4},
		{},
		{"sampled_out": 10, "filtered": 0},
	}
	for i, counts := range adds {
		if err := s.AddPreview(ctx, refC1, counts, nil, admission.DefaultPreviewRecords); err != nil {
			t.Fatalf("AddPreview #%d: %v", i+1, err)
		}
	}

	got, err := s.GetPreview(ctx, refC1)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	// Counts come back ordered by outcome; a zero count adds no entry.
	want := []string{"deduplicated=4", "kept=3", "sampled_out=13"}
	requireCounts(t, got, want)
	if got.GetUpdatedAt() == nil {
		t.Errorf("UpdatedAt is unset after AddPreview")
	}
	if len(got.GetRecords()) != 0 {
		t.Errorf("preview has %d records, want none", len(got.GetRecords()))
	}
}

func testPreviewKeep(t *testing.T, s Store) {
	ctx := context.Background()
	steps := []struct {
		name    string
		records []string // newest first
		keep    int
		want    []string // newest first
	}{
		{"first two", []string{"r2", "r1"}, 3, []string{"r2", "r1"}},
		{"three more", []string{"r5", "r4", "r3"}, 3, []string{"r5", "r4", "r3"}},
		{"two more", []string{"r7", "r6"}, 3, []string{"r7", "r6", "r5"}},
		{"nothing new", nil, 3, []string{"r7", "r6", "r5"}},
		{"more than keep in one call", []string{"r12", "r11", "r10", "r9", "r8"}, 2, []string{"r12", "r11"}},
		{"larger keep", []string{"r13"}, 5, []string{"r13", "r12", "r11"}},
		{"smaller keep", nil, 1, []string{"r13"}},
	}
	for _, step := range steps {
		var records []*clarifaipb.PreviewRecord
		for _, id := range step.records {
			records = append(records, PreviewRecord(id))
		}
		if err := s.AddPreview(ctx, refC1, map[string]int64{"kept": int64(len(records))}, records, step.keep); err != nil {
			t.Fatalf("%s: AddPreview: %v", step.name, err)
		}
		got, err := s.GetPreview(ctx, refC1)
		if err != nil {
			t.Fatalf("%s: GetPreview: %v", step.name, err)
		}
		requireIDs(t, step.name, recordIDs(got), step.want)
	}

	got, err := s.GetPreview(ctx, refC1)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	requireCounts(t, got, []string{"kept=13"})
}

func testPreviewKeepNone(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.AddPreview(ctx, refC1, nil, []*clarifaipb.PreviewRecord{PreviewRecord("r1")}, 5); err != nil {
		t.Fatalf("AddPreview: %v", err)
	}
	for _, keep := range []int{0, -1} {
		err := s.AddPreview(ctx, refC1, map[string]int64{"kept": 1}, []*clarifaipb.PreviewRecord{PreviewRecord("r2")}, keep)
		if err != nil {
			t.Fatalf("AddPreview keep %d: %v", keep, err)
		}
		got, err := s.GetPreview(ctx, refC1)
		if err != nil {
			t.Fatalf("GetPreview: %v", err)
		}
		requireIDs(t, fmt.Sprintf("keep %d", keep), recordIDs(got), nil)
	}

	got, err := s.GetPreview(ctx, refC1)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	requireCounts(t, got, []string{"kept=2"})
}

func testPreviewRecordRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	want := PreviewRecord("r1")
	want.Input = &clarifaipb.Input{
		Id:   "in1",
		Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://images.example/cat.jpg"}},
	}
	want.OutputConcepts = []*clarifaipb.Concept{{Id: "cat", Name: "cat", Value: 0.93}, {Id: "dog", Value: 0.05}}

	if err := s.AddPreview(ctx, refC1, nil, []*clarifaipb.PreviewRecord{want}, 1); err != nil {
		t.Fatalf("AddPreview: %v", err)
	}
	got, err := s.GetPreview(ctx, refC1)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	if len(got.GetRecords()) != 1 {
		t.Fatalf("preview has %d records, want 1", len(got.GetRecords()))
	}
	if !proto.Equal(got.GetRecords()[0], want) {
		t.Errorf("record = %v, want %v", got.GetRecords()[0], want)
	}
}

func testPreviewPerCollector(t *testing.T, s Store) {
	ctx := context.Background()
	other := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "c2"}
	otherApp := admission.Ref{UserID: "u1", AppID: "a2", CollectorID: "c1"}
	for _, ref := range []admission.Ref{refC1, other, otherApp} {
		records := []*clarifaipb.PreviewRecord{PreviewRecord(ref.AppID + "-" + ref.CollectorID)}
		if err := s.AddPreview(ctx, ref, map[string]int64{"kept": 1}, records, 5); err != nil {
			t.Fatalf("AddPreview %+v: %v", ref, err)
		}
	}

	got, err := s.GetPreview(ctx, other)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	if got.GetCollectorId() != "c2" {
		t.Errorf("CollectorId = %q, want c2", got.GetCollectorId())
	}
	requireIDs(t, "collector c2", recordIDs(got), []string{"a1-c2"})
	requireCounts(t, got, []string{"kept=1"})

	got, err = s.GetPreview(ctx, otherApp)
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	requireIDs(t, "collector c1 of app a2", recordIDs(got), []string{"a2-c1"})
}

// RunDeleteCascade expects DeleteCollector and DeleteAllCollectors to
// remove the admissions and previews of the deleted collectors only.
func RunDeleteCascade(t *testing.T, open Factory) {
	t.Run("DeleteCollector", func(t *testing.T) { testCascadeDelete(t, open(t)) })
	t.Run("DeleteAllCollectors", func(t *testing.T) { testCascadeDeleteAll(t, open(t)) })
}

// cascadePolicy admits one record per hour, so Admit of a new record shows
// whether a collector's earlier admission survived.
var cascadePolicy = collector.Policy{MaxPerHour: 1}

// seedCollectorState creates the collector and gives it one admission and
// a preview.
func seedCollectorState(t *testing.T, s Store, ref admission.Ref) {
	t.Helper()
	ctx := context.Background()
	if err := s.InsertCollector(ctx, NewCollector(ref.UserID, ref.AppID, ref.CollectorID)); err != nil {
		t.Fatalf("InsertCollector %s: %v", ref.CollectorID, err)
	}
	requireAdmit(t, s, ref, cascadePolicy, admitTime, "seed "+ref.AppID+"/"+ref.CollectorID,
		[]admission.Candidate{Candidate("seed", "h", "cat")}, []string{""})
	if err := s.AddPreview(ctx, ref, map[string]int64{"kept": 1}, []*clarifaipb.PreviewRecord{PreviewRecord("seed")}, 5); err != nil {
		t.Fatalf("AddPreview %s: %v", ref.CollectorID, err)
	}
}

// requireCollectorState checks whether the collector's admission and
// preview from seedCollectorState still exist.
func requireCollectorState(t *testing.T, s Store, ref admission.Ref, exists bool) {
	t.Helper()
	name := ref.AppID + "/" + ref.CollectorID
	want := ""
	if exists {
		want = admission.ReasonOverHourBudget
	}
	requireAdmit(t, s, ref, cascadePolicy, admitTime.Add(time.Minute), name+" new record",
		[]admission.Candidate{Candidate("probe", "", "")}, []string{want})

	preview, err := s.GetPreview(context.Background(), ref)
	if err != nil {
		t.Fatalf("GetPreview %s: %v", name, err)
	}
	if exists && (len(preview.GetRecords()) != 1 || len(preview.GetCounts()) != 1) {
		t.Errorf("%s: preview has %d records and %d counts, want 1 and 1", name, len(preview.GetRecords()), len(preview.GetCounts()))
	}
	if !exists && (len(preview.GetRecords()) != 0 || len(preview.GetCounts()) != 0 || preview.GetUpdatedAt() != nil) {
		t.Errorf("%s: preview of a deleted collector has %d records and %d counts, want an empty one", name, len(preview.GetRecords()), len(preview.GetCounts()))
	}
}

func testCascadeDelete(t *testing.T, s Store) {
	c2 := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "c2"}
	for _, ref := range []admission.Ref{refC1, c2} {
		seedCollectorState(t, s, ref)
	}

	if err := s.DeleteCollector(context.Background(), "u1", "a1", "c1"); err != nil {
		t.Fatalf("DeleteCollector: %v", err)
	}
	requireCollectorState(t, s, refC1, false)
	requireCollectorState(t, s, c2, true)
}

func testCascadeDeleteAll(t *testing.T, s Store) {
	c2 := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "c2"}
	otherApp := admission.Ref{UserID: "u1", AppID: "a2", CollectorID: "c1"}
	for _, ref := range []admission.Ref{refC1, c2, otherApp} {
		seedCollectorState(t, s, ref)
	}

	n, err := s.DeleteAllCollectors(context.Background(), "u1", "a1")
	if err != nil {
		t.Fatalf("DeleteAllCollectors: %v", err)
	}
	if n != 2 {
		t.Errorf("DeleteAllCollectors = %d, want 2", n)
	}
	requireCollectorState(t, s, refC1, false)
	requireCollectorState(t, s, c2, false)
	requireCollectorState(t, s, otherApp, true)
}

func requireCounts(t *testing.T, p *clarifaipb.CollectorPreview, want []string) {
	t.Helper()
	var got []string
	for _, c := range p.GetCounts() {
		got = append(got, fmt.Sprintf("%s=%d", c.GetOutcome(), c.GetCount()))
	}
	requireIDs(t, "counts", got, want)
}

func recordIDs(p *clarifaipb.CollectorPreview) []string {
	var ids []string
	for _, r := range p.GetRecords() {
		ids = append(ids, r.GetRecordId())
	}
	return ids
}
