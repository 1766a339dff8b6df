package predict

import (
	"net/url"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	const jsonType = "application/json"
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		want        Route
		wantOK      bool
	}{
		{
			name: "full path with version", method: "POST", contentType: jsonType,
			path:   "/v2/users/clarifai/apps/main/models/general-image-recognition/versions/aa7f35c01e0642fda5cf400f543e7c40/outputs",
			want:   Route{Protocol: ProtocolREST, UserID: "clarifai", AppID: "main", ModelID: "general-image-recognition", VersionID: "aa7f35c01e0642fda5cf400f543e7c40"},
			wantOK: true,
		},
		{
			name: "model and version", method: "POST", contentType: jsonType,
			path:   "/v2/models/m1/versions/v1/outputs",
			want:   Route{Protocol: ProtocolREST, ModelID: "m1", VersionID: "v1"},
			wantOK: true,
		},
		{
			name: "user app model", method: "POST", contentType: jsonType,
			path:   "/v2/users/u1/apps/a1/models/m1/outputs",
			want:   Route{Protocol: ProtocolREST, UserID: "u1", AppID: "a1", ModelID: "m1"},
			wantOK: true,
		},
		{
			name: "model only", method: "POST", contentType: jsonType,
			path:   "/v2/models/m1/outputs",
			want:   Route{Protocol: ProtocolREST, ModelID: "m1"},
			wantOK: true,
		},
		{
			name: "query string stripped", method: "POST", contentType: jsonType,
			path:   "/v2/models/m1/outputs?debug=1&x=/v2/models/other/outputs",
			want:   Route{Protocol: ProtocolREST, ModelID: "m1"},
			wantOK: true,
		},
		{
			name: "empty query", method: "POST", contentType: jsonType,
			path:   "/v2/users/u1/apps/a1/models/m1/versions/v1/outputs?",
			want:   Route{Protocol: ProtocolREST, UserID: "u1", AppID: "a1", ModelID: "m1", VersionID: "v1"},
			wantOK: true,
		},
		{
			name: "percent-escapes decoded", method: "POST", contentType: jsonType,
			path:   "/v2/users/jane%2Ddoe/apps/my%20app/models/m%2F1/outputs",
			want:   Route{Protocol: ProtocolREST, UserID: "jane-doe", AppID: "my app", ModelID: "m/1"},
			wantOK: true,
		},
		{
			name: "escaped fixed segment", method: "POST", contentType: jsonType,
			path:   "/v2/%6Dodels/m1/outputs",
			want:   Route{Protocol: ProtocolREST, ModelID: "m1"},
			wantOK: true,
		},
		{
			name: "model named like a keyword", method: "POST", contentType: jsonType,
			path:   "/v2/models/users/versions/apps/outputs",
			want:   Route{Protocol: ProtocolREST, ModelID: "users", VersionID: "apps"},
			wantOK: true,
		},
		{name: "invalid escape", method: "POST", contentType: jsonType, path: "/v2/models/m%zz/outputs"},
		{name: "dot dot model", method: "POST", contentType: jsonType, path: "/v2/models/../outputs"},
		{name: "escaped dot dot model", method: "POST", contentType: jsonType, path: "/v2/models/%2E%2E/outputs"},
		{name: "dot version", method: "POST", contentType: jsonType, path: "/v2/models/m1/versions/./outputs"},
		{name: "empty model", method: "POST", contentType: jsonType, path: "/v2/models//outputs"},
		{name: "empty user", method: "POST", contentType: jsonType, path: "/v2/users//apps/a1/models/m1/outputs"},
		{name: "trailing slash", method: "POST", contentType: jsonType, path: "/v2/models/m1/outputs/"},
		{name: "double slash", method: "POST", contentType: jsonType, path: "//v2/models/m1/outputs"},
		{name: "no leading slash", method: "POST", contentType: jsonType, path: "v2/models/m1/outputs"},
		{name: "v1 prefix", method: "POST", contentType: jsonType, path: "/v1/models/m1/outputs"},
		{name: "missing outputs", method: "POST", contentType: jsonType, path: "/v2/models/m1"},
		{name: "inputs path", method: "POST", contentType: jsonType, path: "/v2/users/u1/apps/a1/inputs"},
		{name: "workflow results", method: "POST", contentType: jsonType, path: "/v2/workflows/w1/results"},
		{name: "users without apps", method: "POST", contentType: jsonType, path: "/v2/users/u1/models/m1/outputs"},
		{name: "too many segments", method: "POST", contentType: jsonType, path: "/v2/users/u1/apps/a1/models/m1/versions/v1/extra/outputs"},
		{name: "empty path", method: "POST", contentType: jsonType, path: ""},
		{name: "root", method: "POST", contentType: jsonType, path: "/"},
		{name: "GET", method: "GET", contentType: jsonType, path: "/v2/models/m1/outputs"},
		{name: "lower-case post", method: "post", contentType: jsonType, path: "/v2/models/m1/outputs"},
		{name: "PUT", method: "PUT", contentType: jsonType, path: "/v2/models/m1/outputs"},
		{
			name: "json with charset", method: "POST", contentType: "application/json; charset=utf-8",
			path: "/v2/models/m1/outputs", want: Route{Protocol: ProtocolREST, ModelID: "m1"}, wantOK: true,
		},
		{
			name: "json upper case", method: "POST", contentType: "Application/JSON",
			path: "/v2/models/m1/outputs", want: Route{Protocol: ProtocolREST, ModelID: "m1"}, wantOK: true,
		},
		{
			name: "no content type", method: "POST", contentType: "",
			path: "/v2/models/m1/outputs", want: Route{Protocol: ProtocolREST, ModelID: "m1"}, wantOK: true,
		},
		{name: "form content type", method: "POST", contentType: "application/x-www-form-urlencoded", path: "/v2/models/m1/outputs"},
		{name: "text content type", method: "POST", contentType: "text/plain", path: "/v2/models/m1/outputs"},
		{name: "json with a non-ASCII s", method: "POST", contentType: "application/j\u017fon", path: "/v2/models/m1/outputs"},
		{name: "json with a dotted capital I", method: "POST", contentType: "appl\u0130cation/json", path: "/v2/models/m1/outputs"},
		{
			name: "json with tab", method: "POST", contentType: "\tapplication/json ;charset=utf-8",
			path: "/v2/models/m1/outputs", want: Route{Protocol: ProtocolREST, ModelID: "m1"}, wantOK: true,
		},
		{name: "json prefix only", method: "POST", contentType: "application/jsonx", path: "/v2/models/m1/outputs"},
		{name: "grpc type on REST path", method: "POST", contentType: "application/grpc", path: "/v2/models/m1/outputs"},
		{
			name: "grpc", method: "POST", contentType: "application/grpc",
			path: "/clarifai.api.V2/PostModelOutputs", want: Route{Protocol: ProtocolGRPC}, wantOK: true,
		},
		{
			name: "grpc proto", method: "POST", contentType: "application/grpc+proto",
			path: "/clarifai.api.V2/PostModelOutputs", want: Route{Protocol: ProtocolGRPC}, wantOK: true,
		},
		{
			name: "grpc upper case", method: "POST", contentType: "APPLICATION/GRPC",
			path: "/clarifai.api.V2/PostModelOutputs", want: Route{Protocol: ProtocolGRPC}, wantOK: true,
		},
		{name: "grpc json", method: "POST", contentType: "application/grpc+json", path: "/clarifai.api.V2/PostModelOutputs"},
		{name: "grpc-web", method: "POST", contentType: "application/grpc-web", path: "/clarifai.api.V2/PostModelOutputs"},
		{name: "grpc without content type", method: "POST", contentType: "", path: "/clarifai.api.V2/PostModelOutputs"},
		{name: "grpc json content type", method: "POST", contentType: jsonType, path: "/clarifai.api.V2/PostModelOutputs"},
		{name: "grpc other method", method: "POST", contentType: "application/grpc", path: "/clarifai.api.V2/PostInputs"},
		{name: "grpc wrong case", method: "POST", contentType: "application/grpc", path: "/clarifai.api.v2/PostModelOutputs"},
		{name: "grpc GET", method: "GET", contentType: "application/grpc", path: "/clarifai.api.V2/PostModelOutputs"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Detect(tt.method, tt.path, tt.contentType)
			if ok != tt.wantOK {
				t.Fatalf("Detect(%q, %q, %q) ok = %v, want %v", tt.method, tt.path, tt.contentType, ok, tt.wantOK)
			}
			if got != tt.want {
				t.Errorf("Detect(%q, %q, %q) = %+v, want %+v", tt.method, tt.path, tt.contentType, got, tt.want)
			}
		})
	}
}

func TestDetect_NoAllocs(t *testing.T) {
	paths := []string{
		"/v2/users/u1/apps/a1/models/m1/versions/v1/outputs?x=1",
		"/v2/models/m1/outputs",
		"/clarifai.api.V2/PostModelOutputs",
		"/v2/users/u1/apps/a1/inputs",
	}
	for _, path := range paths {
		contentType := "application/json; charset=utf-8"
		if strings.HasPrefix(path, "/clarifai") {
			contentType = "application/grpc"
		}
		allocs := testing.AllocsPerRun(100, func() {
			Detect("POST", path, contentType)
		})
		if allocs != 0 {
			t.Errorf("Detect(%q) allocates %v times per call, want 0", path, allocs)
		}
	}
}

// detectReference is a plain restatement of the REST predict routes that
// FuzzDetect compares Detect against.
func detectReference(method, path, contentType string) (Route, bool) {
	if method != "POST" {
		return Route{}, false
	}
	path, _, _ = strings.Cut(path, "?")
	path, _, _ = strings.Cut(path, "#")
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.Trim(mediaType, " \t")
	mediaType = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, mediaType)

	if path == "/clarifai.api.V2/PostModelOutputs" {
		ok := mediaType == "application/grpc" || mediaType == "application/grpc+proto"
		if !ok {
			return Route{}, false
		}
		return Route{Protocol: ProtocolGRPC}, true
	}
	if mediaType != "" && mediaType != "application/json" || !strings.HasPrefix(path, "/") {
		return Route{}, false
	}

	parts := strings.Split(path[1:], "/")
	for i, part := range parts {
		decoded, err := url.PathUnescape(part)
		if err != nil {
			return Route{}, false
		}
		parts[i] = decoded
	}
	for _, part := range parts {
		if part == "" {
			return Route{}, false
		}
	}

	idAt := func(i int) bool { return parts[i] != "." && parts[i] != ".." }
	route := Route{Protocol: ProtocolREST}
	switch {
	case len(parts) == 4 && parts[0] == "v2" && parts[1] == "models" && parts[3] == "outputs" && idAt(2):
		route.ModelID = parts[2]
	case len(parts) == 6 && parts[0] == "v2" && parts[1] == "models" && parts[3] == "versions" && parts[5] == "outputs" && idAt(2) && idAt(4):
		route.ModelID, route.VersionID = parts[2], parts[4]
	case len(parts) == 8 && parts[0] == "v2" && parts[1] == "users" && parts[3] == "apps" && parts[5] == "models" && parts[7] == "outputs" && idAt(2) && idAt(4) && idAt(6):
		route.UserID, route.AppID, route.ModelID = parts[2], parts[4], parts[6]
	case len(parts) == 10 && parts[0] == "v2" && parts[1] == "users" && parts[3] == "apps" && parts[5] == "models" && parts[7] == "versions" && parts[9] == "outputs" && idAt(2) && idAt(4) && idAt(6) && idAt(8):
		route.UserID, route.AppID, route.ModelID, route.VersionID = parts[2], parts[4], parts[6], parts[8]
	default:
		return Route{}, false
	}
	return route, true
}

func FuzzDetect(f *testing.F) {
	f.Add("POST", "/v2/users/u1/apps/a1/models/m1/versions/v1/outputs", "application/json")
	f.Add("POST", "/v2/models/m%2D1/outputs?x=y", "application/json; charset=utf-8")
	f.Add("POST", "/clarifai.api.V2/PostModelOutputs", "application/grpc")
	f.Add("GET", "/v2/models/m1/outputs", "")

	f.Fuzz(func(t *testing.T, method, path, contentType string) {
		got, ok := Detect(method, path, contentType)
		want, wantOK := detectReference(method, path, contentType)
		if ok != wantOK || got != want {
			t.Fatalf("Detect(%q, %q, %q) = %+v, %v; reference = %+v, %v", method, path, contentType, got, ok, want, wantOK)
		}
		if ok && got.Protocol == ProtocolREST && got.ModelID == "" {
			t.Fatalf("Detect(%q) matched REST without a model ID", path)
		}
	})
}

// BenchmarkDetect measures the per-request cost of Detect on a predict and
// on a request that is not one. Compare runs with benchstat.
func BenchmarkDetect(b *testing.B) {
	cases := []struct{ name, path, contentType string }{
		{"rest_full", "/v2/users/u1/apps/a1/models/general-image-recognition/versions/aa7f35c01e0642fda5cf400f543e7c40/outputs", "application/json"},
		{"rest_short", "/v2/models/m1/outputs?x=1", "application/json"},
		{"rest_escaped", "/v2/models/m%2D1/outputs", "application/json"},
		{"grpc", "/clarifai.api.V2/PostModelOutputs", "application/grpc"},
		{"not_predict", "/v2/users/u1/apps/a1/inputs", "application/json"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Detect("POST", c.path, c.contentType)
			}
		})
	}
}
