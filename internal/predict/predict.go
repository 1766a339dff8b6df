// Package predict parses Clarifai predict requests and responses as they pass
// through the sidecar: the REST JSON routes and gRPC PostModelOutputs.
package predict

import (
	"errors"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Errors that name why a body could not be parsed; capture counts them.
var (
	ErrMalformed           = errors.New("malformed predict body")
	ErrUnsupportedEncoding = errors.New("unsupported grpc-encoding")
	ErrTruncatedFrame      = errors.New("truncated gRPC frame")
)

// Protocol is the wire form of a predict.
type Protocol int

const (
	ProtocolREST Protocol = iota + 1
	ProtocolGRPC
)

// Route is what the request line tells about a predict. For gRPC the model is
// only in the body, so UserID, AppID, ModelID and VersionID are empty.
type Route struct {
	Protocol  Protocol
	UserID    string
	AppID     string
	ModelID   string
	VersionID string
}

// Request is a parsed predict request. Model fields from the path win over
// those in the body.
type Request struct {
	UserID    string
	AppID     string
	ModelID   string
	VersionID string
	Inputs    []*clarifaipb.Input
}

// Response is a parsed predict response.
type Response struct {
	Status  clarifaipb.StatusCode
	Outputs []*clarifaipb.Output
	// ModelVersionID is the version that answered, from the outputs' model.
	ModelVersionID string
}

// NOTE: placeholder bodies; the parsers are being written in this package.

// Detect reports whether a request line is a predict, and its route.
func Detect(method, path, contentType string) (Route, bool) { return Route{}, false }

// ParseRequest parses a whole request body. grpcEncoding is the value of the
// grpc-encoding header ("" or "identity" for none).
func ParseRequest(route Route, body []byte, grpcEncoding string) (*Request, error) {
	return nil, ErrMalformed
}

// ParseResponse parses a whole response body.
func ParseResponse(route Route, body []byte, grpcEncoding string) (*Response, error) {
	return nil, ErrMalformed
}
