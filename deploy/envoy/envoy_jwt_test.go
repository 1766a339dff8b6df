package envoy_test

import (
	"encoding/json"
	"slices"
	"testing"

	bootstrappb "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlypb "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/collectord/collectord/internal/identity"
)

const (
	jwtConfigPath = "envoy-jwt.yaml"
	// callerHeader is the header the JWT config reserves for collectord's
	// identity.trusted_header.
	callerHeader = "x-collectord-caller"
	// payloadKey is the identity.jwt.payload_key named in the config's
	// header comment.
	payloadKey = "jwt_payload"
)

// jwtBootstrap loads the JWT config and returns its only HTTP connection
// manager.
func jwtBootstrap(t *testing.T) *hcmpb.HttpConnectionManager {
	t.Helper()
	b, ok := loadBootstraps(t)[jwtConfigPath]
	if !ok {
		t.Fatalf("%s is missing", jwtConfigPath)
	}
	hcms := connectionManagers(b)
	if len(hcms) != 1 {
		t.Fatalf("%s has %d HTTP connection managers, want 1", jwtConfigPath, len(hcms))
	}
	return hcms[0]
}

func connectionManagers(b *bootstrappb.Bootstrap) []*hcmpb.HttpConnectionManager {
	var out []*hcmpb.HttpConnectionManager
	walkAny(b.ProtoReflect(), func(a *anypb.Any) {
		h := &hcmpb.HttpConnectionManager{}
		if a.MessageIs(h) && a.UnmarshalTo(h) == nil {
			out = append(out, h)
		}
	})
	return out
}

func TestJWTConfig_ForwardsVerifiedPayload(t *testing.T) {
	hcm := jwtBootstrap(t)

	jwtAt, extProcAt := -1, -1
	var jwt *jwtpb.JwtAuthentication
	for i, f := range hcm.GetHttpFilters() {
		cfg := f.GetTypedConfig()
		switch {
		case cfg.MessageIs(&jwtpb.JwtAuthentication{}):
			jwtAt = i
			jwt = &jwtpb.JwtAuthentication{}
			if err := cfg.UnmarshalTo(jwt); err != nil {
				t.Fatalf("jwt_authn config: %v", err)
			}
		case cfg.MessageIs(&filterpb.ExternalProcessor{}):
			extProcAt = i
		}
	}
	if jwtAt < 0 || extProcAt < 0 {
		t.Fatalf("http_filters lack jwt_authn (at %d) or ext_proc (at %d)", jwtAt, extProcAt)
	}
	if jwtAt > extProcAt {
		t.Errorf("jwt_authn runs after ext_proc, so ext_proc would never see its payload")
	}

	if len(jwt.GetProviders()) == 0 {
		t.Fatal("jwt_authn has no provider")
	}
	for name, p := range jwt.GetProviders() {
		if p.GetPayloadInMetadata() != payloadKey {
			t.Errorf("provider %s: payload_in_metadata = %q, want %q", name, p.GetPayloadInMetadata(), payloadKey)
		}
		if !p.GetForward() {
			t.Errorf("provider %s: forward is false, so the model server would not receive the Authorization header", name)
		}
		var jwks struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(p.GetLocalJwks().GetInlineString()), &jwks); err != nil || len(jwks.Keys) == 0 {
			t.Errorf("provider %s: local_jwks is not a JWKS with keys: %v", name, err)
		}
	}

	for _, f := range extProcFilters(loadBootstraps(t)[jwtConfigPath]) {
		if !slices.Contains(f.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), identity.DefaultJWTNamespace) {
			t.Errorf("ext_proc does not forward the %s metadata namespace", identity.DefaultJWTNamespace)
		}
	}
}

func TestJWTConfig_NeverRejectsPredicts(t *testing.T) {
	hcm := jwtBootstrap(t)
	for _, f := range hcm.GetHttpFilters() {
		jwt := &jwtpb.JwtAuthentication{}
		if !f.GetTypedConfig().MessageIs(jwt) {
			continue
		}
		if err := f.GetTypedConfig().UnmarshalTo(jwt); err != nil {
			t.Fatal(err)
		}
		if len(jwt.GetRules()) == 0 {
			t.Fatal("jwt_authn has no rules, so it verifies nothing")
		}
		for i, rule := range jwt.GetRules() {
			if !allowsMissingOrFailed(rule.GetRequires()) {
				t.Errorf("rule %d rejects requests with a missing or invalid JWT: %v", i, rule.GetRequires())
			}
		}
	}
}

// allowsMissingOrFailed reports whether req is satisfied without a valid
// JWT, so that jwt_authn only identifies callers.
func allowsMissingOrFailed(req *jwtpb.JwtRequirement) bool {
	if req.GetAllowMissingOrFailed() != nil {
		return true
	}
	for _, r := range req.GetRequiresAny().GetRequirements() {
		if allowsMissingOrFailed(r) {
			return true
		}
	}
	return false
}

func TestJWTConfig_StripsCallerHeader(t *testing.T) {
	hcm := jwtBootstrap(t)

	removed := false
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		m := &earlypb.HeaderMutation{}
		if err := ext.GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatalf("early header mutation %s: %v", ext.GetName(), err)
		}
		for _, mutation := range m.GetMutations() {
			if mutation.GetRemove() == callerHeader {
				removed = true
			}
		}
	}
	if !removed {
		t.Errorf("early_header_mutation_extensions do not remove %s, so a client could name any caller", callerHeader)
	}
}
