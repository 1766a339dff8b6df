// Package telemetry holds the metric instruments shared by several packages
// and the OpenTelemetry setup with its Prometheus exporter.
package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Outcomes of a capture: the bounded values of the outcome label of
// collectord_captures_total.
const (
	// OutcomeMatched counts inputs of predicts that matched a collector.
	OutcomeMatched = "matched"
	// OutcomeSampledOut counts inputs left out by random sampling.
	OutcomeSampledOut = "sampled_out"
	// OutcomeTooLarge counts exchanges whose bodies passed the capture cap.
	OutcomeTooLarge = "too_large"
	// OutcomeParseError counts exchanges whose bodies could not be parsed.
	OutcomeParseError = "parse_error"
	// OutcomeUnsupportedEncoding counts gRPC bodies compressed with an
	// encoding other than gzip.
	OutcomeUnsupportedEncoding = "unsupported_encoding"
	// OutcomeUpstreamError counts exchanges whose predict failed upstream.
	OutcomeUpstreamError = "upstream_error"
	// OutcomeOutputFailed counts inputs whose own output was not SUCCESS.
	OutcomeOutputFailed = "output_failed"
	// OutcomeAborted counts exchanges that ended before the response did.
	OutcomeAborted = "aborted"
	// OutcomeEnqueued counts records accepted by JetStream.
	OutcomeEnqueued = "enqueued"
	// OutcomeDropped counts records lost before JetStream accepted them.
	OutcomeDropped = "dropped"
	// OutcomeDelivered counts records the destination accepted.
	OutcomeDelivered = "delivered"
	// OutcomeFailed counts records the destination rejected for good.
	OutcomeFailed = "failed"
)

// Captures counts captures by outcome and by a bounded reason.
type Captures struct {
	counter metric.Int64Counter
}

// NewCaptures registers collectord_captures_total on meter.
func NewCaptures(meter metric.Meter) (*Captures, error) {
	c, err := meter.Int64Counter("collectord_captures_total",
		metric.WithDescription("Captures by outcome; reason refines dropped and failed outcomes."))
	if err != nil {
		return nil, err
	}
	return &Captures{counter: c}, nil
}

// Add counts n captures with an outcome and a reason ("" when none). Both
// must come from a fixed set of constants, never from request data.
func (c *Captures) Add(ctx context.Context, outcome, reason string, n int) {
	if c == nil || n == 0 {
		return
	}
	c.counter.Add(ctx, int64(n), metric.WithAttributes(
		attribute.String("outcome", outcome),
		attribute.String("reason", reason),
	))
}
