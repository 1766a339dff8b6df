package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad_IdentityOffByDefault(t *testing.T) {
	cfg, err := Load(newFlagSet(), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identity.JWT.PayloadKey != "" {
		t.Errorf("JWT callers are on by default: payload_key %q", cfg.Identity.JWT.PayloadKey)
	}
	if cfg.Identity.Introspection.BaseURL != "" {
		t.Errorf("introspection is on by default: base_url %q", cfg.Identity.Introspection.BaseURL)
	}
}

func TestLoad_IdentitySources(t *testing.T) {
	env := map[string]string{"COLLECTORD_INTROSPECTION_URL": "http://127.0.0.1:9999"}
	cfg, err := Load(newFlagSet(), []string{"--jwt-payload-key", "jwt_payload"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identity.JWT.PayloadKey != "jwt_payload" {
		t.Errorf("payload key = %q, want the flag's value", cfg.Identity.JWT.PayloadKey)
	}
	if cfg.Identity.Introspection.BaseURL != "http://127.0.0.1:9999" {
		t.Errorf("introspection base URL = %q, want the environment's value", cfg.Identity.Introspection.BaseURL)
	}
}

func TestLoad_InvalidIdentity(t *testing.T) {
	cases := []struct {
		name  string
		file  string
		field string
	}{
		{"ftp introspection", "identity:\n  introspection:\n    base_url: ftp://host\n", "identity.introspection"},
		{"zero wait", "identity:\n  introspection:\n    base_url: http://127.0.0.1:1\n    wait: 0s\n", "identity.introspection"},
		{"empty claim", "identity:\n  jwt:\n    payload_key: jwt_payload\n    claim: \"\"\n", "identity.jwt"},
		{"empty namespace", "identity:\n  jwt:\n    payload_key: jwt_payload\n    namespace: \" \"\n", "identity.jwt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(newFlagSet(), []string{"--config", path}, noEnv)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}
