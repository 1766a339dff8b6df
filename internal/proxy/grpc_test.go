package proxy

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/examples/demomodel/model"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
)

// behaviorHeader selects the fake gRPC upstream's response.
const behaviorHeader = "x-test-behavior"

// grpcUpstream responds to PostModelOutputs with the demo model server, or with
// a gRPC error carried the two ways a server may send one: in trailers
// after the headers, or in a trailers-only response.
func grpcUpstream(demo http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get(behaviorHeader) {
		case "invalid-in-trailers":
			w.Header().Set("Content-Type", "application/grpc")
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "3")
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "inputs[0]: image is empty")
		case "unavailable-trailers-only":
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "14")
			w.Header().Set("Grpc-Message", "model is loading")
			w.WriteHeader(http.StatusOK)
		default:
			demo.ServeHTTP(w, r)
		}
	})
}

func newGRPCClient(t testing.TB, address string) clarifaipb.V2Client {
	t.Helper()
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The same :authority direct and through the proxy.
		grpc.WithAuthority("models.internal:8000"))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return clarifaipb.NewV2Client(conn)
}

// grpcResult is what a gRPC client received.
type grpcResult struct {
	response *clarifaipb.MultiOutputResponse
	status   *status.Status
}

func callPredict(t testing.TB, client clarifaipb.V2Client, behavior, requestID string, req *clarifaipb.PostModelOutputsRequest) grpcResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx,
		behaviorHeader, behavior, "x-request-id", requestID, callerHeader, "caller-1")

	response, err := client.PostModelOutputs(ctx, req)
	return grpcResult{response: response, status: status.Convert(err)}
}

func TestProxy_GRPCStatuses(t *testing.T) {
	rec := &recorder{next: grpcUpstream(model.New(model.Config{}).Handler())}
	upstream := startH2CServer(t, rec)
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{demoCollector("colors")}})
	directClient := newGRPCClient(t, upstream.Listener.Addr().String())
	proxiedClient := newGRPCClient(t, h.server.Listener.Addr().String())

	req := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "demo", AppId: "main"},
		ModelId:   "colors",
		Inputs: []*clarifaipb.Input{{
			Id:   "img-1",
			Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: smallPNG(t, 8)}},
		}},
	}
	tests := []struct {
		behavior    string
		wantCode    codes.Code
		wantMessage string
	}{
		{"ok", codes.OK, ""},
		{"invalid-in-trailers", codes.InvalidArgument, "inputs[0]: image is empty"},
		{"unavailable-trailers-only", codes.Unavailable, "model is loading"},
	}
	for _, tt := range tests {
		t.Run(tt.behavior, func(t *testing.T) {
			direct := callPredict(t, directClient, tt.behavior, "direct-"+tt.behavior, req)
			directSeen := rec.last(t)
			proxied := callPredict(t, proxiedClient, tt.behavior, "proxied-"+tt.behavior, req)
			proxiedSeen := rec.last(t)

			if got := proxied.status.Code(); got != tt.wantCode {
				t.Errorf("proxied code = %v (%q), want %v", got, proxied.status.Message(), tt.wantCode)
			}
			if got := proxied.status.Message(); got != tt.wantMessage {
				t.Errorf("proxied message = %q, want %q", got, tt.wantMessage)
			}
			if direct.status.Code() != proxied.status.Code() || direct.status.Message() != proxied.status.Message() {
				t.Errorf("status: direct %v, proxied %v", direct.status, proxied.status)
			}
			if !proto.Equal(direct.response, proxied.response) {
				t.Errorf("response message: direct %v, proxied %v", direct.response, proxied.response)
			}

			if got := proxiedSeen.header.Get("Te"); got != "trailers" {
				t.Errorf("upstream got TE %q, want trailers", got)
			}
			// The request ID differs on purpose, so that records name their
			// call, and grpc-timeout is the deadline left when each was sent.
			for _, seen := range []recordedRequest{directSeen, proxiedSeen} {
				if seen.header.Get("Grpc-Timeout") == "" {
					t.Errorf("upstream got no grpc-timeout: %v", seen.header)
				}
				seen.header.Del("Grpc-Timeout")
				seen.header.Del("X-Request-Id")
			}
			requireSameRequest(t, directSeen, proxiedSeen)
		})
	}

	records := h.finish(t)
	if len(records) != 1 || records[0].GetRequestId() != "proxied-ok" {
		t.Fatalf("records = %v, want one record of request proxied-ok", records)
	}
	if !proto.Equal(records[0].GetInput(), req.GetInputs()[0]) {
		t.Errorf("captured input = %v, want %v", records[0].GetInput(), req.GetInputs()[0])
	}
	if got := h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeUpstreamError); got != 2 {
		t.Errorf("upstream_error captures = %d, want 2", got)
	}
}

func TestProxy_GRPCUpstreamDown(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	closedAddress := listener.Addr().String()
	listener.Close()
	h := newHarness(t, harnessConfig{upstream: "http://" + closedAddress})
	client := newGRPCClient(t, h.server.Listener.Addr().String())

	result := callPredict(t, client, "ok", "down-1", &clarifaipb.PostModelOutputsRequest{ModelId: "colors"})

	if got := result.status.Code(); got != codes.Unavailable {
		t.Errorf("code = %v (%q), want Unavailable", got, result.status.Message())
	}
	if got := h.counter(t, metricUpstreamErrors); got != 1 {
		t.Errorf("%s = %d, want 1", metricUpstreamErrors, got)
	}
}
