package extproc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
)

// decodeHeaderMap builds a HeaderMap from fuzz bytes. Entries are separated
// by a newline. An entry's first byte selects where the value goes (mod 4:
// 0 raw_value, 1 value, 2 both with value reversed, 3 neither), and the
// rest is key=value.
func decodeHeaderMap(raw []byte) *corepb.HeaderMap {
	m := &corepb.HeaderMap{}
	for _, entry := range bytes.Split(raw, []byte("\n")) {
		if len(entry) == 0 {
			continue
		}
		form, rest := entry[0]%4, entry[1:]
		key, value, _ := bytes.Cut(rest, []byte("="))
		hv := &corepb.HeaderValue{Key: string(key)}
		switch form {
		case 0:
			hv.RawValue = bytes.Clone(value)
		case 1:
			hv.Value = string(value)
		case 2:
			hv.RawValue = bytes.Clone(value)
			reversed := bytes.Clone(value)
			for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
				reversed[i], reversed[j] = reversed[j], reversed[i]
			}
			hv.Value = string(reversed)
		}
		m.Headers = append(m.Headers, hv)
	}
	return m
}

// asciiEqualFold compares HTTP field names: case-insensitive in ASCII only,
// as RFC 9110 defines them.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if asciiLower(a[i]) != asciiLower(b[i]) {
			return false
		}
	}
	return true
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// FuzzHeaderMap checks headerMap.Get against the rules of Envoy's HeaderMap:
// the first entry whose key matches the name case-insensitively wins, and
// its raw_value (Envoy 1.32 and later) takes precedence over value (older
// Envoy).
func FuzzHeaderMap(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		m := decodeHeaderMap(raw)

		want := ""
		for _, hv := range m.GetHeaders() {
			if !asciiEqualFold(hv.GetKey(), name) {
				continue
			}
			want = hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				want = string(hv.GetRawValue())
			}
			break
		}

		got := headerMap{m}.Get(name)
		if got != want {
			t.Errorf("Get(%q) = %q, want %q in %v", name, got, want, m.GetHeaders())
		}
		if upper := (headerMap{m}).Get(asciiUpper(name)); upper != got {
			t.Errorf("Get(%q) = %q, but Get(%q) = %q", asciiUpper(name), upper, name, got)
		}
	})
}

// Header templates of a fuzzed stream's request headers.
const (
	templateREST = iota
	templateGRPC
	templateNotPredict
	templateNoCaller
	templateCount
)

// Message kinds of a fuzzed stream, the low three bits of an op byte.
const (
	kindRequestHeaders = iota
	kindRequestBody
	kindRequestTrailers
	kindResponseHeaders
	kindResponseBody
	kindResponseTrailers
	kindEmpty
	// kindRequestHeadersOther is request headers of the template in bits 5
	// and 6 of the op byte instead of the stream's.
	kindRequestHeadersOther
)

// Flags of an op byte.
const (
	opEndOfStream = 0x08
	opMetadata    = 0x10
)

// maxFuzzMessages bounds the messages of one fuzzed stream.
const maxFuzzMessages = 64

func templateHeaders(template int, extra []byte) []*corepb.HeaderValue {
	h := func(k, v string) *corepb.HeaderValue { return &corepb.HeaderValue{Key: k, RawValue: []byte(v)} }
	var headers []*corepb.HeaderValue
	switch template {
	case templateREST:
		headers = []*corepb.HeaderValue{h(":method", "POST"), h(":path", restPath), h("content-type", "application/json"), h("authorization", aliceAuth)}
	case templateGRPC:
		headers = []*corepb.HeaderValue{h(":method", "POST"), h(":path", grpcPath), h("content-type", "application/grpc"), h("te", "trailers"), h("authorization", aliceAuth)}
	case templateNotPredict:
		headers = []*corepb.HeaderValue{h(":method", "GET"), h(":path", "/healthz"), h("authorization", aliceAuth)}
	default:
		headers = []*corepb.HeaderValue{h(":method", "POST"), h(":path", restPath), h("content-type", "application/json")}
	}
	headers = append(headers, h(":authority", "model.local"), h(":scheme", "http"))
	return append(headers, &corepb.HeaderValue{Key: "x-fuzz", RawValue: extra})
}

// fuzzStream is a stream of messages decoded from fuzz bytes.
type fuzzStream struct {
	observability bool
	messages      []*extprocpb.ProcessingRequest
}

// decodeFuzzStream turns fuzz bytes into ProcessingRequest messages. The
// first byte sets the stream: bit 0 observability mode, bits 1 and 2 the
// request headers template. Each message that follows is an op byte, a
// length byte, and that many bytes of content. The op byte holds the kind in
// bits 0-2, then opEndOfStream, opMetadata, and the other template in bits
// 5-6. The content is a body chunk, the value of an x-fuzz header, :status,
// grpc-status, or the subject in jwt_authn metadata.
func decodeFuzzStream(data []byte) fuzzStream {
	var fs fuzzStream
	if len(data) == 0 {
		return fs
	}
	fs.observability = data[0]&1 != 0
	template := int(data[0]>>1) % templateCount
	data = data[1:]

	for len(data) > 0 && len(fs.messages) < maxFuzzMessages {
		op := data[0]
		data = data[1:]
		n := 0
		if len(data) > 0 {
			n = min(int(data[0]), len(data)-1)
			data = data[1:]
		}
		content := data[:n]
		data = data[n:]

		m := fuzzMessage(op, template, content)
		m.ObservabilityMode = fs.observability
		if op&opMetadata != 0 {
			m.MetadataContext = &corepb.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"envoy.filters.http.jwt_authn": {Fields: map[string]*structpb.Value{
					"sub": structpb.NewStringValue(strings.ToValidUTF8(string(content), "?")),
				}},
			}}
		}
		fs.messages = append(fs.messages, m)
	}
	return fs
}

func fuzzMessage(op byte, template int, content []byte) *extprocpb.ProcessingRequest {
	eos := op&opEndOfStream != 0
	headers := func(k string) *corepb.HeaderMap {
		return &corepb.HeaderMap{Headers: []*corepb.HeaderValue{{Key: k, RawValue: bytes.Clone(content)}}}
	}

	switch op & 0x07 {
	case kindRequestHeaders:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocpb.HttpHeaders{
			Headers: &corepb.HeaderMap{Headers: templateHeaders(template, bytes.Clone(content))}, EndOfStream: eos,
		}}}
	case kindRequestHeadersOther:
		other := int(op>>5) % templateCount
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocpb.HttpHeaders{
			Headers: &corepb.HeaderMap{Headers: templateHeaders(other, bytes.Clone(content))}, EndOfStream: eos,
		}}}
	case kindRequestBody:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestBody{RequestBody: &extprocpb.HttpBody{
			Body: bytes.Clone(content), EndOfStream: eos,
		}}}
	case kindRequestTrailers:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocpb.HttpTrailers{
			Trailers: headers("x-fuzz"),
		}}}
	case kindResponseHeaders:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocpb.HttpHeaders{
			Headers: headers(":status"), EndOfStream: eos,
		}}}
	case kindResponseBody:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseBody{ResponseBody: &extprocpb.HttpBody{
			Body: bytes.Clone(content), EndOfStream: eos,
		}}}
	case kindResponseTrailers:
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocpb.HttpTrailers{
			Trailers: headers("grpc-status"),
		}}}
	}
	return &extprocpb.ProcessingRequest{}
}

// fuzzOp is one message of encodeFuzzStream's input.
type fuzzOp struct {
	op      byte
	content []byte
}

// encodeFuzzStream is the inverse of decodeFuzzStream, for seeds and
// regression tests. content longer than 255 bytes is cut.
func encodeFuzzStream(flags byte, ops ...fuzzOp) []byte {
	out := []byte{flags}
	for _, o := range ops {
		content := o.content[:min(len(o.content), 255)]
		out = append(out, o.op, byte(len(content)))
		out = append(out, content...)
	}
	return out
}

// FuzzProcessStream feeds arbitrary message sequences into one stream of the
// real server over the real capture engine, through gRPC on loopback. Every
// message must get exactly one reply of its type, a plain CONTINUE (none in
// observability mode), the stream must end with OK, and the exchange must be
// closed when it does.
func FuzzProcessStream(f *testing.F) {
	h := newHarness(f, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	client := extprocpb.NewExternalProcessorClient(conn)

	f.Fuzz(func(t *testing.T, data []byte) {
		playFuzzStream(t, h, client, decodeFuzzStream(data))
	})
}

// playFuzzStream plays fs on one stream and checks the server's behaviour.
func playFuzzStream(t *testing.T, h *harness, client extprocpb.ExternalProcessorClient, fs fuzzStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}

	for i, m := range fs.messages {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send message %d: %v", i, err)
		}
		if fs.observability {
			continue
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("no reply to message %d (%s): %v", i, envoytest.RequestPhase(m), err)
		}
		requireFuzzReply(t, i, m, reply)
	}

	if err := stream.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	// In observability mode any reply would show up here as well.
	if reply, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with reply %v, error %v; want OK and no more replies", reply, err)
	}

	// The server closes the exchange before it ends the stream.
	if got := h.counter(t, metricExchangesOpen); got != 0 {
		t.Errorf("%s = %d after the stream ended, want 0", metricExchangesOpen, got)
	}
	if got := h.counter(t, metricPanics); got != 0 {
		t.Errorf("%s = %d, want 0; server logs:\n%s", metricPanics, got, h.logs.String())
	}
}

// requireFuzzReply checks the reply to message i: the matching type (a
// request-headers reply to a message without a known type), a plain
// CONTINUE, and a mode_override only in a request-headers reply.
func requireFuzzReply(t *testing.T, i int, m *extprocpb.ProcessingRequest, reply *extprocpb.ProcessingResponse) {
	t.Helper()
	want := envoytest.RequestPhase(m)
	if want == 0 {
		want = envoytest.PhaseRequestHeaders
	}
	if got := envoytest.ReplyPhase(reply); got != want {
		t.Errorf("reply %d is %s, want %s", i, got, want)
	}
	if detail := envoytest.Mutation(reply); detail != "" {
		t.Errorf("reply %d: %s", i, detail)
	}
	if reply.GetModeOverride() != nil && want != envoytest.PhaseRequestHeaders {
		t.Errorf("reply %d to %s carries a mode_override, which Envoy ignores there", i, want)
	}
	if reply.GetDynamicMetadata() != nil || reply.GetOverrideMessageTimeout() != nil {
		t.Errorf("reply %d sets dynamic metadata or a message timeout", i)
	}
}

// TestFuzzStream_SeedsCapture checks that the fuzz encoding drives the real
// capture path: the REST and gRPC predict seeds each produce a record.
func TestFuzzStream_SeedsCapture(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := extprocpb.NewExternalProcessorClient(conn)

	for _, seed := range []string{"rest-predict", "grpc-predict"} {
		data := readFuzzSeed(t, "FuzzProcessStream", seed)
		playFuzzStream(t, h, client, decodeFuzzStream(data))
	}

	records := h.finish(t)
	if len(records) != 2 {
		t.Fatalf("got %d records, want one per predict seed", len(records))
	}
	for _, rec := range records {
		if got := rec.GetInput().GetData().GetText().GetRaw(); got != "hi" {
			t.Errorf("captured text %q, want %q", got, "hi")
		}
	}
}

// readFuzzSeed returns the []byte value of a seed corpus file.
func readFuzzSeed(t *testing.T, target, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		t.Fatal(err)
	}
	_, value, ok := strings.Cut(string(raw), "\n[]byte(")
	if !ok {
		t.Fatalf("%s/%s is not a []byte corpus file", target, name)
	}
	data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(value), ")"))
	if err != nil {
		t.Fatalf("%s/%s: %v", target, name, err)
	}
	return []byte(data)
}
