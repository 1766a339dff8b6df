package api_test

import (
	"io"
	"net/http"
	"testing"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// The benchmarks serve GetCollector over each transport from a SQLite store
// on loopback. Compare runs with benchstat:
//
//	go test -run '^$' -bench . -count 10 ./internal/api > new.txt
//	benchstat old.txt new.txt

func BenchmarkREST_GetCollector(b *testing.B) {
	env := newTestEnv(b)
	env.postCollectors(collectorJSON("bench", alicePostKey)).requireStatus(b, http.StatusOK, pb.StatusCode_SUCCESS)
	req, err := http.NewRequest(http.MethodGet, env.http.URL+collectorsPath+"/bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", keyHeader(alicePAT))
	client := env.http.Client()

	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("HTTP status %d", resp.StatusCode)
		}
	}
}

func BenchmarkGRPC_GetCollector(b *testing.B) {
	env := newTestEnv(b)
	env.postCollectors(collectorJSON("bench", alicePostKey)).requireStatus(b, http.StatusOK, pb.StatusCode_SUCCESS)
	ctx := withKey(alicePAT)
	req := &pb.GetCollectorRequest{UserAppId: &pb.UserAppIDSet{UserId: "me", AppId: "dest"}, CollectorId: "bench"}

	b.ResetTimer()
	for b.Loop() {
		resp, err := env.grpc.GetCollector(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetStatus().GetCode() != pb.StatusCode_SUCCESS {
			b.Fatalf("status %s", resp.GetStatus().GetCode())
		}
	}
}
