package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// recordIDLen is the length of a record ID in hex characters (128 bits).
const recordIDLen = 32

// Reasons of preview_drop_reason: the outcome of an input a preview
// collector dropped before the queue.
const (
	previewSampledOut   = "sampled_out"
	previewFiltered     = "filtered"
	previewOutputFailed = "output_failed"
	// previewDropped covers a workflow that could not be found or run.
	previewDropped = "dropped"
)

// RecordID returns the deterministic ID of the record for one input of one
// request kept by one collector. The ID is the first 32 hex characters of
// the SHA-256 of the collector's owner user ID, app ID, collector ID,
// request ID and decimal input index, joined with zero bytes. A redelivered
// record keeps its ID, so the destination stores the input once.
func RecordID(ownerUserID, appID, collectorID, requestID string, inputIndex int) string {
	h := sha256.New()
	for _, part := range [...]string{ownerUserID, appID, collectorID, requestID} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(strconv.AppendInt(nil, int64(inputIndex), 10))

	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))[:recordIDLen]
}

// recordBuilder builds the records of one collector for one predict. The
// capture time and the policy are made once and shared by those records,
// which the Sink contract allows, so that each record allocates only what
// is its own.
type recordBuilder struct {
	job   *finished
	model collector.ModelRef
	c     *collector.Collector

	capturedAt *timestamppb.Timestamp
	policy     *clarifaipb.CollectorPolicy
	// workflowVersion is the version of the pre-queue workflow that ran, 0
	// when none did.
	workflowVersion int64
}

func newRecordBuilder(job *finished, model collector.ModelRef, c *collector.Collector) *recordBuilder {
	return &recordBuilder{
		job:        job,
		model:      model,
		c:          c,
		capturedAt: timestamppb.New(job.capturedAt),
		policy:     policyProto(c.Policy),
	}
}

// base returns the fields every record of the collector carries. A record
// carries the caller's user ID but never its credentials, and never the
// collector's PostInputsKey.
func (b *recordBuilder) base(index int) *capturepb.Record {
	c, job, model := b.c, b.job, b.model
	return &capturepb.Record{
		Id:                      RecordID(c.UserID, c.AppID, c.ID, job.requestID, index),
		CollectorId:             c.ID,
		UserId:                  c.UserID,
		AppId:                   c.AppID,
		RequestId:               job.requestID,
		InputIndex:              uint32(index),
		CallerUserId:            job.callerUserID,
		ModelUserId:             model.UserID,
		ModelAppId:              model.AppID,
		ModelId:                 model.ModelID,
		ModelVersionId:          model.VersionID,
		CollectOutputs:          c.CollectOutputs,
		CapturedAt:              b.capturedAt,
		CollectorVersion:        c.Version,
		PreQueueWorkflowId:      c.PreQueueWorkflowID,
		PreQueueWorkflowVersion: b.workflowVersion,
		PostQueueWorkflowId:     c.PostQueueWorkflowID,
		Preview:                 c.Policy.Preview,
	}
}

// kept builds the record of one kept input. output is the input's SUCCESS
// output, or nil when the response was not read. concepts are the output's
// concepts or those the workflow passed on, and the ingest worker posts
// them only when collect_outputs is set.
func (b *recordBuilder) kept(index int, input *clarifaipb.Input, output *clarifaipb.Output, concepts []*clarifaipb.Concept) *capturepb.Record {
	record := b.base(index)
	record.Input = input
	record.OutputConcepts = concepts
	record.Policy = b.policy
	// Only deduplication reads the hash, and hashing an image costs more
	// than building the rest of the record, so collectors that do not
	// deduplicate leave it blank.
	if b.c.Policy.DedupWindow > 0 {
		record.ContentHash = contentHash(input)
	}
	record.TopConceptId = topConceptID(output.GetData().GetConcepts())
	return record
}

// dropped builds the record a preview collector sends for an input it did
// not keep: no input and no concepts, only the reason, so that the preview
// counts every outcome.
func (b *recordBuilder) dropped(index int, reason string) *capturepb.Record {
	record := b.base(index)
	record.PreviewDropReason = reason
	return record
}

// contentHash returns the SHA-256, in hex, of an input's content: the bytes
// of its image, video or audio, else its text, else its URL. It is blank
// when the input has none of them.
func contentHash(input *clarifaipb.Input) string {
	data := input.GetData()

	var content []byte
	switch {
	case len(data.GetImage().GetBase64()) > 0:
		content = data.GetImage().GetBase64()
	case len(data.GetVideo().GetBase64()) > 0:
		content = data.GetVideo().GetBase64()
	case len(data.GetAudio().GetBase64()) > 0:
		content = data.GetAudio().GetBase64()
	case data.GetText().GetRaw() != "":
		return hashString(data.GetText().GetRaw())
	default:
		url := data.GetImage().GetUrl()
		if url == "" {
			url = data.GetVideo().GetUrl()
		}
		if url == "" {
			url = data.GetAudio().GetUrl()
		}
		if url == "" {
			url = data.GetText().GetUrl()
		}
		if url == "" {
			return ""
		}
		return hashString(url)
	}
	return hashBytes(content)
}

// hashString hashes s without copying it into a byte slice.
func hashString(s string) string {
	h := sha256.New()
	h.Write([]byte(s))
	var sum [sha256.Size]byte
	return hexString(h.Sum(sum[:0]))
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hexString(sum[:])
}

// hexString encodes a SHA-256 sum with one allocation, the string itself.
func hexString(sum []byte) string {
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum)
	return string(buf[:])
}

// topConceptID returns the ID of the concept with the highest value, the
// first of equal values. It is blank when there are no concepts.
func topConceptID(concepts []*clarifaipb.Concept) string {
	var top *clarifaipb.Concept
	for _, concept := range concepts {
		if top == nil || concept.GetValue() > top.GetValue() {
			top = concept
		}
	}
	return top.GetId()
}

// policyProto converts a collector's policy for its records. The zero
// policy has no limits and is left out.
func policyProto(p collector.Policy) *clarifaipb.CollectorPolicy {
	if p == (collector.Policy{}) {
		return nil
	}
	return &clarifaipb.CollectorPolicy{
		MaxInputsPerHour:     clampUint32(int64(p.MaxPerHour)),
		MaxInputsPerDay:      clampUint32(int64(p.MaxPerDay)),
		DedupWindowSeconds:   seconds(p.DedupWindow),
		MaxInputsPerConcept:  clampUint32(int64(p.MaxPerConcept)),
		BalanceWindowSeconds: seconds(p.BalanceWindow),
		Preview:              p.Preview,
	}
}

// seconds returns d in whole seconds, rounded up so that a window shorter
// than a second does not turn into 0, which means off.
func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	whole := d / time.Second
	if d%time.Second != 0 {
		whole++
	}
	return clampUint32(int64(whole))
}

func clampUint32(n int64) uint32 {
	return uint32(max(0, min(n, math.MaxUint32)))
}
