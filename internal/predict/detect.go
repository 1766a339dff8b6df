package predict

import (
	"net/url"
	"strings"
)

// grpcPredictPath is the gRPC method path of a predict. Its model is only in
// the body.
const grpcPredictPath = "/clarifai.api.V2/PostModelOutputs"

// maxRESTSegments is the segment count of the longest REST predict path:
// v2/users/{user}/apps/{app}/models/{model}/versions/{version}/outputs.
const maxRESTSegments = 10

// Detect reports whether a request line is a predict, and its route.
//
// Only POST qualifies. REST predicts are the four PostModelOutputs paths,
// with or without the users/apps prefix and the versions segment, sent with
// a JSON content type or none. The query string is ignored, and
// percent-escapes in segments are decoded. gRPC predicts are
// /clarifai.api.V2/PostModelOutputs with content type application/grpc or
// application/grpc+proto.
//
// Detect runs for every request, so it avoids regexps and allocates only when
// a segment carries percent-escapes.
func Detect(method, path, contentType string) (Route, bool) {
	if method != "POST" {
		return Route{}, false
	}

	// The query string and fragment never name the model.
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}

	if path == grpcPredictPath {
		if !isGRPCProtoContentType(contentType) {
			return Route{}, false
		}
		return Route{Protocol: ProtocolGRPC}, true
	}

	if !isJSONContentType(contentType) {
		return Route{}, false
	}
	return detectREST(path)
}

// detectREST matches path against the four REST predict forms.
func detectREST(path string) (Route, bool) {
	if !strings.HasPrefix(path, "/") {
		return Route{}, false
	}

	// Split in one pass without allocating: the substrings share path's
	// memory, and only segments with an escape are decoded.
	var segments [maxRESTSegments]string
	count := 0
	start := 1
	escaped := false
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			escaped = escaped || path[i] == '%'
			continue
		}
		if count == maxRESTSegments {
			return Route{}, false
		}
		segment := path[start:i]
		if escaped {
			decoded, err := url.PathUnescape(segment)
			if err != nil {
				return Route{}, false
			}
			segment = decoded
		}
		segments[count] = segment
		count++
		start, escaped = i+1, false
	}

	return matchREST(segments[:count])
}

// matchREST maps decoded path segments to a Route. Every segment must be
// non-empty, so double or trailing slashes do not match.
func matchREST(s []string) (Route, bool) {
	route := Route{Protocol: ProtocolREST}
	if len(s) < 4 || s[0] != "v2" || s[len(s)-1] != "outputs" {
		return Route{}, false
	}

	// Drop the users/{user}/apps/{app} prefix.
	rest := s[1 : len(s)-1]
	if len(rest) >= 4 && rest[0] == "users" && rest[2] == "apps" {
		route.UserID, route.AppID = rest[1], rest[3]
		if !isID(route.UserID) || !isID(route.AppID) {
			return Route{}, false
		}
		rest = rest[4:]
	}

	// What remains is models/{model} or models/{model}/versions/{version}.
	switch {
	case len(rest) == 2 && rest[0] == "models":
		route.ModelID = rest[1]
	case len(rest) == 4 && rest[0] == "models" && rest[2] == "versions":
		route.ModelID, route.VersionID = rest[1], rest[3]
		if !isID(route.VersionID) {
			return Route{}, false
		}
	default:
		return Route{}, false
	}
	if !isID(route.ModelID) {
		return Route{}, false
	}
	return route, true
}

// isID rejects empty IDs and the dot segments "." and "..", which a server
// resolves as path navigation, never as a model, app or user ID.
func isID(id string) bool {
	return id != "" && id != "." && id != ".."
}

// isJSONContentType accepts application/json with any parameters, in any
// case, and an absent content type, which REST clients sometimes omit.
func isJSONContentType(contentType string) bool {
	mediaType := mediaTypeOf(contentType)
	return mediaType == "" || equalFoldASCII(mediaType, "application/json")
}

// isGRPCProtoContentType accepts the gRPC content types whose messages are
// protobuf: application/grpc and application/grpc+proto.
func isGRPCProtoContentType(contentType string) bool {
	mediaType := mediaTypeOf(contentType)
	return equalFoldASCII(mediaType, "application/grpc") ||
		equalFoldASCII(mediaType, "application/grpc+proto")
}

// mediaTypeOf returns the media type of a Content-Type value without its
// parameters and the spaces and tabs around it.
func mediaTypeOf(contentType string) string {
	if i := strings.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	return strings.Trim(contentType, " \t")
}

// equalFoldASCII compares s with the lower-case ASCII string lower, ignoring
// ASCII case only. Header values are ASCII, and strings.EqualFold would also
// fold letters such as U+017F (long s) into "s".
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
