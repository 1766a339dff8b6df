package extproc

import (
	"slices"
	"strings"

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
		// Envoy lowercases keys already; EqualFold keeps a mixed-case key
		// from a non-Envoy client from hiding a header.
		if !strings.EqualFold(hv.GetKey(), name) {
			continue
		}
		if raw := hv.GetRawValue(); len(raw) > 0 {
			return string(raw)
		}
		return hv.GetValue()
	}
	return ""
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
