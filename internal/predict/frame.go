package predict

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// frameHeaderLen is the size of a gRPC length-prefixed message header: one
// compressed-flag byte and a 4-byte big-endian message length.
const frameHeaderLen = 5

// MaxDecompressedBytes bounds the size of one gzip-decompressed body or gRPC
// message, so that a small compressed body cannot expand without limit in
// memory. NOTE: the value is an estimate. Clarifai documents a 128 MB cap on
// an inputs batch, and a predict is assumed to carry no more.
const MaxDecompressedBytes = 128 << 20

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// firstMessage returns the first complete gRPC message of body, decompressed
// per grpcEncoding when its compressed flag is set. A unary call carries one
// message; anything after it is ignored.
func firstMessage(body []byte, grpcEncoding string, limit int) ([]byte, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty gRPC body", ErrMalformed)
	}
	if len(body) < frameHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 5-byte frame header", ErrTruncatedFrame, len(body))
	}

	flag := body[0]
	length := binary.BigEndian.Uint32(body[1:frameHeaderLen])
	available := uint64(len(body) - frameHeaderLen)
	if uint64(length) > available {
		return nil, fmt.Errorf("%w: frame length %d exceeds the %d bytes received", ErrTruncatedFrame, length, available)
	}
	payload := body[frameHeaderLen : frameHeaderLen+int(length)]

	switch flag {
	case 0:
		return payload, nil
	case 1:
		return decompress(payload, grpcEncoding, limit)
	default:
		return nil, fmt.Errorf("%w: gRPC frame flag %#x is neither 0 nor 1", ErrMalformed, flag)
	}
}

// decompress decodes a compressed message per the grpc-encoding header, up
// to limit bytes.
func decompress(payload []byte, grpcEncoding string, limit int) ([]byte, error) {
	encoding := strings.TrimSpace(grpcEncoding)
	switch {
	case encoding == "" || strings.EqualFold(encoding, "identity"):
		// The gRPC protocol forbids the compressed flag without an encoding.
		return nil, fmt.Errorf("%w: compressed gRPC frame with grpc-encoding %q", ErrMalformed, encoding)
	case strings.EqualFold(encoding, "gzip"):
		return gunzip(payload, limit)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedEncoding, encoding)
	}
}

// gunzip decompresses payload, failing with ErrTooLarge past limit bytes.
func gunzip(payload []byte, limit int) ([]byte, error) {
	reader, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %w", ErrMalformed, err)
	}
	defer reader.Close()

	message, err := io.ReadAll(io.LimitReader(reader, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %w", ErrMalformed, err)
	}
	if len(message) > limit {
		return nil, fmt.Errorf("%w: gzip message exceeds %d bytes", ErrTooLarge, limit)
	}
	return message, nil
}
