package envoytest

import (
	"bytes"
	"strings"
	"testing"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// decodeHeaders builds headers from fuzz bytes: one name=value per line.
func decodeHeaders(raw []byte) []Header {
	var headers []Header
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte("="))
		headers = append(headers, Header{Name: string(name), Value: string(value)})
	}
	return headers
}

// asciiLowered is the reference for header name lowercasing.
func asciiLowered(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		b.WriteByte(c)
	}
	return b.String()
}

// FuzzHeaderMapConversion checks the HeaderMap the client builds against
// what Envoy 1.32 and later send: every header in order, duplicates kept,
// names lowercased in ASCII, the value in raw_value only, and nothing the
// forward rules drop.
func FuzzHeaderMapConversion(f *testing.F) {
	noCookie := &filterpb.HeaderForwardingRules{DisallowedHeaders: &matcherpb.ListStringMatcher{Patterns: []*matcherpb.StringMatcher{
		{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "cookie"}},
	}}}

	f.Fuzz(func(t *testing.T, raw []byte) {
		headers := decodeHeaders(raw)

		all := headerMap(headers, nil).GetHeaders()
		if len(all) != len(headers) {
			t.Fatalf("%d entries for %d headers", len(all), len(headers))
		}
		for i, hv := range all {
			if want := asciiLowered(headers[i].Name); hv.GetKey() != want {
				t.Errorf("entry %d: key %q, want %q", i, hv.GetKey(), want)
			}
			if string(hv.GetRawValue()) != headers[i].Value || hv.GetValue() != "" {
				t.Errorf("entry %d: raw_value %q, value %q; want raw_value %q and no value", i, hv.GetRawValue(), hv.GetValue(), headers[i].Value)
			}
		}

		forwarded := headerMap(headers, noCookie).GetHeaders()
		j := 0
		for _, hv := range all {
			if hv.GetKey() == "cookie" {
				continue
			}
			if j >= len(forwarded) || forwarded[j].GetKey() != hv.GetKey() || !bytes.Equal(forwarded[j].GetRawValue(), hv.GetRawValue()) {
				t.Fatalf("forward rules dropped or reordered %q", hv.GetKey())
			}
			j++
		}
		if j != len(forwarded) {
			t.Errorf("forward rules kept %d entries, want %d: cookie must be dropped", len(forwarded), j)
		}
	})
}
