package predict

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// requireKnownError fails unless err wraps one of the package's sentinels,
// so that capture can always name why a body was not parsed.
func requireKnownError(t *testing.T, err error) {
	t.Helper()
	for _, sentinel := range []error{ErrMalformed, ErrTruncatedFrame, ErrUnsupportedEncoding, ErrTooLarge} {
		if errors.Is(err, sentinel) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

// requireTruncationReported fails unless a body whose first frame is
// incomplete is reported as ErrTruncatedFrame.
func requireTruncationReported(t *testing.T, body []byte, err error) {
	t.Helper()
	if len(body) == 0 {
		return
	}
	incomplete := len(body) < frameHeaderLen ||
		uint64(binary.BigEndian.Uint32(body[1:frameHeaderLen])) > uint64(len(body)-frameHeaderLen)
	if incomplete && !errors.Is(err, ErrTruncatedFrame) {
		t.Fatalf("incomplete frame of %d bytes: error = %v, want ErrTruncatedFrame", len(body), err)
	}
}

// deterministicBytes encodes inputs so that two parses can be compared even
// when they hold NaN, which proto.Equal treats as unequal to itself.
func deterministicBytes(t *testing.T, inputs []*clarifaipb.Input) []byte {
	t.Helper()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&clarifaipb.PostModelOutputsRequest{Inputs: inputs})
	if err != nil {
		t.Fatalf("marshal inputs: %v", err)
	}
	return data
}

// FuzzParseRequestREST parses REST bodies; whatever parses must parse to the
// same inputs when sent as a gRPC frame.
func FuzzParseRequestREST(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"data":{"image":{"url":"https://img.example/a.jpg"}}}]}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseRequest(restRoute, body, "")
		if err != nil {
			requireKnownError(t, err)
			return
		}
		if got.ModelID != restRoute.ModelID {
			t.Fatalf("ModelID = %q, want the path's %q", got.ModelID, restRoute.ModelID)
		}

		asGRPC := &clarifaipb.PostModelOutputsRequest{ModelId: got.ModelID, Inputs: got.Inputs}
		payload, err := proto.Marshal(asGRPC)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseRequest(grpcRoute, frame(false, payload), "")
		if err != nil {
			t.Fatalf("the same request as gRPC: %v", err)
		}
		if !bytes.Equal(deterministicBytes(t, again.Inputs), deterministicBytes(t, got.Inputs)) {
			t.Fatalf("inputs differ between REST and gRPC")
		}
	})
}

// FuzzParseRequestGRPC parses framed gRPC request bodies under any
// grpc-encoding value.
func FuzzParseRequestGRPC(f *testing.F) {
	f.Add(frame(false, []byte("\x12\x02m1")), "")

	f.Fuzz(func(t *testing.T, body []byte, encoding string) {
		got, err := ParseRequest(grpcRoute, body, encoding)
		requireTruncationReported(t, body, err)
		if err != nil {
			requireKnownError(t, err)
			return
		}
		if got.ModelID == "" {
			t.Fatalf("parsed a request without a model ID")
		}
	})
}

// FuzzParseResponse parses response bodies as REST JSON or as gRPC frames.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"status":{"code":10000},"outputs":[]}`), false, "")

	f.Fuzz(func(t *testing.T, body []byte, isGRPC bool, encoding string) {
		route := restRoute
		if isGRPC {
			route = grpcRoute
		}
		got, err := ParseResponse(route, body, encoding)
		if isGRPC {
			requireTruncationReported(t, body, err)
		}
		if err != nil {
			requireKnownError(t, err)
			return
		}

		want := ""
		for _, output := range got.Outputs {
			if id := output.GetModel().GetModelVersion().GetId(); id != "" {
				want = id
				break
			}
		}
		if got.ModelVersionID != want {
			t.Fatalf("ModelVersionID = %q, want %q", got.ModelVersionID, want)
		}
		for i := range got.Outputs {
			if out := got.OutputFor(i, ""); out != nil && out.GetStatus().GetCode() != clarifaipb.StatusCode_SUCCESS {
				t.Fatalf("OutputFor(%d) returned an output with status %v", i, out.GetStatus().GetCode())
			}
		}
	})
}
