package api

import (
	"fmt"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Attribute keys of collectord_api_requests_total. Values come from fixed
// sets: rpc from the RPC names below, code from the StatusCode enum names.
const (
	attrRPC  = "rpc"
	attrCode = "code"
)

type apiMetrics struct {
	// requests counts management API requests by RPC and Clarifai status code.
	requests metric.Int64Counter
}

func newAPIMetrics(meter metric.Meter) (*apiMetrics, error) {
	requests, err := meter.Int64Counter("collectord_api_requests_total",
		metric.WithDescription("Management API requests by RPC and Clarifai status code."))
	if err != nil {
		return nil, fmt.Errorf("api: create collectord_api_requests_total: %w", err)
	}
	return &apiMetrics{requests: requests}, nil
}

func noopMeter() metric.Meter {
	return noop.NewMeterProvider().Meter("collectord/api")
}
