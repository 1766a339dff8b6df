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
		// net/http keeps the declared length in ContentLength and may drop
		// the header; -1 means the length is unknown (chunked or HTTP/2).
		if r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
		return ""
	}
	return r.Header.Get(name)
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
		return strconv.Itoa(h.res.StatusCode)
	}
	return h.res.Header.Get(name)
}

// headerMap presents trailers, which have no pseudo-headers.
type headerMap http.Header

func (h headerMap) Get(name string) string { return http.Header(h).Get(name) }
