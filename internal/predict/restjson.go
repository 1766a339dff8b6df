package predict

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"

	asmbase64 "github.com/segmentio/asm/base64"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// A REST predict is mostly one large base64 string, and protojson spends
// most of its time on it. It checks the string rune by rune, copies it, and
// scans it again for the URL-safe alphabet before it decodes it.
// decodeRESTRequest lifts such strings out of the body instead. Each long
// string value that decodes as base64 is replaced by a short placeholder,
// protojson parses the small body that remains, and the placeholders are
// then swapped for the decoded bytes.
//
// protojson still decides what every part of the body means, so the result
// equals what protojson returns for the whole body:
//   - A lifted string contains base64 characters only. The original is thus
//     a valid JSON string whose value is its raw text, and protojson decodes
//     it to the bytes decodeBase64 returned.
//   - The placeholder is a valid JSON string too, so both bodies have the
//     same tokens except the lifted values.
//   - Each placeholder must end up in the base64 field of an input's image,
//     video or audio, where its decoded bytes belong. One that ends up
//     anywhere else (a member name, a string field, metadata, an unknown
//     field) would change the result. The whole body is then parsed again
//     with protojson, as it is when the small body fails to parse.

// minLiftedString is the length of the shortest string worth lifting,
// because protojson decodes shorter ones about as fast as they are lifted.
// The value is an estimate.
const minLiftedString = 256

// A placeholder is the standard base64 of placeholderNonce followed by the
// big-endian index of its lifted string. The 112-bit nonce is random per
// process, so a client cannot guess a placeholder to put in a body.
const (
	placeholderNonceLen = 14
	placeholderLen      = placeholderNonceLen + 4
)

var placeholderNonce = func() [placeholderNonceLen]byte {
	var nonce [placeholderNonceLen]byte
	// Since Go 1.24, Read never returns an error: it crashes the program.
	rand.Read(nonce[:])
	return nonce
}()

// liftedString is a string value taken out of a body, whose text is
// body[start:end] without the quotes.
type liftedString struct {
	start, end int
	decoded    []byte
	placed     bool
}

// decodeRESTRequest decodes body into message and reports whether it did.
// On false, message contains partial results and the caller must decode the
// body with protojson.
func decodeRESTRequest(body []byte, message *clarifaipb.PostModelOutputsRequest) bool {
	lifted, ok := liftStrings(body)
	if !ok || len(lifted) == 0 {
		return false
	}

	if err := jsonOptions.Unmarshal(withPlaceholders(body, lifted), message); err != nil {
		return false
	}
	return placeDecoded(message, lifted)
}

// liftStrings finds the long string values of body that decode as base64.
// It returns false for a body with an unterminated string, which protojson
// rejects.
func liftStrings(body []byte) ([]liftedString, bool) {
	var lifted []liftedString
	for offset := 0; ; {
		quote := bytes.IndexByte(body[offset:], '"')
		if quote < 0 {
			return lifted, true
		}
		start := offset + quote + 1
		end, ok := stringEnd(body, start)
		if !ok {
			return nil, false
		}
		offset = end + 1

		if end-start < minLiftedString {
			continue
		}
		if decoded, ok := decodeLiftable(body[start:end]); ok {
			lifted = append(lifted, liftedString{start: start, end: end, decoded: decoded})
		}
	}
}

// stringEnd returns the index of the quote that closes the JSON string
// whose text starts at start. That is the first quote that does not follow
// an odd number of backslashes.
func stringEnd(body []byte, start int) (int, bool) {
	for from := start; ; {
		quote := bytes.IndexByte(body[from:], '"')
		if quote < 0 {
			return 0, false
		}
		end := from + quote

		backslashes := 0
		for end-backslashes-1 >= start && body[end-backslashes-1] == '\\' {
			backslashes++
		}
		if backslashes%2 == 0 {
			return end, true
		}
		from = end + 1
	}
}

// decodeLiftable decodes text as protojson would, and reports whether the
// string can be lifted. The base64 decoder rejects every byte outside its
// alphabet except CR and LF, which it skips. JSON forbids them unescaped in
// a string, so such a string stays in place for protojson to reject.
func decodeLiftable(text []byte) ([]byte, bool) {
	if bytes.IndexByte(text, '\n') >= 0 || bytes.IndexByte(text, '\r') >= 0 {
		return nil, false
	}
	decoded, err := decodeBase64(text)
	return decoded, err == nil
}

// withPlaceholders returns a copy of body with the text of each lifted
// string replaced by its placeholder.
func withPlaceholders(body []byte, lifted []liftedString) []byte {
	size := len(body)
	for _, s := range lifted {
		size -= s.end - s.start
	}
	size += len(lifted) * base64.StdEncoding.EncodedLen(placeholderLen)

	out := make([]byte, 0, size)
	previous := 0
	for i, s := range lifted {
		out = append(out, body[previous:s.start]...)
		out = appendPlaceholder(out, i)
		previous = s.end
	}
	return append(out, body[previous:]...)
}

// appendPlaceholder appends the placeholder of the lifted string at index.
func appendPlaceholder(out []byte, index int) []byte {
	var raw [placeholderLen]byte
	copy(raw[:], placeholderNonce[:])
	binary.BigEndian.PutUint32(raw[placeholderNonceLen:], uint32(index))
	return base64.StdEncoding.AppendEncode(out, raw[:])
}

// placeholderIndex returns the index of the lifted string whose placeholder
// decodes to decoded, and false when decoded is not a placeholder.
func placeholderIndex(decoded []byte) (int, bool) {
	if len(decoded) != placeholderLen || !bytes.Equal(decoded[:placeholderNonceLen], placeholderNonce[:]) {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(decoded[placeholderNonceLen:])), true
}

// placeDecoded replaces each placeholder in the inputs' media with the
// bytes of its lifted string. It returns false unless every lifted string
// is placed there exactly once.
func placeDecoded(message *clarifaipb.PostModelOutputsRequest, lifted []liftedString) bool {
	placed := 0
	swap := func(field *[]byte) bool {
		index, ok := placeholderIndex(*field)
		if !ok {
			return true
		}
		if index >= len(lifted) || lifted[index].placed {
			return false
		}
		lifted[index].placed = true
		*field = lifted[index].decoded
		placed++
		return true
	}

	for _, input := range message.GetInputs() {
		data := input.GetData()
		if data == nil {
			continue
		}
		if image := data.GetImage(); image != nil && !swap(&image.Base64) {
			return false
		}
		if video := data.GetVideo(); video != nil && !swap(&video.Base64) {
			return false
		}
		if audio := data.GetAudio(); audio != nil && !swap(&audio.Base64) {
			return false
		}
	}
	return placed == len(lifted)
}

// decodeBase64 decodes a bytes field's text as protojson does: the
// URL-safe alphabet when the text holds '-' or '_', else the standard one,
// and no padding when its length is not a multiple of four.
//
// The standard alphabet, which most clients use, is decoded with
// github.com/segmentio/asm/base64 v1.2.1, about four times faster on a 64 KiB
// image (measured on an AMD EPYC with AVX2). It decodes whole 32-character
// blocks of the alphabet with AVX2, or NEON on arm64. From the first block that
// contains anything else, it passes the rest to encoding/base64, the decoder
// protojson uses. Blocks are whole quanta, so both decoders accept and
// reject the same texts and return the same bytes. Its URL-safe decoder
// also accepts '/', which protojson rejects, so URL-safe texts go to
// encoding/base64.
//
// A text with '-' or '_' fails the standard alphabet. That alphabet is
// tried first, so a long standard text is not scanned for them.
//
// NOTE: TestDecodeBase64_MatchesProtojson has only run on amd64, so the
// NEON path's agreement with encoding/base64 is assumed, not checked.
func decodeBase64(text []byte) ([]byte, error) {
	padded := len(text)%4 == 0
	encoding := asmbase64.RawStdEncoding
	if padded {
		encoding = asmbase64.StdEncoding
	}
	decoded := make([]byte, encoding.DecodedLen(len(text)))
	n, err := encoding.Decode(decoded, text)
	if err == nil {
		return decoded[:n], nil
	}
	if bytes.IndexByte(text, '-') < 0 && bytes.IndexByte(text, '_') < 0 {
		return nil, err
	}

	urlEncoding := base64.RawURLEncoding
	if padded {
		urlEncoding = base64.URLEncoding
	}
	if n, err = urlEncoding.Decode(decoded, text); err != nil {
		return nil, err
	}
	return decoded[:n], nil
}
