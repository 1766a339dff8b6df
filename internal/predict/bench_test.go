package predict

import (
	"encoding/base64"
	"math/rand/v2"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// restPredictOfSize builds a REST predict body of about size bytes: one
// base64 image input, as most predicts are.
func restPredictOfSize(size int) []byte {
	const envelope = `{"user_app_id":{"user_id":"clarifai","app_id":"main"},"inputs":[{"id":"in-1","data":{"image":{"base64":""}}}]}`
	imageBytes := (size - len(envelope)) * 3 / 4
	image := make([]byte, imageBytes)
	random := rand.New(rand.NewPCG(1, 2))
	for i := range image {
		image[i] = byte(random.Uint32())
	}
	return []byte(`{"user_app_id":{"user_id":"clarifai","app_id":"main"},"inputs":[{"id":"in-1","data":{"image":{"base64":"` +
		base64.StdEncoding.EncodeToString(image) + `"}}}]}`)
}

// BenchmarkParseRequest measures parsing a 64 KiB predict as REST JSON and
// as a gRPC frame (plain and gzip). Compare runs with benchstat.
// rest_64KiB_protojson decodes the same REST body with protojson alone, as
// ParseRequest did before its fast path. Its ratio to rest_64KiB is the
// speed-up on the machine at hand, which is clearer than absolute figures on
// a busy machine.
func BenchmarkParseRequest(b *testing.B) {
	restBody := restPredictOfSize(64 << 10)
	parsed, err := ParseRequest(restRoute, restBody, "")
	if err != nil {
		b.Fatalf("ParseRequest: %v", err)
	}
	payload := marshalProto(b, &clarifaipb.PostModelOutputsRequest{ModelId: "m1", Inputs: parsed.Inputs})

	cases := []struct {
		name     string
		route    Route
		body     []byte
		encoding string
	}{
		{"rest_64KiB", restRoute, restBody, ""},
		{"grpc_64KiB", grpcRoute, frame(false, payload), ""},
		{"grpc_gzip_64KiB", grpcRoute, frame(true, gzipBytes(b, payload)), "gzip"},
	}
	b.Run("rest_64KiB_protojson", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(restBody)))
		for b.Loop() {
			if err := jsonOptions.Unmarshal(restBody, &clarifaipb.PostModelOutputsRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				if _, err := ParseRequest(c.route, c.body, c.encoding); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
