// Package interop calls gRPC servers from Go tests through the official
// Clarifai Node client (npm clarifai-nodejs-grpc), so that tests check wire
// compatibility with the client Clarifai users run instead of with collectord's
// own generated code.
//
// Each call runs test/interop/client.js in a new node process. The script
// accepts only loopback addresses. Its dependencies are installed by
// "npm ci --prefix test/interop".
package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// callTimeout bounds one node process. The script gives the RPC a 10 s
// deadline and exits after 15 s, and the rest covers node's start-up on a
// loaded machine.
const callTimeout = 30 * time.Second

// CallRequest is one RPC for the Node client to send.
type CallRequest struct {
	// Address is the server's HOST:PORT on a loopback interface, such as "127.0.0.1:40123".
	Address string

	// Key is sent as "authorization: Key <Key>". An empty Key sends no authorization header.
	Key string

	// RPC is the V2 method name, such as "PostCollectors".
	RPC string

	// Request is the request message. A proto.Message is marshalled with
	// protojson using the proto field names, and a json.RawMessage is sent
	// as it is. Any other value is marshalled with encoding/json and must
	// have the proto3 JSON form (snake_case names, base64 bytes, enum names).
	// A nil Request sends an empty request.
	Request any

	// Metadata holds extra gRPC metadata. Values of "-bin" keys are base64.
	Metadata map[string]string
}

// CallResult is the outcome of one RPC as the Node client saw it.
type CallResult struct {
	// GRPCCode is the numeric gRPC status code, where 0 is OK.
	GRPCCode int `json:"grpc_code"`

	// GRPCDetails is the gRPC status message; it is empty when GRPCCode is 0.
	GRPCDetails string `json:"grpc_details"`

	// Response is the response message in proto3 JSON with the proto field
	// names, or JSON null when GRPCCode is not 0.
	Response json.RawMessage `json:"response"`
}

// input is the JSON object client.js reads from stdin.
type input struct {
	Address  string            `json:"address"`
	Key      string            `json:"key,omitempty"`
	RPC      string            `json:"rpc"`
	Request  json.RawMessage   `json:"request"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// RequireNode fails the test unless node and the client's npm dependencies
// are installed.
func RequireNode(t testing.TB) {
	t.Helper()

	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("interop: node is not installed (%v); install Node.js 20 or newer", err)
	}

	dir, err := clientDir()
	if err != nil {
		t.Fatalf("interop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "clarifai-nodejs-grpc")); err != nil {
		t.Fatalf("interop: %s/node_modules is missing: run npm ci in test/interop (scripts/test.sh does it)", dir)
	}
}

// Call sends req through the Node client and returns what it received,
// failing the test if the client could not run or rejected its input.
// Like t.Fatal, Call must run on the test's goroutine.
func Call(t testing.TB, ctx context.Context, req CallRequest) CallResult {
	t.Helper()

	result, err := Run(ctx, req)
	if err != nil {
		t.Fatalf("interop: %s: %v", req.RPC, err)
	}
	return result
}

// Run sends req through the Node client and returns what it received. It
// returns an error if node could not run, rejected its input or printed no
// result. A gRPC error is no error here but a CallResult with a non-zero
// GRPCCode.
func Run(ctx context.Context, req CallRequest) (CallResult, error) {
	stdin, err := encodeInput(req)
	if err != nil {
		return CallResult{}, err
	}

	dir, err := clientDir()
	if err != nil {
		return CallResult{}, err
	}

	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "client.js"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second

	if err := cmd.Run(); err != nil {
		return CallResult{}, fmt.Errorf("node client.js failed: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return decodeOutput(stdout.Bytes())
}

// Unmarshal decodes the response into msg, failing the test if it is not a
// valid msg. Fields missing from collectord's subset of the protos are
// skipped, because the Node client has the schema of the whole Clarifai API.
func (r CallResult) Unmarshal(t testing.TB, msg proto.Message) {
	t.Helper()

	if r.GRPCCode != 0 {
		t.Fatalf("interop: no response to decode: gRPC code %d: %s", r.GRPCCode, r.GRPCDetails)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Response, msg); err != nil {
		t.Fatalf("interop: decode %T from %s: %v", msg, r.Response, err)
	}
}

func encodeInput(req CallRequest) ([]byte, error) {
	request, err := marshalRequest(req.Request)
	if err != nil {
		return nil, fmt.Errorf("marshal %s request: %w", req.RPC, err)
	}

	return json.Marshal(input{
		Address:  req.Address,
		Key:      req.Key,
		RPC:      req.RPC,
		Request:  request,
		Metadata: req.Metadata,
	})
}

func marshalRequest(request any) (json.RawMessage, error) {
	switch r := request.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		return r, nil
	case proto.Message:
		return protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	default:
		return json.Marshal(r)
	}
}

func decodeOutput(stdout []byte) (CallResult, error) {
	line := bytes.TrimSpace(stdout)
	if len(line) == 0 {
		return CallResult{}, errors.New("node client.js printed no result")
	}

	var result CallResult
	if err := json.Unmarshal(line, &result); err != nil {
		return CallResult{}, fmt.Errorf("invalid output of node client.js %q: %w", line, err)
	}
	return result, nil
}

// clientDir returns test/interop of the repository holding the working
// directory, found by walking up to the directory with go.mod. Go runs each
// test in its package directory, so this works from any package.
func clientDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}

	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test", "interop"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}
