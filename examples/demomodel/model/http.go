package model

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// MaxRequestBytes bounds a REST request body: Clarifai accepts predict batches
// under 128 MB, and base64 in JSON adds a third.
const MaxRequestBytes = 176 << 20

var (
	// jsonIn ignores fields this subset of the API does not model, which
	// clients send freely.
	jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}
	// jsonOut writes the proto field names (snake_case), as Clarifai does.
	jsonOut = protojson.MarshalOptions{UseProtoNames: true}
)

// restRoutes are the four REST predict paths of Clarifai.
var restRoutes = []string{
	"/v2/users/{user}/apps/{app}/models/{model}/versions/{version}/outputs",
	"/v2/users/{user}/apps/{app}/models/{model}/outputs",
	"/v2/models/{model}/versions/{version}/outputs",
	"/v2/models/{model}/outputs",
}

// Handler returns the HTTP handler of both protocols: requests over HTTP/2
// with a gRPC content type go to the gRPC server, all others to the REST
// routes. Serve it with unencrypted HTTP/2 enabled (see NewHTTPServer) so
// that gRPC clients can connect without TLS.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && isGRPC(r.Header.Get("Content-Type")) {
			s.grpc.ServeHTTP(w, r)
			return
		}
		s.rest.ServeHTTP(w, r)
	})
}

// NewHTTPServer returns an http.Server for handler that accepts HTTP/1.1 and
// unencrypted HTTP/2 (prior knowledge, as gRPC clients use) on one listener.
func NewHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:   handler,
		Protocols: protocols,
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

func (s *Server) newRESTMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, pattern := range restRoutes {
		mux.HandleFunc(pattern, s.serveREST)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_CONN_DOES_NOT_EXIST,
			Description: "Resource does not exist",
			Details:     fmt.Sprintf("no route for %s %s; predicts are POST /v2/models/{model_id}/outputs", r.Method, r.URL.Path),
		})
	})
	return mux
}

// serveREST serves one REST predict.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, http.StatusMethodNotAllowed, &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_CONN_METHOD_NOT_ALLOWED,
			Description: "Method not allowed",
			Details:     fmt.Sprintf("%s is not allowed; predicts use POST", r.Method),
		})
		return
	}

	req, err := readPredictRequest(w, r)
	if err != nil {
		writeStatus(w, http.StatusBadRequest, &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_PREDICT_INVALID_REQUEST,
			Description: "Invalid request",
			Details:     err.Error(),
		})
		return
	}

	path := Target{
		UserID:    r.PathValue("user"),
		AppID:     r.PathValue("app"),
		ModelID:   r.PathValue("model"),
		VersionID: r.PathValue("version"),
	}
	resp, httpStatus := s.Predict(path, req)
	writeMessage(w, httpStatus, resp)
}

// readPredictRequest parses a JSON PostModelOutputsRequest body.
func readPredictRequest(w http.ResponseWriter, r *http.Request) (*clarifaipb.PostModelOutputsRequest, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			return nil, fmt.Errorf("request body is over %d bytes", maxErr.Limit)
		}
		return nil, fmt.Errorf("reading the request body failed: %w", err)
	}

	req := &clarifaipb.PostModelOutputsRequest{}
	if err := jsonIn.Unmarshal(body, req); err != nil {
		return nil, fmt.Errorf("request body is not a valid PostModelOutputsRequest in JSON: %w", err)
	}
	return req, nil
}

// writeStatus writes a response whose only field is status.
func writeStatus(w http.ResponseWriter, httpStatus int, status *clarifaipb.Status) {
	writeMessage(w, httpStatus, &clarifaipb.BaseResponse{Status: status})
}

// writeMessage writes message as JSON with httpStatus.
func writeMessage(w http.ResponseWriter, httpStatus int, message proto.Message) {
	body, err := jsonOut.Marshal(message)
	if err != nil {
		http.Error(w, "encoding the response failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	w.Write(body)
}

// isGRPC reports whether a Content-Type is a gRPC one (application/grpc or
// application/grpc+codec).
func isGRPC(contentType string) bool {
	return contentType == "application/grpc" || strings.HasPrefix(contentType, "application/grpc+") ||
		strings.HasPrefix(contentType, "application/grpc;")
}
