package predict

import (
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora under testdata/fuzz")

// fuzzSeed is one seed corpus file of a fuzz target.
type fuzzSeed struct {
	target string
	name   string
	values []any
}

// encodeSeed renders values in the "go test fuzz v1" corpus file format.
func encodeSeed(t *testing.T, values []any) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("go test fuzz v1\n")
	for _, value := range values {
		switch v := value.(type) {
		case []byte:
			fmt.Fprintf(&buf, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&buf, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&buf, "bool(%v)\n", v)
		default:
			t.Fatalf("no seed encoding for %T", value)
		}
	}
	return buf.Bytes()
}

// fuzzSeeds builds realistic seeds for every fuzz target of this package.
func fuzzSeeds(t *testing.T) []fuzzSeed {
	gif := requireImage(t, "triangle-001.gif")
	gifBase64 := base64.StdEncoding.EncodeToString(gif)

	grpcRequest := marshalProto(t, &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general-image-recognition",
		Inputs: []*clarifaipb.Input{
			{Id: "in-1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: gif}}},
			{Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: "a red triangle"}}},
		},
	})
	grpcResponse := marshalProto(t, sampleResponse())

	return []fuzzSeed{
		{"FuzzParseRequestREST", "image_url_metadata", []any{[]byte(
			`{"user_app_id":{"user_id":"clarifai","app_id":"main"},"inputs":[{"id":"in-1","data":{"image":{"url":"https://img.example/metro-north.jpg"},"metadata":{"camera":{"id":7,"tags":["a"]},"empty":{}}}}]}`)}},
		{"FuzzParseRequestREST", "image_base64", []any{[]byte(
			`{"inputs":[{"data":{"image":{"base64":"` + gifBase64 + `"}}}]}`)}},
		{"FuzzParseRequestREST", "video_audio_text", []any{[]byte(
			`{"version_id":"v1","inputs":[{"data":{"video":{"url":"https://video.example/a.mp4"}}},{"data":{"audio":{"base64":"UklGRg=="}}},{"data":{"text":{"raw":"hello","url":""}}}]}`)}},
		{"FuzzParseRequestREST", "unknown_fields", []any{[]byte(
			`{"runner_selector":{"nodepool":{"id":"n"}},"model":{"output_info":{"params":{"max_concepts":3}}},"inputs":[{"data":{"image":{"url":"u","hosted":{}},"regions":[]}}]}`)}},

		{"FuzzParseRequestGRPC", "uncompressed", []any{frame(false, grpcRequest), ""}},
		{"FuzzParseRequestGRPC", "gzip", []any{frame(true, gzipBytes(t, grpcRequest)), "gzip"}},
		{"FuzzParseRequestGRPC", "two_messages", []any{append(frame(false, grpcRequest), frame(false, grpcRequest)...), "identity"}},
		{"FuzzParseRequestGRPC", "truncated", []any{frame(false, grpcRequest)[:40], ""}},
		{"FuzzParseRequestGRPC", "unsupported_encoding", []any{frame(true, grpcRequest), "deflate"}},

		{"FuzzParseResponse", "rest_mixed_status", []any{[]byte(mixedResponseJSON), false, ""}},
		{"FuzzParseResponse", "rest_key_not_found", []any{[]byte(`{"status":{"code":11009,"description":"API key not found","req_id":"r"}}`), false, ""}},
		{"FuzzParseResponse", "grpc_mixed_status", []any{frame(false, grpcResponse), true, ""}},
		{"FuzzParseResponse", "grpc_gzip", []any{frame(true, gzipBytes(t, grpcResponse)), true, "gzip"}},

		{"FuzzDetect", "full_path", []any{"POST", "/v2/users/clarifai/apps/main/models/general-image-recognition/versions/aa7f35c01e0642fda5cf400f543e7c40/outputs", "application/json"}},
		{"FuzzDetect", "model_version", []any{"POST", "/v2/models/m1/versions/v1/outputs?debug=1", "application/json; charset=utf-8"}},
		{"FuzzDetect", "user_app_model", []any{"POST", "/v2/users/jane%2Ddoe/apps/a1/models/m1/outputs", ""}},
		{"FuzzDetect", "grpc", []any{"POST", "/clarifai.api.V2/PostModelOutputs", "application/grpc+proto"}},
		{"FuzzDetect", "not_predict", []any{"POST", "/v2/users/u1/apps/a1/inputs", "application/json"}},
	}
}

// TestFuzzSeeds checks that every seed of fuzzSeeds is on disk, where
// go test runs it as a regression case of its fuzz target. The contents are
// not compared because gzip output may change between Go releases.
// Regenerate them with: go test ./internal/predict -run TestFuzzSeeds -update-seeds
func TestFuzzSeeds(t *testing.T) {
	for _, seed := range fuzzSeeds(t) {
		path := filepath.Join("testdata", "fuzz", seed.target, seed.name)

		if *updateSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, encodeSeed(t, seed.values), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}

		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read seed (regenerate with -update-seeds): %v", err)
		}
		if !bytes.HasPrefix(got, []byte("go test fuzz v1\n")) {
			t.Errorf("seed %s lacks the corpus file header", path)
		}
	}
}
