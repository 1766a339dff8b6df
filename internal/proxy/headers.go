package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/collectord/collectord/internal/capture"
)

// Compile-time checks that the adapters implement capture.Headers.
var (
	_ capture.Headers = requestHeaders{}
	_ capture.Headers = responseHeaders{}
	_ capture.Headers = headerMap(nil)
)

// requestHeaders presents a request's headers as Envoy sends them to
// ext_proc: lowercase names plus the :method, :path (with the query),
// :authority and :scheme pseudo-headers.
type requestHeaders struct {
	r *http.Request
}

func (h requestHeaders) Get(name string) string {
	r := h.r
	switch name {
	case ":method":
		return r.Method
	case ":path":
		return requestPath(r)
	case ":authority":
		return r.Host
	case ":scheme":
		if r.TLS != nil {
			return "https"
		}
		return "http"
	case "content-length":
		// net/http drops the header of a chunked request and keeps the
		// length in ContentLength, where -1 means unknown.
		if v := firstValue(r.Header, "Content-Length"); v != "" || r.ContentLength < 0 {
			return v
		}
		return strconv.FormatInt(r.ContentLength, 10)
	}
	return firstValue(r.Header, canonicalName(name))
}

// knownNames maps the lowercase names the capture side looks up to their
// canonical http.Header form, which saves the allocation of canonicalizing a
// lowercase name on every lookup.
var knownNames = map[string]string{
	"authorization":  "Authorization",
	"content-type":   "Content-Type",
	"grpc-encoding":  "Grpc-Encoding",
	"grpc-message":   "Grpc-Message",
	"grpc-status":    "Grpc-Status",
	"user-agent":     "User-Agent",
	"x-request-id":   "X-Request-Id",
	"content-length": "Content-Length",
}

// canonicalName returns the http.Header key of a lowercase header name.
func canonicalName(name string) string {
	if canonical, ok := knownNames[name]; ok {
		return canonical
	}
	return http.CanonicalHeaderKey(name)
}

// firstValue returns the first value of the canonical key in h, or "".
func firstValue(h http.Header, key string) string {
	if values := h[key]; len(values) > 0 {
		return values[0]
	}
	return ""
}

// requestPath returns the request target in origin form, as Envoy's :path:
// the raw path and query the client sent, or for an absolute-form target
// (http://host/path) its path and query.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// responseHeaders presents a response's headers with the :status
// pseudo-header.
type responseHeaders struct {
	res *http.Response
}

func (h responseHeaders) Get(name string) string {
	if name == ":status" {
		if h.res.StatusCode == http.StatusOK {
			return "200"
		}
		return strconv.Itoa(h.res.StatusCode)
	}
	return firstValue(h.res.Header, canonicalName(name))
}

// headerMap presents trailers, which have no pseudo-headers.
type headerMap http.Header

func (h headerMap) Get(name string) string { return firstValue(http.Header(h), canonicalName(name)) }
