package ingest

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Reasons of dropped records: the reason label of collectord_captures_total
// with outcome "dropped".
const (
	// DropHandoffFull: the publisher's hand-off channel was full.
	DropHandoffFull = "handoff_full"
	// DropQueueFull: the capture stream reached MaxBytes and rejected it.
	DropQueueFull = "queue_full"
	// DropClosed: the publisher was closed, or its Close deadline passed.
	DropClosed = "closed"
	// DropTooLarge: the record exceeds the server's maximum message size.
	DropTooLarge = "too_large"
	// DropMissingID: the record has no ID to deduplicate on.
	DropMissingID = "missing_id"
	// DropEncodeFailed: the record could not be marshaled.
	DropEncodeFailed = "encode_failed"
	// DropPublishFailed: JetStream did not acknowledge it after the retries.
	DropPublishFailed = "publish_failed"
)

// Reasons of failed records: the reason label of collectord_captures_total
// with outcome "failed", and the Collectord-Reason header of dead letters.
const (
	ReasonBadRequest        = "bad_request"
	ReasonUnauthorized      = "unauthorized"
	ReasonForbidden         = "forbidden"
	ReasonNotFound          = "not_found"
	ReasonTooLarge          = "too_large"
	ReasonRejected          = "rejected"
	ReasonUnexpectedStatus  = "unexpected_status"
	ReasonAppNotFound       = "app_not_found"
	ReasonCollectorNotFound = "collector_not_found"
	ReasonMissingKey        = "missing_key"
	ReasonDecodeFailed      = "decode_failed"
	ReasonMaxDeliver        = "max_deliver"
)

// Reasons of records the screening stage dead-lettered: the reason label of
// collectord_captures_total with outcome "failed", and the
// Collectord-Reason header of dead letters. A record is dead-lettered with
// one of these at its last allowed delivery, or at once when the workers
// were started without the collaborator it needs. Either way the record is
// kept for a replay.
const (
	// ReasonWorkflowMissing: the record's post-queue workflow does not exist
	// (it was deleted while the record was queued).
	ReasonWorkflowMissing = "workflow_missing"
	// ReasonPostQueueFailed: the post-queue workflow could not be loaded or
	// evaluated, for example because its remote model failed.
	ReasonPostQueueFailed = "post_queue_failed"
	// ReasonAdmissionFailed: the admission ledger returned an error.
	ReasonAdmissionFailed = "admission_failed"
	// ReasonPreviewFailed: the preview store returned an error.
	ReasonPreviewFailed = "preview_failed"
	// ReasonWorkflowsUnavailable, ReasonAdmissionUnavailable and
	// ReasonPreviewUnavailable: the workers have no workflow finder, ledger
	// or preview store, but the record needs one.
	ReasonWorkflowsUnavailable = "workflows_unavailable"
	ReasonAdmissionUnavailable = "admission_unavailable"
	ReasonPreviewUnavailable   = "preview_unavailable"
)

// PreviewOutcomeKept is the preview count of records a preview collector
// would have ingested. Records it would not have ingested are counted under
// their reason: the admission reason, telemetry.OutcomeFiltered, or the
// sidecar's preview_drop_reason.
const PreviewOutcomeKept = "kept"

// Results of one delivery attempt of one record: the result label of
// collectord_delivery_attempts_total.
const (
	attemptDelivered = "delivered"
	attemptDuplicate = "duplicate"
	attemptRetryable = "retryable"
	attemptPermanent = "permanent"
)

// workerMetrics are the instruments of the delivery side.
type workerMetrics struct {
	attempts  metric.Int64Counter
	batchSize metric.Int64Histogram
}

func newWorkerMetrics(meter metric.Meter) (*workerMetrics, error) {
	attempts, err := meter.Int64Counter("collectord_delivery_attempts_total",
		metric.WithDescription("Delivery attempts of records to the destination, by result."))
	if err != nil {
		return nil, err
	}
	batchSize, err := meter.Int64Histogram("collectord_delivery_batch_size",
		metric.WithDescription("Records per post to the destination."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128))
	if err != nil {
		return nil, err
	}
	return &workerMetrics{attempts: attempts, batchSize: batchSize}, nil
}

func (m *workerMetrics) attempt(ctx context.Context, result string, n int) {
	if n == 0 {
		return
	}
	m.attempts.Add(ctx, int64(n), metric.WithAttributes(attribute.String("result", result)))
}

// registerQueueDepth registers collectord_queue_depth and
// collectord_queue_lost_records, read from the consumer's and the stream's
// info at each collection.
func registerQueueDepth(meter metric.Meter, q *Queue) (metric.Registration, error) {
	depthGauge, err := meter.Int64ObservableGauge("collectord_queue_depth",
		metric.WithDescription("Messages in the capture stream not yet acknowledged by a worker. A message holds one record, or several of one collector."))
	if err != nil {
		return nil, err
	}
	lostGauge, err := meter.Int64ObservableGauge("collectord_queue_lost_records",
		metric.WithDescription("Messages of the capture stream the server found damaged or missing when it recovered its files. A message holds one record, or several of one collector."))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()

		depth, err := q.Depth(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(depthGauge, int64(depth))

		lost, err := q.Lost(ctx)
		if err != nil {
			return err
		}
		o.ObserveInt64(lostGauge, int64(lost))
		return nil
	}, depthGauge, lostGauge)
}

func meterOrNoop(m metric.Meter) metric.Meter {
	if m == nil {
		return noop.NewMeterProvider().Meter("collectord/ingest")
	}
	return m
}
