package envoytest

import (
	"regexp"
	"strings"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// headerMap converts headers the way Envoy 1.32+ does: lowercase keys, the
// value in raw_value only, duplicates kept, and only the headers the forward
// rules let through.
func headerMap(headers []Header, rules *filterpb.HeaderForwardingRules) *corepb.HeaderMap {
	m := &corepb.HeaderMap{Headers: make([]*corepb.HeaderValue, 0, len(headers))}
	for _, h := range headers {
		name := lowerASCII(h.Name)
		if !forwarded(name, rules) {
			continue
		}
		m.Headers = append(m.Headers, &corepb.HeaderValue{Key: name, RawValue: []byte(h.Value)})
	}
	return m
}

// lowerASCII lowercases ASCII letters only, as Envoy does with header names;
// strings.ToLower would also map non-ASCII letters such as "\u212a" (KELVIN
// SIGN) to "k".
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// forwarded applies forward_rules: a header must match allowed_headers when
// that list is set, and must not match disallowed_headers.
func forwarded(name string, rules *filterpb.HeaderForwardingRules) bool {
	if rules == nil {
		return true
	}
	if allowed := rules.GetAllowedHeaders(); allowed != nil && !matchesAny(name, allowed) {
		return false
	}
	if disallowed := rules.GetDisallowedHeaders(); disallowed != nil && matchesAny(name, disallowed) {
		return false
	}
	return true
}

func matchesAny(s string, list *matcherpb.ListStringMatcher) bool {
	for _, m := range list.GetPatterns() {
		if matches(s, m) {
			return true
		}
	}
	return false
}

// matches evaluates one StringMatcher. A custom matcher never matches.
func matches(s string, m *matcherpb.StringMatcher) bool {
	fold := func(x string) string {
		if m.GetIgnoreCase() {
			return lowerASCII(x)
		}
		return x
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		return fold(s) == fold(p.Exact)
	case *matcherpb.StringMatcher_Prefix:
		return strings.HasPrefix(fold(s), fold(p.Prefix))
	case *matcherpb.StringMatcher_Suffix:
		return strings.HasSuffix(fold(s), fold(p.Suffix))
	case *matcherpb.StringMatcher_Contains:
		return strings.Contains(fold(s), fold(p.Contains))
	case *matcherpb.StringMatcher_SafeRegex:
		// Envoy uses RE2, whose syntax Go's regexp shares; the pattern must
		// match the whole string.
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		return err == nil && re.MatchString(s)
	}
	return false
}

// withoutContentLength returns headers minus content-length, which Envoy
// removes when the processor could change the body it describes.
func withoutContentLength(headers []Header) []Header {
	out := make([]Header, 0, len(headers))
	for _, h := range headers {
		if !strings.EqualFold(h.Name, "content-length") {
			out = append(out, h)
		}
	}
	return out
}

// bodyMayChange reports whether Envoy treats the body as changeable under
// mode, in which case it removes content-length: STREAMED, BUFFERED_PARTIAL
// and FULL_DUPLEX_STREAMED always, BUFFERED only when the processor does not
// see the headers and so cannot fix content-length itself.
func bodyMayChange(body filterpb.ProcessingMode_BodySendMode, headers filterpb.ProcessingMode_HeaderSendMode) bool {
	switch body {
	case filterpb.ProcessingMode_STREAMED, filterpb.ProcessingMode_BUFFERED_PARTIAL, filterpb.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case filterpb.ProcessingMode_BUFFERED:
		return headers == filterpb.ProcessingMode_SKIP
	}
	return false
}
