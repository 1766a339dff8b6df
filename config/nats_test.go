package config

import (
	"strings"
	"testing"
)

func TestLoad_NATSTLSFromFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"COLLECTORD_NATS_URL":      "tls://127.0.0.1:4443",
		"COLLECTORD_NATS_TLS_CA":   "/env/ca.pem",
		"COLLECTORD_NATS_TLS_CERT": "/env/client.pem",
		"COLLECTORD_NATS_TLS_KEY":  "/env/client-key.pem",
	}
	getenv := func(k string) string { return env[k] }

	fromEnv, err := Load(newFlagSet(), nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	checkTLSFiles(t, "environment", fromEnv.NATS, "/env/ca.pem", "/env/client.pem", "/env/client-key.pem")

	args := []string{"--nats-tls-ca", "/flag/ca.pem", "--nats-tls-cert", "/flag/client.pem", "--nats-tls-key", "/flag/client-key.pem"}
	fromFlags, err := Load(newFlagSet(), args, getenv)
	if err != nil {
		t.Fatal(err)
	}
	checkTLSFiles(t, "flags, which win over the environment", fromFlags.NATS, "/flag/ca.pem", "/flag/client.pem", "/flag/client-key.pem")
}

// checkTLSFiles compares the three TLS file settings with the values the
// source set.
func checkTLSFiles(t *testing.T, source string, got NATSConfig, ca, cert, key string) {
	t.Helper()
	if got.TLSCAFile != ca {
		t.Errorf("tls_ca_file = %q, want %q from the %s", got.TLSCAFile, ca, source)
	}
	if got.TLSCertFile != cert {
		t.Errorf("tls_cert_file = %q, want %q from the %s", got.TLSCertFile, cert, source)
	}
	if got.TLSKeyFile != key {
		t.Errorf("tls_key_file = %q, want %q from the %s", got.TLSKeyFile, key, source)
	}
}

func TestValidate_NATSTLS(t *testing.T) {
	cases := []struct {
		name  string
		nats  NATSConfig
		field string // empty: valid
	}{
		{"CA only", NATSConfig{URL: "nats://127.0.0.1:4443", TLSCAFile: "ca.pem"}, ""},
		{"CA and client cert", NATSConfig{URL: "tls://127.0.0.1:4443", TLSCAFile: "ca.pem", TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, ""},
		{"client cert with system roots", NATSConfig{URL: "tls://127.0.0.1:4443", TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, ""},
		{"CA without url", NATSConfig{TLSCAFile: "ca.pem"}, "tls_ca_file"},
		{"cert without url", NATSConfig{TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, "tls_cert_file"},
		{"key without url", NATSConfig{TLSKeyFile: "k.pem"}, "tls_key_file"},
		{"credentials without url", NATSConfig{CredsFile: "user.creds"}, "creds_file"},
		{"cert without key", NATSConfig{URL: "tls://127.0.0.1:4443", TLSCertFile: "c.pem"}, "tls_key_file"},
		{"key without cert", NATSConfig{URL: "tls://127.0.0.1:4443", TLSKeyFile: "k.pem"}, "tls_cert_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.nats.Prefix = cfg.NATS.Prefix
			tc.nats.Replicas = cfg.NATS.Replicas
			cfg.NATS = tc.nats

			err := cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "nats") {
				t.Errorf("error %q does not name the nats section", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}
