package node

import (
	"strings"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/identity"
)

func jwtConfig(c config.JWTConfig) identity.JWTConfig {
	return identity.JWTConfig{Namespace: c.Namespace, PayloadKey: c.PayloadKey, Claim: c.Claim}
}

func introspectionConfig(c config.IntrospectionConfig) identity.IntrospectionConfig {
	return identity.IntrospectionConfig{
		BaseURL:     c.BaseURL,
		Timeout:     time.Duration(c.Timeout),
		Wait:        time.Duration(c.Wait),
		CacheTTL:    time.Duration(c.CacheTTL),
		NegativeTTL: time.Duration(c.NegativeTTL),
	}
}

// metadataNamespaces lists the dynamic metadata namespaces the ext_proc
// server passes to the capture engine. With JWT callers on, that is the
// jwt_authn namespace alone, so no other filter's metadata is converted on
// every predict. Without them the list is empty, which passes every
// namespace Envoy forwards.
func metadataNamespaces(c config.IdentityConfig) []string {
	if c.JWT.PayloadKey == "" {
		return nil
	}
	return []string{strings.TrimSpace(c.JWT.Namespace)}
}
