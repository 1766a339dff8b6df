// Package model is a demo Clarifai-compatible model server. It serves
// PostModelOutputs over REST JSON and gRPC with concepts computed from each
// input itself, so it needs no weights, no GPU and no network.
//
// Responses follow Clarifai's conventions: a MultiOutputResponse with one
// output per input, each with its own status. An input that cannot be used
// (an image that does not decode, a URL, missing data) gets INPUT_FAILED, and
// the overall status is MIXED_STATUS when other inputs succeeded, or FAILURE
// when none did. REST returns HTTP 200 for SUCCESS and MIXED_STATUS and a
// 4xx status otherwise. gRPC always ends with gRPC status OK and carries the
// Clarifai status in the message.
//
// IDs in responses (req_id, output IDs, generated input IDs) are derived from
// the request bytes, and no created_at is set, so the same request always gets
// the same response bytes.
package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Defaults for Config fields left empty.
const (
	DefaultUserID    = "demo"
	DefaultAppID     = "main"
	DefaultVersionID = "1"
)

// MaxInputs is the largest number of inputs one predict may carry, as on
// Clarifai.
const MaxInputs = 128

// Config names the owner of the demo models.
type Config struct {
	// UserID and AppID own every model; a predict that names another owner
	// gets MODEL_DOES_NOT_EXIST.
	UserID string
	AppID  string
	// DefaultVersionID is the model version returned for predicts that name
	// none. A predict that names a version gets that version back.
	DefaultVersionID string
}

// Server serves the demo models. Use Handler for HTTP (REST and gRPC over
// h2c on one listener) or register the Server itself on a grpc.Server.
type Server struct {
	clarifaipb.UnimplementedV2Server

	cfg    Config
	models map[string]demoModel
	grpc   *grpc.Server
	rest   *http.ServeMux
}

// demoModel computes the concepts of one input's data. An error fails only
// that input, and its message becomes the output's status description.
type demoModel struct {
	id      string
	predict func(data *clarifaipb.Data) ([]*clarifaipb.Concept, error)
}

// New builds a Server with the colors, text-stats and echo-size models.
func New(cfg Config) *Server {
	if cfg.UserID == "" {
		cfg.UserID = DefaultUserID
	}
	if cfg.AppID == "" {
		cfg.AppID = DefaultAppID
	}
	if cfg.DefaultVersionID == "" {
		cfg.DefaultVersionID = DefaultVersionID
	}

	s := &Server{cfg: cfg, models: make(map[string]demoModel)}
	for _, m := range []demoModel{
		{id: "colors", predict: predictColors},
		{id: "text-stats", predict: predictTextStats},
		{id: "echo-size", predict: predictEchoSize},
	} {
		s.models[m.id] = m
	}

	s.grpc = grpc.NewServer()
	clarifaipb.RegisterV2Server(s.grpc, s)
	s.rest = s.newRESTMux()
	return s
}

// ModelIDs returns the IDs of the served models, sorted.
func (s *Server) ModelIDs() []string {
	ids := make([]string, 0, len(s.models))
	for id := range s.models {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Target is the model a predict addresses, as resolved from the request path
// and body. Empty UserID and AppID mean the server's own.
type Target struct {
	UserID    string
	AppID     string
	ModelID   string
	VersionID string
}

// resolveTarget fills the fields the path left empty from the body: model_id
// then model.id, version_id then model.model_version.id, and user_app_id.
func resolveTarget(path Target, req *clarifaipb.PostModelOutputsRequest) Target {
	return Target{
		UserID:    firstNonEmpty(path.UserID, req.GetUserAppId().GetUserId()),
		AppID:     firstNonEmpty(path.AppID, req.GetUserAppId().GetAppId()),
		ModelID:   firstNonEmpty(path.ModelID, req.GetModelId(), req.GetModel().GetId()),
		VersionID: firstNonEmpty(path.VersionID, req.GetVersionId(), req.GetModel().GetModelVersion().GetId()),
	}
}

// PostModelOutputs serves a gRPC predict. Clarifai errors travel in the
// response's status, so the gRPC status is always OK.
func (s *Server) PostModelOutputs(_ context.Context, req *clarifaipb.PostModelOutputsRequest) (*clarifaipb.MultiOutputResponse, error) {
	resp, _ := s.Predict(Target{}, req)
	return resp, nil
}

// Predict runs a predict for the model that path and the body name, with
// the path's fields taking precedence. It returns the response and the HTTP
// status a REST client gets.
func (s *Server) Predict(path Target, req *clarifaipb.PostModelOutputsRequest) (*clarifaipb.MultiOutputResponse, int) {
	digest := requestDigest(req)
	reqID := deriveID(digest, "request", 0)
	target := resolveTarget(path, req)

	m, status, httpStatus := s.findModel(target)
	if status != nil {
		status.ReqId = reqID
		return &clarifaipb.MultiOutputResponse{Status: status}, httpStatus
	}
	if status, httpStatus := checkInputCount(len(req.GetInputs())); status != nil {
		status.ReqId = reqID
		return &clarifaipb.MultiOutputResponse{Status: status}, httpStatus
	}

	modelInfo := &clarifaipb.Model{
		Id:           m.id,
		AppId:        s.cfg.AppID,
		UserId:       s.cfg.UserID,
		ModelVersion: &clarifaipb.ModelVersion{Id: firstNonEmpty(target.VersionID, s.cfg.DefaultVersionID)},
	}
	resp := &clarifaipb.MultiOutputResponse{}
	succeeded := 0
	for i, input := range req.GetInputs() {
		output := s.predictOne(m, modelInfo, input, digest, i)
		if output.GetStatus().GetCode() == clarifaipb.StatusCode_SUCCESS {
			succeeded++
		}
		resp.Outputs = append(resp.Outputs, output)
	}

	resp.Status, httpStatus = overallStatus(succeeded, len(resp.Outputs))
	resp.Status.ReqId = reqID
	return resp, httpStatus
}

// findModel returns the model target names, or the status and HTTP status
// of a predict that cannot run.
func (s *Server) findModel(target Target) (demoModel, *clarifaipb.Status, int) {
	if target.ModelID == "" {
		return demoModel{}, &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_PREDICT_INVALID_REQUEST,
			Description: "Invalid request",
			Details:     "no model_id in the path or body",
		}, http.StatusBadRequest
	}

	wrongOwner := (target.UserID != "" && target.UserID != s.cfg.UserID) ||
		(target.AppID != "" && target.AppID != s.cfg.AppID)
	m, ok := s.models[target.ModelID]
	if wrongOwner || !ok {
		return demoModel{}, &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST,
			Description: "Model does not exist",
			Details: fmt.Sprintf("model %q of user %q, app %q not found; this server has %s of user %q, app %q",
				target.ModelID, target.UserID, target.AppID,
				strings.Join(s.ModelIDs(), ", "), s.cfg.UserID, s.cfg.AppID),
		}, http.StatusNotFound
	}
	return m, nil, 0
}

// checkInputCount rejects a predict without inputs or with more than
// MaxInputs.
func checkInputCount(n int) (*clarifaipb.Status, int) {
	if n >= 1 && n <= MaxInputs {
		return nil, 0
	}
	return &clarifaipb.Status{
		Code:        clarifaipb.StatusCode_PREDICT_INVALID_REQUEST,
		Description: "Invalid request",
		Details:     fmt.Sprintf("a predict needs 1 to %d inputs, got %d", MaxInputs, n),
	}, http.StatusBadRequest
}

// predictOne builds the output for the input at index.
func (s *Server) predictOne(m demoModel, modelInfo *clarifaipb.Model, input *clarifaipb.Input, digest []byte, index int) *clarifaipb.Output {
	inputID := input.GetId()
	if inputID == "" {
		inputID = deriveID(digest, "input", index)
	}
	output := &clarifaipb.Output{
		Id:    deriveID(digest, "output", index),
		Model: modelInfo,
		Input: &clarifaipb.Input{Id: inputID, Data: input.GetData()},
	}

	concepts, err := m.predict(input.GetData())
	if err != nil {
		output.Status = &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_INPUT_FAILED,
			Description: err.Error(),
		}
		return output
	}

	for _, c := range concepts {
		c.AppId = s.cfg.AppID
	}
	output.Status = &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"}
	output.Data = &clarifaipb.Data{Concepts: concepts}
	return output
}

// overallStatus returns the status of a whole predict from its outputs.
func overallStatus(succeeded, total int) (*clarifaipb.Status, int) {
	switch succeeded {
	case total:
		return &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"}, http.StatusOK
	case 0:
		return &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_FAILURE,
			Description: "Failure",
			Details:     "every input failed; see each output's status",
		}, http.StatusBadRequest
	default:
		return &clarifaipb.Status{
			Code:        clarifaipb.StatusCode_MIXED_STATUS,
			Description: "Mixed Success",
			Details:     "some inputs failed; see each output's status",
		}, http.StatusOK
	}
}

// requestDigest hashes the request so that IDs derived from it are the same
// for the same request.
func requestDigest(req *clarifaipb.PostModelOutputsRequest) []byte {
	encoded, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		// Only an invalid UTF-8 string fails to marshal; the IDs then
		// depend on the model and inputs count alone, which is still stable.
		encoded = []byte(fmt.Sprintf("%s/%d", req.GetModelId(), len(req.GetInputs())))
	}
	sum := sha256.Sum256(encoded)
	return sum[:]
}

// deriveID returns a 32-hex-digit ID, the form of Clarifai's generated IDs,
// unique per digest, kind and index.
func deriveID(digest []byte, kind string, index int) string {
	h := sha256.New()
	h.Write(digest)
	h.Write([]byte(kind))
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(index))
	h.Write(buf[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// inputError fails one input; its message becomes the output's status
// description.
type inputError struct {
	message string
}

func (e *inputError) Error() string { return e.message }

// errURLNotFetched fails inputs that carry a URL instead of bytes.
var errURLNotFetched = &inputError{message: "the demo model server never fetches URLs; send the bytes inline (image.base64 or text.raw)"}

// firstNonEmpty returns the first non-empty value, or "".
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
