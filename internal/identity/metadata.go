package identity

import "strings"

// Defaults of JWTConfig.
const (
	// DefaultJWTNamespace is the dynamic metadata namespace that Envoy's
	// jwt_authn filter writes verified payloads into.
	DefaultJWTNamespace = "envoy.filters.http.jwt_authn"
	// DefaultJWTClaim is the claim that names the caller.
	DefaultJWTClaim = "sub"
)

// JWTConfig selects the caller from a JWT payload that Envoy's jwt_authn
// filter verified and wrote into dynamic metadata. The ext_proc filter
// forwards that namespace when its metadata_options list it under
// forwarding_namespaces.untyped.
type JWTConfig struct {
	// Namespace is the dynamic metadata namespace of the jwt_authn filter.
	// Default DefaultJWTNamespace.
	Namespace string
	// PayloadKey is the payload_in_metadata name of the jwt_authn provider:
	// the field of Namespace that holds the verified payload. Empty turns
	// JWT callers off.
	PayloadKey string
	// Claim is the top-level payload claim whose string value is the
	// caller's user ID. Default DefaultJWTClaim.
	Claim string
}

// Enabled reports whether callers are read from JWT payloads.
func (c JWTConfig) Enabled() bool { return c.PayloadKey != "" }

func (c *JWTConfig) applyDefaults() {
	c.Namespace = strings.TrimSpace(c.Namespace)
	c.PayloadKey = strings.TrimSpace(c.PayloadKey)
	c.Claim = strings.TrimSpace(c.Claim)
	if c.Namespace == "" {
		c.Namespace = DefaultJWTNamespace
	}
	if c.Claim == "" {
		c.Claim = DefaultJWTClaim
	}
}

// jwtCaller is the outcome of reading the caller from dynamic metadata.
type jwtCaller int

const (
	// jwtAbsent: no verified payload, because the request carried no JWT,
	// its JWT failed verification, or JWT callers are off.
	jwtAbsent jwtCaller = iota
	// jwtFound: the payload's claim names the caller.
	jwtFound
	// jwtNoClaim: a verified payload lacks the claim, or its value is not a
	// non-empty string. This points at a wrong claim name in the config.
	jwtNoClaim
)

// callerFromMetadata returns the user ID in the configured claim of the
// verified JWT payload in md, the dynamic metadata Envoy forwarded.
func (c JWTConfig) callerFromMetadata(md map[string]map[string]any) (string, jwtCaller) {
	if !c.Enabled() {
		return "", jwtAbsent
	}
	payload, ok := md[c.Namespace][c.PayloadKey].(map[string]any)
	if !ok {
		return "", jwtAbsent
	}

	// A numeric or structured claim is rejected instead of formatted, so
	// that 42 and "42" cannot both name the same user.
	user, ok := payload[c.Claim].(string)
	user = strings.TrimSpace(user)
	if !ok || user == "" {
		return "", jwtNoClaim
	}
	return user, jwtFound
}
