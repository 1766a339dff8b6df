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
	// ErrTooLarge reports a compressed gRPC message that decompresses to
	// more than MaxDecompressedBytes.
	ErrTooLarge = errors.New("decompressed predict message too large")
)

// Protocol is the wire form of a predict.
type Protocol int

const (
	ProtocolREST Protocol = iota + 1
	ProtocolGRPC
)

// Route is the predict's target as named by the request line. For gRPC the model is
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
	// ModelVersionID is the version that served the predict, from the outputs' model.
	ModelVersionID string
}
