package api

import (
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/collector"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const sourceField = "collector_source.api_post_model_outputs_collector_source"

// maskSecret returns the form of a secret that responses show. Secrets of 16
// characters or more show "****" and their last 4 characters, so an owner
// can tell keys apart. Shorter ones show "****" alone, because 4 characters
// would give away too large a part of them.
func maskSecret(secret string) string {
	const visibleChars, minLen = 4, 16
	if len(secret) < minLen {
		return "****"
	}
	return "****" + secret[len(secret)-visibleChars:]
}

// collectorToProto converts a stored collector for a response, with the post
// inputs key masked.
func collectorToProto(c collector.Collector) *pb.Collector {
	statusCode := pb.StatusCode_COLLECTOR_ACTIVE
	if c.Paused {
		statusCode = pb.StatusCode_COLLECTOR_INACTIVE
	}

	out := &pb.Collector{
		Id:                  c.ID,
		Description:         c.Description,
		PreQueueWorkflowId:  c.PreQueueWorkflowID,
		PostQueueWorkflowId: c.PostQueueWorkflowID,
		CollectorSource: &pb.CollectorSource{
			ApiPostModelOutputsCollectorSource: &pb.APIPostModelOutputsCollectorSource{
				ModelUserId:     c.Model.UserID,
				ModelAppId:      c.Model.AppID,
				ModelId:         c.Model.ModelID,
				ModelVersionId:  c.Model.VersionID,
				PostInputsKeyId: maskSecret(c.PostInputsKey),
				CallerUserId:    c.CallerUserID,
			},
		},
		Status:               itemStatus(statusCode, ""),
		PreQueueRandomSample: c.RandomSample,
		CollectOutputs:       c.CollectOutputs,
		Policy:               policyToProto(c.Policy),
	}
	if !c.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(c.CreatedAt)
	}
	return out
}

// collectorFromProto validates a collector of a request and converts it.
// Owner, times and version are left for the caller to set. Errors name the
// first invalid field.
func collectorFromProto(in *pb.Collector) (collector.Collector, error) {
	if err := checkID("id", in.GetId(), maxResourceIDLen); err != nil {
		return collector.Collector{}, err
	}
	src := in.GetCollectorSource().GetApiPostModelOutputsCollectorSource()
	if err := checkSource(src); err != nil {
		return collector.Collector{}, err
	}
	if err := checkFilters(in); err != nil {
		return collector.Collector{}, err
	}
	paused, err := pausedFromStatus(in.GetStatus())
	if err != nil {
		return collector.Collector{}, err
	}
	policy, err := policyFromProto(in.GetPolicy())
	if err != nil {
		return collector.Collector{}, err
	}

	return collector.Collector{
		ID:          in.GetId(),
		Description: in.GetDescription(),
		Model: collector.ModelRef{
			UserID:    src.GetModelUserId(),
			AppID:     src.GetModelAppId(),
			ModelID:   src.GetModelId(),
			VersionID: src.GetModelVersionId(),
		},
		CallerUserID:        src.GetCallerUserId(),
		PostInputsKey:       src.GetPostInputsKeyId(),
		PreQueueWorkflowID:  in.GetPreQueueWorkflowId(),
		PostQueueWorkflowID: in.GetPostQueueWorkflowId(),
		RandomSample:        in.GetPreQueueRandomSample(),
		CollectOutputs:      in.GetCollectOutputs(),
		Paused:              paused,
		Policy:              policy,
	}, nil
}

func checkSource(src *pb.APIPostModelOutputsCollectorSource) error {
	if src == nil {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "%s is required", sourceField)
	}
	required := []struct{ name, value string }{
		{"model_user_id", src.GetModelUserId()},
		{"model_app_id", src.GetModelAppId()},
		{"model_id", src.GetModelId()},
		{"post_inputs_key_id", src.GetPostInputsKeyId()},
	}
	for _, f := range required {
		if f.value == "" {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST, "%s.%s is required", sourceField, f.name)
		}
	}
	return nil
}

// checkFilters requires at least one pre-queue or post-queue step and a
// sample in (0,1] when one is given.
func checkFilters(in *pb.Collector) error {
	sample := in.GetPreQueueRandomSample()
	if math.IsNaN(float64(sample)) || sample < 0 || sample > 1 {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"pre_queue_random_sample must be in (0,1]; got %v", sample)
	}

	for _, w := range []struct{ name, id string }{
		{"pre_queue_workflow_id", in.GetPreQueueWorkflowId()},
		{"post_queue_workflow_id", in.GetPostQueueWorkflowId()},
	} {
		if w.id == "" {
			continue
		}
		if err := checkID(w.name, w.id, maxResourceIDLen); err != nil {
			return err
		}
	}

	// A policy alone is a complete rule: keep everything within its limits.
	if in.GetPreQueueWorkflowId() == "" && in.GetPostQueueWorkflowId() == "" && sample == 0 && !hasPolicy(in.GetPolicy()) {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"set at least one of pre_queue_workflow_id, post_queue_workflow_id, pre_queue_random_sample or policy")
	}
	return nil
}

// pausedFromStatus reads the collector state from a request; no status, or
// one without a code, means active.
func pausedFromStatus(st *pb.Status) (bool, error) {
	switch st.GetCode() {
	case pb.StatusCode_ZERO, pb.StatusCode_COLLECTOR_ACTIVE:
		return false, nil
	case pb.StatusCode_COLLECTOR_INACTIVE:
		return true, nil
	default:
		return false, fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"status.code %s is not a collector state: use COLLECTOR_ACTIVE or COLLECTOR_INACTIVE", st.GetCode())
	}
}

// policyToProto converts a stored policy for a response. The zero policy has
// no limits and is left out, so responses of collectors without one look as
// they did before policies existed.
func policyToProto(p collector.Policy) *pb.CollectorPolicy {
	if p == (collector.Policy{}) {
		return nil
	}
	return &pb.CollectorPolicy{
		MaxInputsPerHour:     uint32(p.MaxPerHour),
		MaxInputsPerDay:      uint32(p.MaxPerDay),
		DedupWindowSeconds:   uint32(p.DedupWindow / time.Second),
		MaxInputsPerConcept:  uint32(p.MaxPerConcept),
		BalanceWindowSeconds: uint32(p.BalanceWindow / time.Second),
		Preview:              p.Preview,
	}
}

// policyFromProto validates the policy of a request and converts it. Nil is
// the zero policy.
func policyFromProto(in *pb.CollectorPolicy) (collector.Policy, error) {
	if err := checkPolicy(in); err != nil {
		return collector.Policy{}, err
	}
	p := collector.Policy{
		MaxPerHour:    int(in.GetMaxInputsPerHour()),
		MaxPerDay:     int(in.GetMaxInputsPerDay()),
		DedupWindow:   time.Duration(in.GetDedupWindowSeconds()) * time.Second,
		MaxPerConcept: int(in.GetMaxInputsPerConcept()),
		BalanceWindow: time.Duration(in.GetBalanceWindowSeconds()) * time.Second,
		Preview:       in.GetPreview(),
	}
	if p.MaxPerConcept == 0 {
		// The class cap is off, so its window is stored as unset too.
		p.BalanceWindow = 0
	}
	return p, nil
}

// hasPolicy reports whether a request sets any limit or preview.
func hasPolicy(in *pb.CollectorPolicy) bool {
	return in.GetMaxInputsPerHour() > 0 || in.GetMaxInputsPerDay() > 0 || in.GetDedupWindowSeconds() > 0 ||
		in.GetMaxInputsPerConcept() > 0 || in.GetPreview()
}
