package capture

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/collectord/collectord/internal/telemetry"
)

// Metric names of the capture engine.
const (
	metricExchanges        = "collectord_exchanges_total"
	metricAssemblerPanics  = "collectord_capture_assembler_panics_total"
	metricAssemblerBacklog = "collectord_capture_assembler_queue_length"
)

// Values of the result and reason labels of collectord_exchanges_total.
const (
	resultFastPath = "fast_path"
	resultCaptured = "captured"

	reasonNotPredict  = "not_predict"
	reasonEmptyBody   = "empty_body"
	reasonNoCaller    = "no_caller"
	reasonNoCollector = "no_collector"
	reasonTooLarge    = "too_large"
)

// Reasons that refine capture outcomes in collectord_captures_total.
const (
	reasonAssemblerQueueFull = "assembler_queue_full"
	reasonEngineClosed       = "engine_closed"
	reasonUnexpectedMessage  = "unexpected_message"
	reasonAbandoned          = "abandoned"
	reasonRequestIncomplete  = "request_incomplete"
	reasonResponseIncomplete = "response_incomplete"
	reasonResponseStatus     = "response_status"
	reasonResponseBody       = "response_body"

	// reasonWorkflowMissing: the collector's pre-queue workflow does not
	// exist (any more) in its app.
	reasonWorkflowMissing = "workflow_missing"
	// reasonWorkflowError: the workflow did not compile or one of its
	// operators failed.
	reasonWorkflowError = "workflow_error"
	// reasonWorkflowsUnavailable: a collector names a pre-queue workflow but
	// the engine was built without Deps.Workflows.
	reasonWorkflowsUnavailable = "workflows_unavailable"
)

// exchangeResult indexes the label sets of collectord_exchanges_total.
type exchangeResult int

const (
	exchangeNotPredict exchangeResult = iota
	exchangeEmptyBody
	exchangeNoCaller
	exchangeNoCollector
	exchangeTooLarge
	exchangeCaptured
	exchangeResultCount
)

// exchangeLabels lists the result and reason of each exchangeResult.
var exchangeLabels = [exchangeResultCount][2]string{
	exchangeNotPredict:  {resultFastPath, reasonNotPredict},
	exchangeEmptyBody:   {resultFastPath, reasonEmptyBody},
	exchangeNoCaller:    {resultFastPath, reasonNoCaller},
	exchangeNoCollector: {resultFastPath, reasonNoCollector},
	exchangeTooLarge:    {resultFastPath, reasonTooLarge},
	exchangeCaptured:    {resultCaptured, ""},
}

// metrics holds the engine's instruments.
type metrics struct {
	captures *telemetry.Captures
	// inputs counts the same inputs per collector, with the operator that
	// filtered them.
	inputs *telemetry.CollectorInputs

	// exchanges backs collectord_exchanges_total. Every request passes
	// Begin, so it counts with one atomic add and the SDK reads the totals
	// at collection time.
	exchanges [exchangeResultCount]atomic.Int64

	assemblerPanics metric.Int64Counter
}

func newMetrics(meter metric.Meter, queueLength func() int) (*metrics, error) {
	m := &metrics{}
	var err error
	m.captures, err = telemetry.NewCaptures(meter)
	if err != nil {
		return nil, fmt.Errorf("register capture counter: %w", err)
	}
	m.inputs, err = telemetry.NewCollectorInputs(meter)
	if err != nil {
		return nil, fmt.Errorf("register collector inputs counter: %w", err)
	}

	var labels [exchangeResultCount]metric.ObserveOption
	for i, l := range exchangeLabels {
		labels[i] = metric.WithAttributeSet(attribute.NewSet(
			attribute.String("result", l[0]),
			attribute.String("reason", l[1]),
		))
	}
	_, err = meter.Int64ObservableCounter(metricExchanges,
		metric.WithDescription("Predict exchanges seen at request headers, by result: fast_path (nothing more is read, reason says why) or captured."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for i := range m.exchanges {
				o.Observe(m.exchanges[i].Load(), labels[i])
			}
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", metricExchanges, err)
	}

	m.assemblerPanics, err = meter.Int64Counter(metricAssemblerPanics,
		metric.WithDescription("Panics recovered while assembling capture records; each loses one exchange."))
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", metricAssemblerPanics, err)
	}

	_, err = meter.Int64ObservableGauge(metricAssemblerBacklog,
		metric.WithDescription("Finished exchanges waiting for an assembler."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(queueLength()))
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", metricAssemblerBacklog, err)
	}
	return m, nil
}

// countExchange counts one exchange at request headers.
func (m *metrics) countExchange(result exchangeResult) {
	m.exchanges[result].Add(1)
}
