package envoytest

import (
	"fmt"
	"os"

	bootstrappb "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The typed_config extensions a sidecar bootstrap uses must be
	// registered for protojson to resolve their Any type URLs.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// LoadBootstrap reads an Envoy bootstrap in YAML or JSON.
func LoadBootstrap(path string) (*bootstrappb.Bootstrap, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("convert %s to JSON: %w", path, err)
	}
	b := &bootstrappb.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("parse %s as an Envoy bootstrap: %w", path, err)
	}
	return b, nil
}

// LoadConfig reads an Envoy bootstrap and returns the Config of the first
// ext_proc filter of its static listeners, with that listener's buffer limit.
func LoadConfig(path string) (Config, error) {
	b, err := LoadBootstrap(path)
	if err != nil {
		return Config{}, err
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		f, err := findExtProc(l.GetFilterChains())
		if err != nil {
			return Config{}, fmt.Errorf("%s: listener %q: %w", path, l.GetName(), err)
		}
		if f != nil {
			return ConfigFromFilter(f, int(l.GetPerConnectionBufferLimitBytes().GetValue())), nil
		}
	}
	return Config{}, fmt.Errorf("%s: no ext_proc filter in any static listener", path)
}

// findExtProc returns the first ext_proc filter inside the HTTP connection
// managers of chains, or nil.
func findExtProc(chains []*listenerpb.FilterChain) (*filterpb.ExternalProcessor, error) {
	for _, chain := range chains {
		for _, nf := range chain.GetFilters() {
			cfg := nf.GetTypedConfig()
			if cfg == nil {
				continue
			}
			hcm := &hcmpb.HttpConnectionManager{}
			if cfg.MessageIs(hcm) {
				if err := cfg.UnmarshalTo(hcm); err != nil {
					return nil, err
				}
				if f, err := extProcOf(hcm); f != nil || err != nil {
					return f, err
				}
			}
		}
	}
	return nil, nil
}

func extProcOf(hcm *hcmpb.HttpConnectionManager) (*filterpb.ExternalProcessor, error) {
	for _, hf := range hcm.GetHttpFilters() {
		cfg := hf.GetTypedConfig()
		f := &filterpb.ExternalProcessor{}
		if cfg == nil || !cfg.MessageIs(f) {
			continue
		}
		if err := cfg.UnmarshalTo(f); err != nil {
			return nil, fmt.Errorf("http filter %q: %w", hf.GetName(), err)
		}
		return f, nil
	}
	return nil, nil
}
