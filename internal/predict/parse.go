package predict

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// jsonOptions ignores fields and enum names this subset of the Clarifai API
// does not model, which clients and servers send freely.
var jsonOptions = protojson.UnmarshalOptions{DiscardUnknown: true}

// ParseRequest parses a whole request body. grpcEncoding is the value of the
// grpc-encoding header ("" or "identity" for none). A gzip-compressed REST
// body is decompressed whatever its Content-Encoding header is.
//
// For gRPC, body is the whole request stream with every chunk joined, and
// the first complete message is the request. The model is settled with the
// route's fields first, then the body's model_id and version_id, then its
// model.id and model.model_version.id. User and app come from the route,
// then the body's user_app_id. Errors wrap ErrMalformed, ErrTruncatedFrame,
// ErrUnsupportedEncoding or ErrTooLarge.
//
// NOTE: metadata is a google.protobuf.Struct, whose numbers are float64, so
// integers beyond 2^53 lose precision, as they do in the Clarifai API.
func ParseRequest(route Route, body []byte, grpcEncoding string) (*Request, error) {
	message := &clarifaipb.PostModelOutputsRequest{}
	if err := unmarshal(route.Protocol, body, grpcEncoding, MaxDecompressedBytes, message); err != nil {
		return nil, fmt.Errorf("predict request: %w", err)
	}

	request := &Request{
		UserID:    firstNonEmpty(route.UserID, message.GetUserAppId().GetUserId()),
		AppID:     firstNonEmpty(route.AppID, message.GetUserAppId().GetAppId()),
		ModelID:   firstNonEmpty(route.ModelID, message.GetModelId(), message.GetModel().GetId()),
		VersionID: firstNonEmpty(route.VersionID, message.GetVersionId(), message.GetModel().GetModelVersion().GetId()),
		Inputs:    message.GetInputs(),
	}
	if request.ModelID == "" {
		return nil, fmt.Errorf("predict request: %w: no model_id in the path or body", ErrMalformed)
	}
	return request, nil
}

// ParseResponse parses a whole response body: a JSON MultiOutputResponse
// for REST (gzip-compressed or not), or the first gRPC message for gRPC.
// ModelVersionID is taken from the first output that names its model
// version.
func ParseResponse(route Route, body []byte, grpcEncoding string) (*Response, error) {
	message := &clarifaipb.MultiOutputResponse{}
	if err := unmarshal(route.Protocol, body, grpcEncoding, MaxDecompressedBytes, message); err != nil {
		return nil, fmt.Errorf("predict response: %w", err)
	}

	response := &Response{
		Status:  message.GetStatus().GetCode(),
		Outputs: message.GetOutputs(),
	}
	for _, output := range response.Outputs {
		if id := output.GetModel().GetModelVersion().GetId(); id != "" {
			response.ModelVersionID = id
			break
		}
	}
	return response, nil
}

// unmarshal decodes body into message per the route's protocol. limit
// bounds the size of a decompressed body.
func unmarshal(protocol Protocol, body []byte, grpcEncoding string, limit int, message proto.Message) error {
	switch protocol {
	case ProtocolREST:
		// A server compresses its response with Content-Encoding: gzip when
		// the client accepts it. JSON never starts with the gzip magic bytes,
		// so the first two bytes show whether the body is compressed.
		if bytes.HasPrefix(body, gzipMagic) {
			decompressed, err := gunzip(body, limit)
			if err != nil {
				return err
			}
			body = decompressed
		}
		return unmarshalJSON(body, message)
	case ProtocolGRPC:
		payload, err := firstMessage(body, grpcEncoding, limit)
		if err != nil {
			return err
		}
		if err := proto.Unmarshal(payload, message); err != nil {
			return fmt.Errorf("%w: protobuf: %w", ErrMalformed, err)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown protocol %d", ErrMalformed, protocol)
	}
}

// unmarshalJSON decodes a JSON body into message. A predict request, whose
// inputs are mostly base64, takes the faster path of decodeRESTRequest, and
// protojson decodes whatever that path cannot.
func unmarshalJSON(body []byte, message proto.Message) error {
	if request, ok := message.(*clarifaipb.PostModelOutputsRequest); ok && decodeRESTRequest(body, request) {
		return nil
	}
	if err := jsonOptions.Unmarshal(body, message); err != nil {
		return fmt.Errorf("%w: JSON: %w", ErrMalformed, err)
	}
	return nil
}

// firstNonEmpty returns the first non-empty value, or "".
func firstNonEmpty(values ...string) string {
	for _, value := range values {
		if value != "" {
			return value
		}
	}
	return ""
}
