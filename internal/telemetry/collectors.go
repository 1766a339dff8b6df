package telemetry

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Outcomes of collectord_collector_inputs_total beyond those of
// collectord_captures_total.
const (
	// OutcomeFiltered counts inputs a workflow node dropped; the operator
	// label names the node's operator type.
	OutcomeFiltered = "filtered"
	// OutcomeOverBudget counts inputs over a collector's hourly or daily
	// budget. The reason label names the budget.
	OutcomeOverBudget = "over_budget"
	// OutcomeDeduplicated counts inputs whose content was kept recently.
	OutcomeDeduplicated = "deduplicated"
	// OutcomeClassCapped counts inputs over the class-balance cap.
	OutcomeClassCapped = "class_capped"
	// OutcomePreviewed counts inputs a preview collector would have ingested.
	OutcomePreviewed = "previewed"
)

// MaxCollectorLabels bounds the distinct values of the collector label;
// further collectors are counted under OtherCollector.
const MaxCollectorLabels = 1000

// OtherCollector is the collector label of collectors past MaxCollectorLabels.
const OtherCollector = "other"

// CollectorInputs counts inputs per collector by outcome. The collector label
// is "user/app/collector", bounded by MaxCollectorLabels per process.
type CollectorInputs struct {
	counter metric.Int64Counter

	mu    sync.Mutex
	known map[string]struct{}
}

// NewCollectorInputs registers collectord_collector_inputs_total on meter.
func NewCollectorInputs(meter metric.Meter) (*CollectorInputs, error) {
	c, err := meter.Int64Counter("collectord_collector_inputs_total",
		metric.WithDescription("Inputs per collector by outcome; operator names the workflow operator that filtered, reason refines over_budget."))
	if err != nil {
		return nil, err
	}
	return &CollectorInputs{counter: c, known: map[string]struct{}{}}, nil
}

// Add counts n inputs of one collector. outcome, operator and reason come
// from fixed sets of constants ("" when none), never from request data.
func (c *CollectorInputs) Add(ctx context.Context, userID, appID, collectorID, outcome, operator, reason string, n int) {
	if c == nil || n == 0 {
		return
	}
	c.counter.Add(ctx, int64(n), metric.WithAttributes(
		attribute.String("collector", c.label(userID+"/"+appID+"/"+collectorID)),
		attribute.String("outcome", outcome),
		attribute.String("operator", operator),
		attribute.String("reason", reason),
	))
}

// label returns name while fewer than MaxCollectorLabels names are known,
// else OtherCollector for names not seen before.
func (c *CollectorInputs) label(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()

	if _, ok := c.known[name]; ok {
		return name
	}
	if len(c.known) >= MaxCollectorLabels {
		return OtherCollector
	}
	c.known[name] = struct{}{}
	return name
}
