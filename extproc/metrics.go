package extproc

import (
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names of the ext_proc server.
const (
	metricStreams  = "collectord_extproc_streams_total"
	metricMessages = "collectord_extproc_messages_total"
	metricPanics   = "collectord_extproc_panics_total"
	// metricExchangesOpen is a gauge: capture exchanges begun by a stream
	// and not yet closed or abandoned.
	metricExchangesOpen = "collectord_extproc_exchanges_open"
)

// Values of the end label of collectord_extproc_streams_total.
const (
	endEOF      = "eof"
	endCanceled = "canceled"
	// endReplyCanceled: the peer reset the stream while the server was
	// handling a message, before its reply was sent. Envoy does that when
	// the reply takes longer than message_timeout.
	endReplyCanceled = "reply_canceled"
	// endIdleTimeout: the server ended a stream that sent nothing for
	// Config.IdleTimeout.
	endIdleTimeout = "idle_timeout"
	endError       = "error"
)

// phase is one ext_proc message type. Its name is the label value of the
// phase label, so label values come from this fixed set only.
type phase int

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
	// phaseUnknown is a message with no known oneof set; a newer Envoy may
	// send one.
	phaseUnknown
	// phaseStreamEnd labels a panic while closing the exchange.
	phaseStreamEnd
	phaseCount
)

var phaseNames = [phaseCount]string{
	phaseRequestHeaders:   "request_headers",
	phaseRequestBody:      "request_body",
	phaseRequestTrailers:  "request_trailers",
	phaseResponseHeaders:  "response_headers",
	phaseResponseBody:     "response_body",
	phaseResponseTrailers: "response_trailers",
	phaseUnknown:          "unknown",
	phaseStreamEnd:        "stream_end",
}

func (p phase) String() string { return phaseNames[p] }

// metrics holds the server's instruments with every label set built once,
// so counting on the request path allocates nothing.
type metrics struct {
	streams metric.Int64Counter
	ends    map[string][]metric.AddOption

	messages metric.Int64Counter
	panics   metric.Int64Counter
	byPhase  [phaseCount][]metric.AddOption

	exchangesOpen metric.Int64UpDownCounter
}

func newMetrics(meter metric.Meter) (*metrics, error) {
	m := &metrics{ends: map[string][]metric.AddOption{}}
	var err error

	m.streams, err = meter.Int64Counter(metricStreams,
		metric.WithDescription("ext_proc streams by how they ended: eof and canceled (both normal), reply_canceled (reset while a reply was due, as after an Envoy message timeout), idle_timeout, or error."))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", metricStreams, err)
	}
	m.messages, err = meter.Int64Counter(metricMessages,
		metric.WithDescription("ext_proc messages received, by phase."))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", metricMessages, err)
	}
	m.panics, err = meter.Int64Counter(metricPanics,
		metric.WithDescription("Panics recovered while handling an ext_proc message, by phase; the exchange is abandoned."))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", metricPanics, err)
	}

	m.exchangesOpen, err = meter.Int64UpDownCounter(metricExchangesOpen,
		metric.WithDescription("Capture exchanges begun by an ext_proc stream and not yet closed; it returns to 0 when no stream is open."))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", metricExchangesOpen, err)
	}

	for _, end := range []string{endEOF, endCanceled, endReplyCanceled, endIdleTimeout, endError} {
		m.ends[end] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("end", end)))}
	}
	for p := range phaseCount {
		m.byPhase[p] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("phase", p.String())))}
	}
	return m, nil
}
