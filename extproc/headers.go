package extproc

import (
	"slices"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/collectord/collectord/internal/capture"
)

// headerMap gives the capture engine read access to an Envoy HeaderMap
// without copying it.
type headerMap struct {
	m *corepb.HeaderMap
}

var _ capture.Headers = headerMap{}

// Get returns the value of the first header called name (lowercase), or ""
// when there is none. Envoy 1.32 and later send the value in raw_value and
// leave value empty; older versions fill value only.
func (h headerMap) Get(name string) string {
	for _, hv := range h.m.GetHeaders() {
		// Envoy lowercases keys already; folding keeps a mixed-case key
		// from a non-Envoy client from hiding a header.
		if !equalFoldASCII(hv.GetKey(), name) {
			continue
		}
		if raw := hv.GetRawValue(); len(raw) > 0 {
			return string(raw)
		}
		return hv.GetValue()
	}
	return ""
}

// equalFoldASCII compares header names case-insensitively in ASCII only.
// Field names are ASCII tokens (RFC 9110), and strings.EqualFold's Unicode
// folding would let "\u212a" (KELVIN SIGN) match "k".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// metadataOf converts the dynamic metadata Envoy forwarded into the form the
// capture engine reads, keeping only namespaces when that list is non-empty.
// It returns nil when there is nothing to pass.
func metadataOf(md *corepb.Metadata, namespaces []string) map[string]map[string]any {
	fields := md.GetFilterMetadata()
	if len(fields) == 0 {
		return nil
	}

	out := make(map[string]map[string]any, len(fields))
	for ns, s := range fields {
		if len(namespaces) > 0 && !slices.Contains(namespaces, ns) {
			continue
		}
		out[ns] = s.AsMap()
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
