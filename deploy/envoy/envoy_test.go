// Package envoy_test validates the shipped Envoy configurations with the
// go-control-plane types and checks the ext_proc settings collectord relies
// on.
package envoy_test

import (
	"os"
	"path/filepath"
	"testing"

	bootstrappb "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/collectord/collectord/extproc"

	// Every extension named by a typed_config in the shipped files must be
	// registered, or protojson cannot resolve its type URL.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// validator is implemented by every go-control-plane message.
type validator interface {
	ValidateAll() error
}

func loadBootstraps(t *testing.T) map[string]*bootstrappb.Bootstrap {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no *.yaml in deploy/envoy")
	}

	out := map[string]*bootstrappb.Bootstrap{}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatalf("%s: YAML to JSON: %v", path, err)
		}
		b := &bootstrappb.Bootstrap{}
		if err := protojson.Unmarshal(js, b); err != nil {
			t.Fatalf("%s: not a valid Envoy bootstrap: %v", path, err)
		}
		out[path] = b
	}
	return out
}

func TestBootstrap_Valid(t *testing.T) {
	for path, b := range loadBootstraps(t) {
		if err := b.ValidateAll(); err != nil {
			t.Errorf("%s: %v", path, err)
		}

		// ValidateAll stops at Any fields, so each typed_config is unpacked
		// and validated on its own.
		count := 0
		walkAny(b.ProtoReflect(), func(a *anypb.Any) {
			count++
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Errorf("%s: typed_config %s: %v", path, a.GetTypeUrl(), err)
				return
			}
			v, ok := m.(validator)
			if !ok {
				t.Errorf("%s: typed_config %s has no validation", path, a.GetTypeUrl())
				return
			}
			if err := v.ValidateAll(); err != nil {
				t.Errorf("%s: typed_config %s: %v", path, a.GetTypeUrl(), err)
			}
		})
		if count == 0 {
			t.Errorf("%s: no typed_config found", path)
		}
	}
}

// walkAny calls fn for every Any inside m, at any depth, unpacking each Any
// to walk its content too.
func walkAny(m protoreflect.Message, fn func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		fn(a)
		if inner, err := a.UnmarshalNew(); err == nil {
			walkAny(inner.ProtoReflect(), fn)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			list := v.List()
			for i := range list.Len() {
				walkAny(list.Get(i).Message(), fn)
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkAny(mv.Message(), fn)
					return true
				})
			}
		default:
			walkAny(v.Message(), fn)
		}
		return true
	})
}

// extProcFilters returns every ext_proc filter configuration in b.
func extProcFilters(b *bootstrappb.Bootstrap) []*filterpb.ExternalProcessor {
	var out []*filterpb.ExternalProcessor
	walkAny(b.ProtoReflect(), func(a *anypb.Any) {
		f := &filterpb.ExternalProcessor{}
		if a.MessageIs(f) && a.UnmarshalTo(f) == nil {
			out = append(out, f)
		}
	})
	return out
}

func TestBootstrap_ExtProcSettings(t *testing.T) {
	for path, b := range loadBootstraps(t) {
		filters := extProcFilters(b)
		if len(filters) == 0 {
			t.Errorf("%s: no ext_proc filter", path)
		}
		for _, f := range filters {
			requireExtProcSettings(t, path, f)
		}
	}
}

func requireExtProcSettings(t *testing.T, path string, f *filterpb.ExternalProcessor) {
	t.Helper()
	if !f.GetFailureModeAllow() {
		t.Errorf("%s: failure_mode_allow is false: a sidecar fault would fail predicts", path)
	}
	if !f.GetAllowModeOverride() {
		t.Errorf("%s: allow_mode_override is false: Envoy would ignore the fast path", path)
	}
	if !f.GetAllowContentLengthHeader() {
		t.Errorf("%s: allow_content_length_header is false: Envoy would drop content-length of streamed bodies", path)
	}

	modes := append([]*filterpb.ProcessingMode{f.GetProcessingMode()}, f.GetAllowedOverrideModes()...)
	for _, m := range modes {
		if isBuffered(m.GetRequestBodyMode()) || isBuffered(m.GetResponseBodyMode()) {
			t.Errorf("%s: mode %v buffers a body: Envoy replies 413 over its buffer limit", path, m)
		}
	}

	def := f.GetProcessingMode()
	if def.GetRequestBodyMode() != filterpb.ProcessingMode_NONE || def.GetResponseHeaderMode() != filterpb.ProcessingMode_SKIP {
		t.Errorf("%s: processing_mode %v sends more than the request headers by default", path, def)
	}

	if !disallows(f.GetForwardRules(), "cookie") {
		t.Errorf("%s: forward_rules do not disallow cookie", path)
	}

	allowed := f.GetAllowedOverrideModes()
	if len(allowed) == 0 {
		// An empty list allows every override.
		return
	}
	for _, want := range extproc.OverrideModes() {
		if !listsMode(allowed, want) {
			t.Errorf("%s: allowed_override_modes lacks %v, which collectord sends", path, want)
		}
	}
}

func isBuffered(m filterpb.ProcessingMode_BodySendMode) bool {
	return m == filterpb.ProcessingMode_BUFFERED || m == filterpb.ProcessingMode_BUFFERED_PARTIAL
}

// disallows reports whether rules keep header name from the processor
// through an exact disallowed pattern.
func disallows(rules *filterpb.HeaderForwardingRules, name string) bool {
	for _, p := range rules.GetDisallowedHeaders().GetPatterns() {
		if p.GetExact() == name {
			return true
		}
	}
	return false
}

// listsMode compares modes as Envoy does for allowed_override_modes:
// request_header_mode aside.
func listsMode(list []*filterpb.ProcessingMode, mode *filterpb.ProcessingMode) bool {
	want := proto.Clone(mode).(*filterpb.ProcessingMode)
	want.RequestHeaderMode = filterpb.ProcessingMode_DEFAULT
	for _, m := range list {
		got := proto.Clone(m).(*filterpb.ProcessingMode)
		got.RequestHeaderMode = filterpb.ProcessingMode_DEFAULT
		if proto.Equal(got, want) {
			return true
		}
	}
	return false
}
