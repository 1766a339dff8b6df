// The race detector slows a 128 MiB decompression to minutes.
//go:build !race

package predict

import (
	"errors"
	"testing"
)

func TestParseRequest_GzipBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("decompresses 128 MiB")
	}
	zeros := make([]byte, MaxDecompressedBytes+1)
	body := frame(true, gzipBytes(t, zeros))

	_, err := ParseRequest(grpcRoute, body, "gzip")
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error = %v, want ErrTooLarge", err)
	}
}
