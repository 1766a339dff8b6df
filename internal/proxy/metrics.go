package proxy

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names of the proxy.
const (
	metricCapturePanics  = "collectord_proxy_capture_panics_total"
	metricUpstreamErrors = "collectord_proxy_upstream_errors_total"
)

// metrics holds the proxy's instruments. The label sets are built once, so
// counting allocates nothing.
type metrics struct {
	capturePanics  metric.Int64Counter
	phaseOptions   map[string]metric.AddOption
	upstreamErrors metric.Int64Counter
}

func newMetrics(meter metric.Meter) (*metrics, error) {
	panics, err := meter.Int64Counter(metricCapturePanics,
		metric.WithDescription("Panics recovered in capture calls of proxied requests, by exchange phase; each request went on uncaptured."))
	if err != nil {
		return nil, err
	}
	upstreamErrors, err := meter.Int64Counter(metricUpstreamErrors,
		metric.WithDescription("Proxied requests the upstream could not serve (connection refused, reset, timeout); the client got 502 or gRPC UNAVAILABLE."))
	if err != nil {
		return nil, err
	}

	m := &metrics{capturePanics: panics, upstreamErrors: upstreamErrors, phaseOptions: make(map[string]metric.AddOption)}
	for _, phase := range []string{
		phaseBegin, phaseRequestBody, phaseRequestTrailers,
		phaseResponseHeaders, phaseResponseBody, phaseResponseTrailers, phaseClose,
	} {
		m.phaseOptions[phase] = metric.WithAttributeSet(attribute.NewSet(attribute.String("phase", phase)))
	}
	return m, nil
}

// capturePanic counts one recovered panic in phase, one of the phase
// constants.
func (m *metrics) capturePanic(phase string) {
	m.capturePanics.Add(context.Background(), 1, m.phaseOptions[phase])
}
