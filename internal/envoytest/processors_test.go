package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typepb "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// processStream is the server side of one Process stream.
type processStream = grpc.BidiStreamingServer[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]

// testProcessor is a hand-written processor served on loopback.
type testProcessor struct {
	addr string
	srv  *grpc.Server

	mu       sync.Mutex
	received []*extprocpb.ProcessingRequest
}

// startProcessor serves handle on 127.0.0.1 with a random port. A panic in
// handle becomes an Internal status, as a crash of one stream would look to
// Envoy without taking the test binary down.
func startProcessor(t *testing.T, handle func(p *testProcessor, stream processStream) error) *testProcessor {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &testProcessor{addr: lis.Addr().String()}
	p.srv = grpc.NewServer(grpc.StreamInterceptor(recoverPanics))
	extprocpb.RegisterExternalProcessorServer(p.srv, &processorAdapter{fn: func(stream processStream) error {
		return handle(p, stream)
	}})
	go p.srv.Serve(lis)
	t.Cleanup(p.srv.Stop)
	return p
}

type processorAdapter struct {
	extprocpb.UnimplementedExternalProcessorServer
	fn func(processStream) error
}

func (a *processorAdapter) Process(stream processStream) error { return a.fn(stream) }

func recoverPanics(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "processor panicked: %v", r)
		}
	}()
	return handler(srv, ss)
}

// recv receives one message and records it; ok is false at the end of the
// stream.
func (p *testProcessor) recv(stream processStream) (*extprocpb.ProcessingRequest, bool, error) {
	req, err := stream.Recv()
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	p.received = append(p.received, req)
	p.mu.Unlock()
	return req, true, nil
}

func (p *testProcessor) messages() []*extprocpb.ProcessingRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*extprocpb.ProcessingRequest(nil), p.received...)
}

// continueReply returns the plain CONTINUE reply that matches req.
func continueReply(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
	common := &extprocpb.CommonResponse{}
	switch req.GetRequest().(type) {
	case *extprocpb.ProcessingRequest_RequestHeaders:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocpb.HeadersResponse{Response: common}}}
	case *extprocpb.ProcessingRequest_ResponseHeaders:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocpb.HeadersResponse{Response: common}}}
	case *extprocpb.ProcessingRequest_RequestBody:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestBody{RequestBody: &extprocpb.BodyResponse{Response: common}}}
	case *extprocpb.ProcessingRequest_ResponseBody:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseBody{ResponseBody: &extprocpb.BodyResponse{Response: common}}}
	case *extprocpb.ProcessingRequest_RequestTrailers:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocpb.TrailersResponse{}}}
	case *extprocpb.ProcessingRequest_ResponseTrailers:
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocpb.TrailersResponse{}}}
	}
	panic(fmt.Sprintf("no reply type for %T", req.GetRequest()))
}

// replyEach replies to every message with reply(req) until the stream ends,
// then ends it with OK.
func replyEach(reply func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse) func(*testProcessor, processStream) error {
	return func(p *testProcessor, stream processStream) error {
		for {
			req, ok, err := p.recv(stream)
			if !ok {
				return err
			}
			if err := stream.Send(reply(req)); err != nil {
				return err
			}
		}
	}
}

// correct replies to every message with a plain CONTINUE.
var correct = replyEach(continueReply)

// overriding replies to request headers with a CONTINUE carrying mode.
func overriding(mode *filterpb.ProcessingMode) func(*testProcessor, processStream) error {
	return replyEach(func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
		reply := continueReply(req)
		if RequestPhase(req) == PhaseRequestHeaders {
			reply.ModeOverride = mode
		}
		return reply
	})
}

// wrongType replies to request body chunks with a request-headers reply.
var wrongType = replyEach(func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
	if RequestPhase(req) == PhaseRequestBody {
		return continueReply(&extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestHeaders{}})
	}
	return continueReply(req)
})

// silent reads every message and never replies, like a processor stuck
// forever, so a timeout does not depend on how fast the machine is.
func silent(p *testProcessor, stream processStream) error {
	for {
		if _, ok, err := p.recv(stream); !ok {
			return err
		}
	}
}

// panicsOnSecondChunk replies correctly, then panics on the second request
// body chunk.
func panicsOnSecondChunk(p *testProcessor, stream processStream) error {
	chunks := 0
	for {
		req, ok, err := p.recv(stream)
		if !ok {
			return err
		}
		if RequestPhase(req) == PhaseRequestBody {
			chunks++
			if chunks == 2 {
				panic("processor bug")
			}
		}
		if err := stream.Send(continueReply(req)); err != nil {
			return err
		}
	}
}

// twice sends two replies to request headers.
var twice = func(p *testProcessor, stream processStream) error {
	for {
		req, ok, err := p.recv(stream)
		if !ok {
			return err
		}
		if err := stream.Send(continueReply(req)); err != nil {
			return err
		}
		if RequestPhase(req) == PhaseRequestHeaders {
			if err := stream.Send(continueReply(req)); err != nil {
				return err
			}
		}
	}
}

// closesAfterHeaders replies to the request headers, then ends the stream with
// OK.
func closesAfterHeaders(p *testProcessor, stream processStream) error {
	req, ok, err := p.recv(stream)
	if !ok {
		return err
	}
	return stream.Send(continueReply(req))
}

// dial returns a client for p that the test closes.
func dial(t *testing.T, addr string, cfg Config) *Client {
	t.Helper()
	c, err := Dial(addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func play(t *testing.T, c *Client, ex *Exchange) *Result {
	t.Helper()
	return c.Play(context.Background(), ex)
}

func statusCode(code int) *typepb.HttpStatus {
	return &typepb.HttpStatus{Code: typepb.StatusCode(code)}
}
