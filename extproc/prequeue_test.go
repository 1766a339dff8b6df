package extproc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

var (
	_ filter.Operator = (*gateOperator)(nil)
	_ workflow.Finder = (*gatedFinder)(nil)
)

// gateOperator is a workflow operator that holds every input until the test
// opens the gate, standing in for a slow workflow.
type gateOperator struct {
	// entered receives one value per Apply that started waiting.
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	// returned counts the Apply calls that finished.
	returned atomic.Int32
}

func newGate() *gateOperator {
	return &gateOperator{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gateOperator) Type() string { return filter.TypeMetadataFilter }

func (g *gateOperator) Apply(ctx context.Context, _ *filter.Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	g.entered <- struct{}{}
	defer g.returned.Add(1)
	select {
	case <-g.release:
		return concepts, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open lets every held and later evaluation through. It may be called again.
func (g *gateOperator) open() {
	g.once.Do(func() { close(g.release) })
}

// blocked reports whether no evaluation has passed the gate yet.
func (g *gateOperator) blocked() bool {
	select {
	case <-g.release:
		return false
	default:
		return g.returned.Load() == 0
	}
}

// gatedFinder serves the one workflow "gated" of owner/dest, made of the
// gate.
type gatedFinder struct {
	flow *filter.Workflow
}

func (f gatedFinder) Find(_ context.Context, userID, appID, id string) (*workflow.Compiled, error) {
	if userID != "owner" || appID != "dest" || id != "gated" {
		return nil, fmt.Errorf("workflow %s/%s/%s: %w", userID, appID, id, workflow.ErrNotFound)
	}
	return &workflow.Compiled{ID: id, Version: 2, Flow: f.flow}, nil
}

// newGatedHarness runs the real server and engine with one collector whose
// pre-queue workflow is the gate. One assembler makes the gate hold every
// evaluation behind the first.
func newGatedHarness(t *testing.T, gate *gateOperator) *harness {
	t.Helper()
	h := &harness{sink: &recordingSink{}, reader: sdkmetric.NewManualReader(), logs: &syncBuffer{}}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)).Meter("test")
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	c := newCollector("gated-collector")
	c.PreQueueWorkflowID = "gated"
	engine, err := capture.New(capture.Config{Assemblers: 1}, capture.Deps{
		Callers:    keyCallers{},
		Collectors: &fixedFinder{collectors: []collector.Collector{c}},
		Sink:       h.sink,
		Workflows:  gatedFinder{flow: &filter.Workflow{Nodes: []filter.Node{{ID: "gate", Operator: gate}}}},
		Meter:      meter,
		Logger:     logger,
	})
	if err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	engine.Start(context.Background())
	h.engine = engine

	server, err := New(Config{}, engine, logger, meter)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.serve(t, server, harnessConfig{})
	t.Cleanup(func() {
		h.finish(t)
		if t.Failed() {
			t.Logf("server logs:\n%s", h.logs.String())
		}
	})
	// Cleanups run last first: a test that fails before it opens the gate
	// must not leave the assembler waiting while finish drains the engine.
	t.Cleanup(gate.open)
	return h
}

// gatedPredicts returns two predicts of one protocol, each with one input
// whose SUCCESS output has a concept, and the IDs of those inputs.
func gatedPredicts(t *testing.T, protocol string) (first, second *envoytest.Exchange, ids []string) {
	t.Helper()
	predict := func(id string) *envoytest.Exchange {
		input := imageInput(id, 4096)
		response := &clarifaipb.MultiOutputResponse{
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
			Outputs: []*clarifaipb.Output{{
				Id:     "o-" + id,
				Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
				Input:  &clarifaipb.Input{Id: id},
				Model:  &clarifaipb.Model{Id: "general", UserId: "clarifai", AppId: "main", ModelVersion: &clarifaipb.ModelVersion{Id: "v1"}},
				Data:   &clarifaipb.Data{Concepts: []*clarifaipb.Concept{{Id: "cat", Name: "cat", Value: 0.4}}},
			}},
		}

		if protocol == "grpc" {
			request := &clarifaipb.PostModelOutputsRequest{
				UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
				ModelId:   "general",
				Inputs:    []*clarifaipb.Input{input},
			}
			return &envoytest.Exchange{
				RequestHeaders: envoytest.Request("POST", grpcPath, "model.local", "application/grpc",
					envoytest.Header{Name: "te", Value: "trailers"},
					envoytest.Header{Name: "authorization", Value: aliceAuth},
					envoytest.Header{Name: "x-request-id", Value: "req-" + id}),
				RequestBody:      envoytest.Chunks(grpcFrame(t, request), 3),
				ResponseHeaders:  envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/grpc"}),
				ResponseBody:     envoytest.Chunks(grpcFrame(t, response), 2),
				ResponseTrailers: []envoytest.Header{{Name: "grpc-status", Value: "0"}},
			}
		}

		request, err := protojson.Marshal(&clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}})
		if err != nil {
			t.Fatal(err)
		}
		answer, err := protojson.Marshal(response)
		if err != nil {
			t.Fatal(err)
		}
		return &envoytest.Exchange{
			RequestHeaders: envoytest.Request("POST", restPath, "model.local", "application/json",
				envoytest.Header{Name: "authorization", Value: aliceAuth},
				envoytest.Header{Name: "content-length", Value: fmt.Sprint(len(request))},
				envoytest.Header{Name: "x-request-id", Value: "req-" + id}),
			RequestBody:     envoytest.Chunks(request, 3),
			ResponseHeaders: envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/json"}),
			ResponseBody:    envoytest.Chunks(answer, 2),
		}
	}
	return predict("first"), predict("second"), []string{"first", "second"}
}

// isRequestPhase reports whether a step belongs to the request side.
func isRequestPhase(p envoytest.Phase) bool {
	return p == envoytest.PhaseRequestHeaders || p == envoytest.PhaseRequestBody || p == envoytest.PhaseRequestTrailers
}

// TestServer_PreQueueWorkflowNeverDelaysEnvoy shows that a pre-queue
// workflow runs after the exchange and off the stream. While a workflow
// evaluation is held, every ext_proc reply of the request and the response
// still arrives. The record follows once the workflow lets it through.
func TestServer_PreQueueWorkflowNeverDelaysEnvoy(t *testing.T) {
	for _, protocol := range []string{"rest", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			gate := newGate()
			h := newGatedHarness(t, gate)
			client := h.dial(t, shippedConfig(t))
			first, second, ids := gatedPredicts(t, protocol)

			// The first predict: its request replies arrive before its
			// response is sent, and its response replies before its
			// workflow starts, because the workflow waits for the response
			// to end and then runs in an assembler.
			var firstSteps []envoytest.Step
			responseSent := false
			first.AfterMessage = func(step envoytest.Step) {
				firstSteps = append(firstSteps, step)
				if isRequestPhase(step.Phase) && responseSent {
					t.Errorf("the reply to %s came after the response was sent", step)
				}
				if !isRequestPhase(step.Phase) {
					responseSent = true
				}
				if len(gate.entered) != 0 {
					t.Errorf("the workflow started before the reply to %s", step)
				}
			}
			r := client.Play(context.Background(), first)
			requireClean(t, first, r)
			requireOneReplyEach(t, r)
			if !slices.ContainsFunc(firstSteps, func(s envoytest.Step) bool { return s.Phase == envoytest.PhaseResponseBody }) {
				t.Fatalf("steps %v: the response body was not sent to the processor, so the workflow has no outputs", firstSteps)
			}

			// The stream has ended, so the exchange reaches the assembler and
			// the workflow holds it at the gate.
			<-gate.entered

			// The second predict plays entirely while that evaluation is
			// held: every reply, request and response side, comes back.
			var secondSteps []envoytest.Step
			second.AfterMessage = func(step envoytest.Step) {
				secondSteps = append(secondSteps, step)
				if !gate.blocked() {
					t.Errorf("the gate opened before the reply to %s", step)
				}
			}
			r = client.Play(context.Background(), second)
			requireClean(t, second, r)
			requireOneReplyEach(t, r)
			if !slices.Equal(secondSteps, firstSteps) {
				t.Errorf("second predict steps %v, want those of the first %v", secondSteps, firstSteps)
			}
			if !gate.blocked() {
				t.Fatal("the gate opened before the test released it")
			}
			if records := h.sink.all(); len(records) != 0 {
				t.Fatalf("%d records before the workflow let any input through", len(records))
			}

			gate.open()
			records := h.finish(t)

			var got []string
			for _, rec := range records {
				got = append(got, rec.GetInput().GetId())
				if rec.GetPreQueueWorkflowId() != "gated" || rec.GetPreQueueWorkflowVersion() != 2 {
					t.Errorf("record %s: pre-queue workflow %q v%d, want gated v2", rec.GetId(), rec.GetPreQueueWorkflowId(), rec.GetPreQueueWorkflowVersion())
				}
				if rec.GetTopConceptId() != "cat" {
					t.Errorf("record %s: top_concept_id = %q, want cat", rec.GetId(), rec.GetTopConceptId())
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, ids) {
				t.Errorf("records for inputs %v, want %v", got, ids)
			}
		})
	}
}
