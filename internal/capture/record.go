package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// recordIDLen is the length of a record ID in hex characters (128 bits).
const recordIDLen = 32

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

// newRecord builds the record of one kept input. It carries the caller's
// user ID but never its credentials, and never the collector's
// PostInputsKey. output is the input's SUCCESS output, or nil when the
// response was not read.
func newRecord(job *finished, model collector.ModelRef, c *collector.Collector, index int, input *clarifaipb.Input, output *clarifaipb.Output) *capturepb.Record {
	record := &capturepb.Record{
		Id:             RecordID(c.UserID, c.AppID, c.ID, job.requestID, index),
		CollectorId:    c.ID,
		UserId:         c.UserID,
		AppId:          c.AppID,
		RequestId:      job.requestID,
		InputIndex:     uint32(index),
		CallerUserId:   job.callerUserID,
		ModelUserId:    model.UserID,
		ModelAppId:     model.AppID,
		ModelId:        model.ModelID,
		ModelVersionId: model.VersionID,
		Input:          input,
		CollectOutputs: c.CollectOutputs,
		CapturedAt:     timestamppb.New(job.capturedAt),
	}
	if c.CollectOutputs {
		record.OutputConcepts = output.GetData().GetConcepts()
	}
	return record
}
