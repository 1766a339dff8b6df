package ingest

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// MaxInputsPerPost is the most inputs one PostInputs request may carry.
const MaxInputsPerPost = 128

// MaxLocalInputsPerPost is the maximum number of inputs in one post to the
// local app store. A post there is one transaction and each commit syncs
// the disk, so large posts cost less per input.
const MaxLocalInputsPerPost = 1024

// MetadataKey is the input metadata key under which collectord records the
// caller's own input ID as {"caller_input_id": "<id>"}.
const MetadataKey = "collectord"

// DestinationRef names where a batch goes: the destination app and the
// collector whose key posts into it.
type DestinationRef struct {
	UserID      string
	AppID       string
	CollectorID string
}

// Outcome is the result of posting one record.
type Outcome int

// Outcomes of a post, per record.
const (
	// Delivered: the destination stored the input.
	Delivered Outcome = iota + 1
	// Duplicate: the destination already had an input with this ID, which
	// can only be this record posted before; it counts as delivered.
	Duplicate
	// Retryable: the post may succeed later (timeout, 5xx, 429).
	Retryable
	// Permanent: the destination rejected the record for good.
	Permanent
)

// Result is the outcome of posting one record.
type Result struct {
	Outcome Outcome
	// RetryAfter is the delay the destination asked for (Retry-After), or 0.
	RetryAfter time.Duration
	// Reason is a bounded constant for Permanent results, such as
	// ReasonBadRequest.
	Reason string
	// Err describes the failure for logs; it never contains a key.
	Err error
}

// Destination stores capture records as inputs of an app.
type Destination interface {
	// Post stores recs, at most MaxPostInputs of them, all for dest, and
	// returns one Result per record in the same order.
	Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result
	// MaxPostInputs returns the maximum number of records in one Post.
	MaxPostInputs() int
}

// RouterConfig chooses the destination.
type RouterConfig struct {
	// Remote, when its BaseURL is set, sends every record to a
	// Clarifai-compatible API instead of the local app store.
	Remote RemoteConfig
}

// RouterDeps are the collaborators of NewRouter.
type RouterDeps struct {
	// Inputs is the local app store, used unless a remote API is configured.
	Inputs localapp.InputStore
	// Keys finds post-inputs keys for the remote API.
	Keys   KeyLookup
	Logger *slog.Logger
}

// Router is the Destination chosen by configuration: the local app store by
// default, a remote Clarifai-compatible API when one is configured.
type Router struct {
	dest Destination
}

var _ Destination = (*Router)(nil)

// NewRouter returns the destination cfg selects.
func NewRouter(cfg RouterConfig, deps RouterDeps) (*Router, error) {
	if cfg.Remote.BaseURL != "" {
		remote, err := NewRemoteDestination(cfg.Remote, RemoteDeps{Keys: deps.Keys, Logger: deps.Logger})
		if err != nil {
			return nil, err
		}
		return &Router{dest: remote}, nil
	}
	return &Router{dest: NewLocalDestination(deps.Inputs)}, nil
}

// Post forwards to the chosen destination.
func (r *Router) Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result {
	return r.dest.Post(ctx, dest, recs)
}

// MaxPostInputs returns the limit of the chosen destination.
func (r *Router) MaxPostInputs() int { return r.dest.MaxPostInputs() }

// Destination returns the destination the router chose.
func (r *Router) Destination() Destination { return r.dest }

// InputFromRecord builds the input posted for a record. Its ID is the
// record's ID, so a record delivered twice stores one input. The data is
// the caller's, with two additions: the caller's own input ID, when set,
// under the metadata key "collectord" as {"caller_input_id": "<id>"}, and
// the predicted concepts as data.concepts when the collector collects
// outputs. Metadata is left untouched when the caller set no input ID.
func InputFromRecord(rec *capturepb.Record) *clarifaipb.Input {
	in := &clarifaipb.Input{Id: rec.GetId()}

	var data *clarifaipb.Data
	if src := rec.GetInput().GetData(); src != nil {
		data = proto.Clone(src).(*clarifaipb.Data)
	} else {
		data = &clarifaipb.Data{}
	}

	if callerID := rec.GetInput().GetId(); callerID != "" {
		data.Metadata = withCallerInputID(data.Metadata, callerID)
	}
	if rec.GetCollectOutputs() {
		data.Concepts = cloneConcepts(rec.GetOutputConcepts())
	}

	in.Data = data
	return in
}

// withCallerInputID adds the caller's input ID to metadata. A "collectord"
// value that is already an object keeps its other fields.
func withCallerInputID(md *structpb.Struct, callerID string) *structpb.Struct {
	if md == nil {
		md = &structpb.Struct{}
	}
	if md.Fields == nil {
		md.Fields = map[string]*structpb.Value{}
	}

	own := md.Fields[MetadataKey].GetStructValue()
	if own == nil {
		own = &structpb.Struct{}
	}
	if own.Fields == nil {
		own.Fields = map[string]*structpb.Value{}
	}
	own.Fields["caller_input_id"] = structpb.NewStringValue(callerID)
	md.Fields[MetadataKey] = structpb.NewStructValue(own)
	return md
}

func cloneConcepts(src []*clarifaipb.Concept) []*clarifaipb.Concept {
	if len(src) == 0 {
		return nil
	}
	out := make([]*clarifaipb.Concept, len(src))
	for i, c := range src {
		out[i] = proto.Clone(c).(*clarifaipb.Concept)
	}
	return out
}

// fill returns n copies of r.
func fill(n int, r Result) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = r
	}
	return out
}
