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
	if fromEnv.NATS.TLSCAFile != "/env/ca.pem" {
		t.Errorf("tls_ca_file = %q, want the environment's value", fromEnv.NATS.TLSCAFile)
	}
	if fromEnv.NATS.TLSCertFile != "/env/client.pem" {
		t.Errorf("tls_cert_file = %q, want the environment's value", fromEnv.NATS.TLSCertFile)
	}
	if fromEnv.NATS.TLSKeyFile != "/env/client-key.pem" {
		t.Errorf("tls_key_file = %q, want the environment's value", fromEnv.NATS.TLSKeyFile)
	}

	args := []string{"--nats-tls-ca", "/flag/ca.pem", "--nats-tls-cert", "/flag/client.pem", "--nats-tls-key", "/flag/client-key.pem"}
	fromFlags, err := Load(newFlagSet(), args, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if fromFlags.NATS.TLSCAFile != "/flag/ca.pem" {
		t.Errorf("tls_ca_file = %q, want the flag's value", fromFlags.NATS.TLSCAFile)
	}
	if fromFlags.NATS.TLSCertFile != "/flag/client.pem" {
		t.Errorf("tls_cert_file = %q, want the flag's value", fromFlags.NATS.TLSCertFile)
	}
	if fromFlags.NATS.TLSKeyFile != "/flag/client-key.pem" {
		t.Errorf("tls_key_file = %q, want the flag's value", fromFlags.NATS.TLSKeyFile)
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
