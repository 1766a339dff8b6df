package ingest

import (
	"context"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func mustStruct(t *testing.T, v map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(v)
	if err != nil {
		t.Fatalf("NewStruct: %v", err)
	}
	return s
}

func TestInputFromRecord_UsesRecordID(t *testing.T) {
	rec := newRecord("u1", "a1", "c1", 1)
	in := InputFromRecord(rec)
	if in.GetId() != rec.GetId() {
		t.Errorf("input ID = %q, want the record ID %q", in.GetId(), rec.GetId())
	}
	if in.GetData().GetText().GetRaw() != rec.GetInput().GetData().GetText().GetRaw() {
		t.Errorf("input text = %q, want the caller's data kept", in.GetData().GetText().GetRaw())
	}
	if again := InputFromRecord(rec); !proto.Equal(in, again) {
		t.Error("converting the same record twice gave different inputs")
	}
}

func TestInputFromRecord_MetadataUntouchedWithoutCallerID(t *testing.T) {
	md := mustStruct(t, map[string]any{"source": "camera-3", "nested": map[string]any{"n": 1.5}})
	rec := newRecord("u1", "a1", "c1", 1)
	rec.Input.Data.Metadata = md
	before, _ := protojson.Marshal(md)

	in := InputFromRecord(rec)
	after, _ := protojson.Marshal(in.GetData().GetMetadata())
	if !proto.Equal(in.GetData().GetMetadata(), md) {
		t.Errorf("metadata = %s, want it equal to the caller's %s", after, before)
	}

	noMetadata := newRecord("u1", "a1", "c1", 2)
	if got := InputFromRecord(noMetadata).GetData().GetMetadata(); got != nil {
		t.Errorf("metadata = %v, want none when the caller sent none", got)
	}
}

func TestInputFromRecord_CallerInputID(t *testing.T) {
	rec := newRecord("u1", "a1", "c1", 1)
	rec.Input.Id = "my-input"
	rec.Input.Data.Metadata = mustStruct(t, map[string]any{"source": "camera-3"})

	in := InputFromRecord(rec)
	fields := in.GetData().GetMetadata().GetFields()
	if got := fields["source"].GetStringValue(); got != "camera-3" {
		t.Errorf("metadata.source = %q, want the caller's value kept", got)
	}
	if got := fields[MetadataKey].GetStructValue().GetFields()["caller_input_id"].GetStringValue(); got != "my-input" {
		t.Errorf("metadata.collectord.caller_input_id = %q, want my-input", got)
	}
	if got := rec.GetInput().GetData().GetMetadata().GetFields()[MetadataKey]; got != nil {
		t.Error("InputFromRecord changed the record's own metadata")
	}
}

func TestInputFromRecord_CollectOutputs(t *testing.T) {
	concepts := []*clarifaipb.Concept{{Id: "cat", Name: "cat", Value: 0.97}, {Id: "dog", Value: 0.2}}
	rec := newRecord("u1", "a1", "c1", 1)
	rec.OutputConcepts = concepts

	if got := InputFromRecord(rec).GetData().GetConcepts(); len(got) != 0 {
		t.Errorf("concepts = %v without CollectOutputs, want none", got)
	}

	rec.CollectOutputs = true
	got := InputFromRecord(rec).GetData().GetConcepts()
	if len(got) != len(concepts) {
		t.Fatalf("concepts = %d, want %d", len(got), len(concepts))
	}
	for i := range concepts {
		if !proto.Equal(got[i], concepts[i]) {
			t.Errorf("concept %d = %v, want %v", i, got[i], concepts[i])
		}
	}
}

func TestRouter_ChoosesDestination(t *testing.T) {
	local, err := NewRouter(RouterConfig{}, RouterDeps{Inputs: newMemInputs()})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	if _, ok := local.Destination().(*LocalDestination); !ok {
		t.Errorf("default destination = %T, want *LocalDestination", local.Destination())
	}

	fake := newFakeClarifai(t, testKey)
	remote, err := NewRouter(RouterConfig{Remote: RemoteConfig{BaseURL: fake.url()}},
		RouterDeps{Inputs: newMemInputs(), Keys: staticKeys{"u1/a1/c1": testKey}})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	got := remote.Post(context.Background(), ref, []*capturepb.Record{newRecord("u1", "a1", "c1", 1)})
	if got[0].Outcome != Delivered || fake.stored() != 1 {
		t.Errorf("remote router: result %+v, stored %d; want the input posted to the remote API", got[0], fake.stored())
	}
}
