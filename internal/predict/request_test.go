package predict

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// restRoute is the route of /v2/models/{model}/outputs.
var restRoute = Route{Protocol: ProtocolREST, ModelID: "path-model"}

var grpcRoute = Route{Protocol: ProtocolGRPC}

func TestParseRequest_RESTModel(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		body  string
		want  Request
	}{
		{
			name:  "path wins over body",
			route: Route{Protocol: ProtocolREST, UserID: "path-user", AppID: "path-app", ModelID: "path-model", VersionID: "path-version"},
			body:  `{"user_app_id":{"user_id":"body-user","app_id":"body-app"},"model_id":"body-model","version_id":"body-version","inputs":[]}`,
			want:  Request{UserID: "path-user", AppID: "path-app", ModelID: "path-model", VersionID: "path-version"},
		},
		{
			name:  "body fills what the path lacks",
			route: restRoute,
			body:  `{"user_app_id":{"user_id":"clarifai","app_id":"main"},"version_id":"body-version"}`,
			want:  Request{UserID: "clarifai", AppID: "main", ModelID: "path-model", VersionID: "body-version"},
		},
		{
			name:  "version from model.model_version",
			route: restRoute,
			body:  `{"model":{"id":"ignored","model_version":{"id":"nested-version"}}}`,
			want:  Request{ModelID: "path-model", VersionID: "nested-version"},
		},
		{
			name:  "version_id wins over model.model_version",
			route: restRoute,
			body:  `{"version_id":"flat","model":{"model_version":{"id":"nested"}}}`,
			want:  Request{ModelID: "path-model", VersionID: "flat"},
		},
		{
			name:  "camelCase field names",
			route: restRoute,
			body:  `{"userAppId":{"userId":"u","appId":"a"},"versionId":"v"}`,
			want:  Request{UserID: "u", AppID: "a", ModelID: "path-model", VersionID: "v"},
		},
		{
			name:  "unknown fields discarded",
			route: restRoute,
			body:  `{"runner_selector":{"nodepool":{"id":"n"}},"use_predict_cache":true,"enable_log_summary_on_error":false,"model":{"output_info":{"params":{"max_concepts":3},"output_config":{"min_value":0.5}}},"inputs":[{"data":{"image":{"url":"https://img.example/a.jpg","hosted":{"prefix":"p"}},"regions":[]},"settings":{}}]}`,
			want:  Request{ModelID: "path-model"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.route, []byte(tt.body), "")
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got.UserID != tt.want.UserID || got.AppID != tt.want.AppID {
				t.Errorf("user/app = %q/%q, want %q/%q", got.UserID, got.AppID, tt.want.UserID, tt.want.AppID)
			}
			if got.ModelID != tt.want.ModelID {
				t.Errorf("ModelID = %q, want %q", got.ModelID, tt.want.ModelID)
			}
			if got.VersionID != tt.want.VersionID {
				t.Errorf("VersionID = %q, want %q", got.VersionID, tt.want.VersionID)
			}
		})
	}
}

func TestParseRequest_RESTInputs(t *testing.T) {
	png := requireImage(t, "video-001.png")
	jpeg := requireImage(t, "video-001.jpeg")
	gif := requireImage(t, "video-001.gif")
	metadata := `{"camera":{"id":"cam-7","position":{"lat":48.85,"lon":2.35},"tags":["a","b"]},"empty":{},"empty_list":[],"nothing":null,"deep":{"a":{"b":{"c":{}}}},"flag":true,"count":3}`

	body := `{
		"inputs": [
			{"id": "img-url", "data": {"image": {"url": "https://img.example/metro-north.jpg"}, "metadata": ` + metadata + `}},
			{"id": "img-b64", "data": {"image": {"base64": "` + base64.StdEncoding.EncodeToString(png) + `"}, "metadata": {}}},
			{"data": {"image": {"base64": "` + base64.RawURLEncoding.EncodeToString(jpeg) + `"}}},
			{"id": "video-url", "data": {"video": {"url": "https://video.example/clip.mp4"}}},
			{"data": {"video": {"base64": "` + base64.StdEncoding.EncodeToString(gif) + `"}}},
			{"data": {"audio": {"url": "https://audio.example/a.wav"}}},
			{"data": {"audio": {"base64": "` + base64.StdEncoding.EncodeToString(jpeg[:1000]) + `"}}},
			{"id": "text-raw", "data": {"text": {"raw": "Grüße, 世界 \u00e9"}}},
			{"data": {"text": {"url": "https://text.example/a.txt"}}}
		]
	}`

	got, err := ParseRequest(restRoute, []byte(body), "")
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if len(got.Inputs) != 9 {
		t.Fatalf("got %d inputs, want 9", len(got.Inputs))
	}
	in := got.Inputs

	wantIDs := []string{"img-url", "img-b64", "", "video-url", "", "", "", "text-raw", ""}
	for i, want := range wantIDs {
		if in[i].GetId() != want {
			t.Errorf("input %d id = %q, want %q", i, in[i].GetId(), want)
		}
	}

	if u := in[0].GetData().GetImage().GetUrl(); u != "https://img.example/metro-north.jpg" {
		t.Errorf("image url = %q", u)
	}
	if !bytes.Equal(in[1].GetData().GetImage().GetBase64(), png) {
		t.Errorf("image base64 (standard encoding) bytes differ from the PNG file")
	}
	if !bytes.Equal(in[2].GetData().GetImage().GetBase64(), jpeg) {
		t.Errorf("image base64 (raw URL encoding) bytes differ from the JPEG file")
	}
	if u := in[3].GetData().GetVideo().GetUrl(); u != "https://video.example/clip.mp4" {
		t.Errorf("video url = %q", u)
	}
	if !bytes.Equal(in[4].GetData().GetVideo().GetBase64(), gif) {
		t.Errorf("video base64 bytes differ from the GIF file")
	}
	if u := in[5].GetData().GetAudio().GetUrl(); u != "https://audio.example/a.wav" {
		t.Errorf("audio url = %q", u)
	}
	if !bytes.Equal(in[6].GetData().GetAudio().GetBase64(), jpeg[:1000]) {
		t.Errorf("audio base64 bytes differ")
	}
	if raw := in[7].GetData().GetText().GetRaw(); raw != "Grüße, 世界 é" {
		t.Errorf("text raw = %q", raw)
	}
	if u := in[8].GetData().GetText().GetUrl(); u != "https://text.example/a.txt" {
		t.Errorf("text url = %q", u)
	}

	requireJSONEqual(t, requireProtoJSON(t, in[0].GetData().GetMetadata()), []byte(metadata))
	wantStruct := &structpb.Struct{}
	if err := wantStruct.UnmarshalJSON([]byte(metadata)); err != nil {
		t.Fatalf("structpb: %v", err)
	}
	if !proto.Equal(in[0].GetData().GetMetadata(), wantStruct) {
		t.Errorf("metadata struct differs from the JSON it came from")
	}

	emptyMetadata := in[1].GetData().GetMetadata()
	if emptyMetadata == nil {
		t.Fatalf("empty metadata object was dropped, want an empty Struct")
	}
	if len(emptyMetadata.GetFields()) != 0 {
		t.Errorf("empty metadata has %d fields", len(emptyMetadata.GetFields()))
	}
	if in[2].GetData().GetMetadata() != nil {
		t.Errorf("absent metadata became %v, want nil", in[2].GetData().GetMetadata())
	}
}

func TestParseRequest_RESTErrors(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		body  string
	}{
		{"empty body", restRoute, ""},
		{"not JSON", restRoute, "model=m1"},
		{"JSON array", restRoute, `[{"inputs":[]}]`},
		{"truncated JSON", restRoute, `{"inputs":[{"data":{"image":{"url":"x"}}`},
		{"inputs not a list", restRoute, `{"inputs":"x"}`},
		{"invalid base64", restRoute, `{"inputs":[{"data":{"image":{"base64":"***"}}}]}`},
		{"metadata not an object", restRoute, `{"inputs":[{"data":{"metadata":[1,2]}}]}`},
		{"trailing garbage", restRoute, `{"inputs":[]} x`},
		{"no model anywhere", Route{Protocol: ProtocolREST}, `{"inputs":[]}`},
		{"unknown protocol", Route{ModelID: "m"}, `{"inputs":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.route, []byte(tt.body), "")
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRequest error = %v, want ErrMalformed", err)
			}
			if got != nil {
				t.Errorf("ParseRequest returned %+v with an error", got)
			}
		})
	}
}

// sampleRequest is a gRPC predict with every input kind.
func sampleRequest(t testing.TB) *clarifaipb.PostModelOutputsRequest {
	t.Helper()
	metadata, err := structpb.NewStruct(map[string]any{
		"source": "camera-3",
		"nested": map[string]any{"empty": map[string]any{}, "list": []any{1.5, "x", nil}},
	})
	if err != nil {
		t.Fatalf("structpb.NewStruct: %v", err)
	}
	return &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		Model: &clarifaipb.Model{
			Id:           "general-image-recognition",
			ModelVersion: &clarifaipb.ModelVersion{Id: "aa7f35c01e0642fda5cf400f543e7c40"},
		},
		Inputs: []*clarifaipb.Input{
			{Id: "in-1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: requireImage(t, "video-001.png")}, Metadata: metadata}},
			{Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://img.example/a.jpg"}}},
			{Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: "hello"}}},
		},
	}
}

// requireSameInputs fails unless got carries want's model and inputs.
func requireSameInputs(t *testing.T, got *Request, want *clarifaipb.PostModelOutputsRequest) {
	t.Helper()
	if got.ModelID != want.GetModel().GetId() || got.VersionID != want.GetModel().GetModelVersion().GetId() {
		t.Errorf("model = %q/%q, want %q/%q", got.ModelID, got.VersionID, want.GetModel().GetId(), want.GetModel().GetModelVersion().GetId())
	}
	if got.UserID != want.GetUserAppId().GetUserId() || got.AppID != want.GetUserAppId().GetAppId() {
		t.Errorf("user/app = %q/%q, want %q/%q", got.UserID, got.AppID, want.GetUserAppId().GetUserId(), want.GetUserAppId().GetAppId())
	}
	if len(got.Inputs) != len(want.GetInputs()) {
		t.Fatalf("got %d inputs, want %d", len(got.Inputs), len(want.GetInputs()))
	}
	for i := range got.Inputs {
		if !proto.Equal(got.Inputs[i], want.GetInputs()[i]) {
			t.Errorf("input %d differs:\n got: %v\nwant: %v", i, got.Inputs[i], want.GetInputs()[i])
		}
	}
}

func TestParseRequest_GRPC(t *testing.T) {
	want := sampleRequest(t)
	payload := marshalProto(t, want)

	tests := []struct {
		name     string
		body     []byte
		encoding string
	}{
		{"uncompressed", frame(false, payload), ""},
		{"identity", frame(false, payload), "identity"},
		{"uncompressed despite gzip header", frame(false, payload), "gzip"},
		{"gzip", frame(true, gzipBytes(t, payload)), "gzip"},
		{"gzip upper case", frame(true, gzipBytes(t, payload)), "GZIP"},
		{"second message ignored", append(frame(false, payload), frame(false, marshalProto(t, &clarifaipb.PostModelOutputsRequest{ModelId: "other"}))...), ""},
		{"trailing partial frame ignored", append(frame(false, payload), 0, 0, 0), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(grpcRoute, tt.body, tt.encoding)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			requireSameInputs(t, got, want)
		})
	}
}

func TestParseRequest_GRPCModelFields(t *testing.T) {
	message := &clarifaipb.PostModelOutputsRequest{
		ModelId:   "flat-model",
		VersionId: "flat-version",
		Model:     &clarifaipb.Model{Id: "nested-model", ModelVersion: &clarifaipb.ModelVersion{Id: "nested-version"}},
	}
	got, err := ParseRequest(grpcRoute, frame(false, marshalProto(t, message)), "")
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if got.ModelID != "flat-model" || got.VersionID != "flat-version" {
		t.Errorf("model = %q/%q, want flat-model/flat-version", got.ModelID, got.VersionID)
	}
}

// TestParseRequest_GRPCChunks feeds the request stream as Envoy delivers it:
// growing prefixes of one frame split across chunks. Every prefix short of
// the whole frame is truncated; the whole frame parses.
func TestParseRequest_GRPCChunks(t *testing.T) {
	want := sampleRequest(t)
	body := frame(false, marshalProto(t, want))
	chunks := [][]byte{body[:3], body[3:5], body[5:200], body[200 : len(body)-1], body[len(body)-1:]}

	var joined []byte
	for i, chunk := range chunks {
		joined = append(joined, chunk...)
		got, err := ParseRequest(grpcRoute, joined, "")
		if i < len(chunks)-1 {
			if !errors.Is(err, ErrTruncatedFrame) {
				t.Fatalf("after chunk %d (%d bytes): error = %v, want ErrTruncatedFrame", i, len(joined), err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("after the last chunk: %v", err)
		}
		requireSameInputs(t, got, want)
	}
}

func TestParseRequest_GRPCErrors(t *testing.T) {
	payload := marshalProto(t, sampleRequest(t))
	gzipped := gzipBytes(t, payload)
	corruptGzip := bytes.Clone(gzipped)
	corruptGzip[len(corruptGzip)/2] ^= 0xff
	garbage := []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff not protobuf")

	tests := []struct {
		name     string
		body     []byte
		encoding string
		want     error
		mention  string
	}{
		{"empty body", nil, "", ErrMalformed, ""},
		{"short header", []byte{0, 0, 0}, "", ErrTruncatedFrame, ""},
		{"header only", []byte{0, 0, 0, 0, 10}, "", ErrTruncatedFrame, ""},
		{"payload cut", frame(false, payload)[:len(payload)], "", ErrTruncatedFrame, ""},
		{"length over 2 GiB", []byte{0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3}, "", ErrTruncatedFrame, ""},
		{"deflate", frame(true, gzipped), "deflate", ErrUnsupportedEncoding, "deflate"},
		{"snappy", frame(true, gzipped), "snappy", ErrUnsupportedEncoding, "snappy"},
		{"zstd", frame(true, gzipped), "zstd", ErrUnsupportedEncoding, "zstd"},
		{"compressed without encoding", frame(true, gzipped), "", ErrMalformed, ""},
		{"compressed with identity", frame(true, gzipped), "identity", ErrMalformed, ""},
		{"reserved flag bits", append([]byte{2}, frame(false, payload)[1:]...), "", ErrMalformed, ""},
		{"gzip flag on plain bytes", frame(true, payload), "gzip", ErrMalformed, ""},
		{"corrupt gzip", frame(true, corruptGzip), "gzip", ErrMalformed, ""},
		{"cut gzip", frame(true, gzipped[:len(gzipped)-10]), "gzip", ErrMalformed, ""},
		{"garbage protobuf", frame(false, garbage), "", ErrMalformed, ""},
		{"JSON sent as gRPC", frame(false, []byte(`{"model_id":"m"}`)), "", ErrMalformed, ""},
		{"no model", frame(false, marshalProto(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{{Id: "x"}}})), "", ErrMalformed, ""},
		{"empty message", frame(false, nil), "", ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(grpcRoute, tt.body, tt.encoding)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("ParseRequest returned %+v with an error", got)
			}
			if tt.mention != "" && !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not name the encoding %q", err, tt.mention)
			}
		})
	}
}

func TestUnmarshal_DecompressionLimit(t *testing.T) {
	const limit = 1 << 20
	exact := gzipBytes(t, make([]byte, limit))
	over := gzipBytes(t, make([]byte, limit+1))

	tests := []struct {
		name     string
		protocol Protocol
		body     []byte
		want     error
	}{
		{"gRPC at the limit reaches protobuf decoding", ProtocolGRPC, frame(true, exact), ErrMalformed},
		{"gRPC over the limit", ProtocolGRPC, frame(true, over), ErrTooLarge},
		{"REST over the limit", ProtocolREST, over, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unmarshal(tt.protocol, tt.body, "gzip", limit, &clarifaipb.PostModelOutputsRequest{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestParseRequest_RESTMatchesGRPC checks that one predict parses to the same
// inputs whether it arrives as JSON or as protobuf.
func TestParseRequest_RESTMatchesGRPC(t *testing.T) {
	want := sampleRequest(t)
	jsonBody := requireProtoJSON(t, want)
	if !json.Valid(jsonBody) {
		t.Fatalf("protojson produced invalid JSON")
	}

	fromREST, err := ParseRequest(Route{Protocol: ProtocolREST}, jsonBody, "")
	if err != nil {
		t.Fatalf("REST: %v", err)
	}
	fromGRPC, err := ParseRequest(grpcRoute, frame(false, marshalProto(t, want)), "")
	if err != nil {
		t.Fatalf("gRPC: %v", err)
	}
	requireSameInputs(t, fromREST, want)
	requireSameInputs(t, fromGRPC, want)
}

func TestParseRequest_RESTGzip(t *testing.T) {
	body := gzipBytes(t, []byte(`{"inputs":[{"id":"a","data":{"text":{"raw":"hi"}}}]}`))

	got, err := ParseRequest(restRoute, body, "")
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if len(got.Inputs) != 1 || got.Inputs[0].GetData().GetText().GetRaw() != "hi" {
		t.Errorf("inputs = %v, want one text input", got.Inputs)
	}
}
