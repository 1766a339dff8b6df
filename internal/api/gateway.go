package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// rpcGateway is the rpc attribute of requests that the REST gateway rejects
// before they reach an RPC: unknown paths, wrong methods, malformed bodies.
const rpcGateway = "gateway"

// newGateway returns the REST handler: grpc-gateway's mux with the V2
// handlers bound to s, wrapped in the request body limit.
func (s *Server) newGateway() (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newJSONMarshaler()),
		runtime.WithForwardResponseOption(forwardHTTPStatus),
		runtime.WithErrorHandler(s.handleGatewayError),
		runtime.WithRoutingErrorHandler(s.handleRoutingError),
		// A form POST must not turn into a GET of the same path, and no
		// header may change the method that the routes see.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
	)
	if err := pb.RegisterV2HandlerServer(context.Background(), mux, s); err != nil {
		return nil, fmt.Errorf("api: register REST handlers: %w", err)
	}
	return s.limitBody(mux), nil
}

// jsonMarshaler writes protobuf JSON with snake_case names and reads both
// snake_case and camelCase names, enum names and numbers. Unknown fields
// are rejected. Empty lists at the top level of a response are written as
// [] because Clarifai's responses show them and JSON clients index them.
type jsonMarshaler struct {
	*runtime.JSONPb
}

func newJSONMarshaler() *jsonMarshaler {
	return &jsonMarshaler{JSONPb: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Marshal encodes v and adds its empty top-level lists.
func (m *jsonMarshaler) Marshal(v any) ([]byte, error) {
	b, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return b, nil
	}
	empty := emptyListFields(msg.ProtoReflect())
	if len(empty) == 0 {
		return b, nil
	}

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("add empty lists: %w", err)
	}
	for _, name := range empty {
		fields[name] = json.RawMessage("[]")
	}
	return json.Marshal(fields)
}

func emptyListFields(m protoreflect.Message) []string {
	var names []string
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsList() && m.Get(fd).List().Len() == 0 {
			names = append(names, string(fd.Name()))
		}
	}
	return names
}

// forwardHTTPStatus sets the HTTP status of a REST response from the
// Clarifai status in its body.
func forwardHTTPStatus(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	r, ok := m.(interface{ GetStatus() *pb.Status })
	if !ok || r.GetStatus() == nil {
		return nil
	}
	code := int(r.GetStatus().GetHttpStatusCode())
	if code == 0 {
		code = HTTPStatus(r.GetStatus().GetCode())
	}
	w.WriteHeader(code)
	return nil
}

// handleGatewayError writes a Clarifai status body for errors raised by the
// gateway itself, such as a malformed body or an unknown field.
func (s *Server) handleGatewayError(ctx context.Context, _ *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := gatewayErrorStatus(r, err, s.cfg.MaxRequestBytes)
	s.writeGatewayStatus(ctx, m, w, r, st)
}

func gatewayErrorStatus(r *http.Request, err error, maxBytes int64) *pb.Status {
	reqID := newRequestID()
	if bodyLimitExceeded(r) {
		return newStatus(pb.StatusCode_CONN_BAD_REQUEST_FORMAT,
			fmt.Sprintf("the request body is larger than %d bytes", maxBytes), reqID, http.StatusRequestEntityTooLarge)
	}

	var httpErr *runtime.HTTPStatusError
	if errors.As(err, &httpErr) {
		return newStatus(pb.StatusCode_CONN_BAD_REQUEST_FORMAT, httpErr.Err.Error(), reqID, httpErr.HTTPStatus)
	}

	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.InvalidArgument:
		details := "invalid request body or parameters: " + withoutInvalidValue(st.Message())
		return newStatus(pb.StatusCode_CONN_BAD_REQUEST_FORMAT, details, reqID, 0)
	case codes.Unimplemented:
		return newStatus(pb.StatusCode_NOT_IMPLEMENTED, st.Message(), reqID, 0)
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable:
		return newStatus(pb.StatusCode_TRY_AGAIN, st.Message(), reqID, 0)
	default:
		return newStatus(pb.StatusCode_INTERNAL_UNCATEGORIZED, "internal error in the REST gateway", reqID, 0)
	}
}

// withoutInvalidValue returns a decoding error message without the value
// that failed to decode, because that value can be a secret such as an
// unquoted post_inputs_key_id. Position and field name stay.
func withoutInvalidValue(msg string) string {
	// protojson puts a no-break space in its messages so that callers do not
	// match on them; a plain space reads the same in every client.
	msg = strings.ReplaceAll(msg, "\u00a0", " ")

	const marker = "invalid value"
	i := strings.Index(msg, marker)
	if i < 0 {
		return msg
	}
	if j := strings.LastIndex(msg, ": "); j > i {
		return msg[:j] // "invalid value for string field x: VALUE"
	}
	return msg[:i+len(marker)] // "syntax error (line 1:5): invalid value VALUE"
}

// handleRoutingError writes a Clarifai status body for unknown paths (404)
// and methods that a path does not allow (405).
func (s *Server) handleRoutingError(ctx context.Context, _ *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	reqID := newRequestID()
	var st *pb.Status
	switch httpStatus {
	case http.StatusNotFound:
		st = newStatus(pb.StatusCode_CONN_DOES_NOT_EXIST, fmt.Sprintf("no API path %s", r.URL.Path), reqID, 0)
	case http.StatusMethodNotAllowed:
		st = newStatus(pb.StatusCode_CONN_METHOD_NOT_ALLOWED,
			fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path), reqID, 0)
	default:
		st = newStatus(pb.StatusCode_CONN_BAD_REQUEST_FORMAT,
			fmt.Sprintf("malformed request for %s", r.URL.Path), reqID, httpStatus)
	}
	s.writeGatewayStatus(ctx, m, w, r, st)
}

func (s *Server) writeGatewayStatus(ctx context.Context, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, st *pb.Status) {
	s.log.DebugContext(ctx, "rest request rejected",
		"method", r.Method, "path", r.URL.Path, "req_id", st.GetReqId(),
		"code", st.GetCode().String(), "details", st.GetDetails())
	s.metrics.requests.Add(ctx, 1, metric.WithAttributes(
		attribute.String(attrRPC, rpcGateway),
		attribute.String(attrCode, st.GetCode().String()),
	))

	body, err := m.Marshal(&pb.BaseResponse{Status: st})
	if err != nil {
		s.log.ErrorContext(ctx, "marshal REST error response", "req_id", st.GetReqId(), "error", err)
		http.Error(w, st.GetDescription(), int(st.GetHttpStatusCode()))
		return
	}
	w.Header().Set("Content-Type", m.ContentType(&pb.BaseResponse{}))
	w.WriteHeader(int(st.GetHttpStatusCode()))
	_, _ = w.Write(body)
}

// bodyLimit records whether a request body passed its limit, which the
// gateway only reports as a decoding error.
type bodyLimit struct {
	io.ReadCloser
	exceeded atomic.Bool
}

func (b *bodyLimit) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.exceeded.Store(true)
	}
	return n, err
}

type bodyLimitKey struct{}

// limitBody caps request bodies at MaxRequestBytes.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := &bodyLimit{ReadCloser: http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)}
		r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, limit))
		r.Body = limit
		next.ServeHTTP(w, r)
	})
}

func bodyLimitExceeded(r *http.Request) bool {
	limit, ok := r.Context().Value(bodyLimitKey{}).(*bodyLimit)
	return ok && limit.exceeded.Load()
}
