package config

import (
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// EnvSecretKey is the environment variable that holds data-encryption keys
// in the key file format.
const EnvSecretKey = "COLLECTORD_SECRET_KEY"

// setting binds one field to a flag name and an environment variable.
type setting struct {
	flag  string
	env   string
	usage string
	value flag.Value
}

// settings lists the fields settable by flag and environment. Every other
// field is set in the config file.
func (c *Config) settings() []setting {
	return []setting{
		{"data-dir", "COLLECTORD_DATA_DIR", "directory of the embedded store, queue and input files", (*stringValue)(&c.DataDir)},
		{"nats-url", "COLLECTORD_NATS_URL", "external NATS servers, comma separated; empty runs an embedded JetStream server", (*stringValue)(&c.NATS.URL)},
		{"nats-creds", "COLLECTORD_NATS_CREDS", "NATS credentials file for --nats-url", (*stringValue)(&c.NATS.CredsFile)},
		{"nats-tls-ca", "COLLECTORD_NATS_TLS_CA", "PEM file of CA certificates that verify the --nats-url servers; makes TLS required", (*stringValue)(&c.NATS.TLSCAFile)},
		{"nats-tls-cert", "COLLECTORD_NATS_TLS_CERT", "PEM client certificate for --nats-url servers that require one (needs --nats-tls-key)", (*stringValue)(&c.NATS.TLSCertFile)},
		{"nats-tls-key", "COLLECTORD_NATS_TLS_KEY", "PEM private key of --nats-tls-cert", (*stringValue)(&c.NATS.TLSKeyFile)},
		{"postgres-url", "COLLECTORD_POSTGRES_URL", "postgres:// URL of a PostgreSQL store shared by several processes; empty uses SQLite in --data-dir", (*secretURLValue)(&c.Store.PostgresURL)},
		{"extproc-listen", "COLLECTORD_EXTPROC_LISTEN", "ext_proc gRPC listen address, host:port or unix:PATH", (*stringValue)(&c.ExtProc.Listen)},
		{"api-listen", "COLLECTORD_API_LISTEN", "management REST API listen address", (*stringValue)(&c.API.Listen)},
		{"grpc-listen", "COLLECTORD_GRPC_LISTEN", "management gRPC API listen address; empty turns it off", (*stringValue)(&c.API.GRPCListen)},
		{"admin-listen", "COLLECTORD_ADMIN_LISTEN", "listen address of /healthz, /readyz and /metrics", (*stringValue)(&c.Admin.Listen)},
		{"proxy-listen", "COLLECTORD_PROXY_LISTEN", "reverse-proxy interceptor listen address (needs --upstream)", (*stringValue)(&c.Proxy.Listen)},
		{"upstream", "COLLECTORD_UPSTREAM", "http:// URL of the model server behind the interceptor", (*stringValue)(&c.Proxy.Upstream)},
		{"max-capture-bytes", "COLLECTORD_MAX_CAPTURE_BYTES", "body bytes kept per exchange before a capture is dropped", (*int64Value)(&c.Capture.MaxCaptureBytes)},
		{"trusted-header", "COLLECTORD_TRUSTED_HEADER", "request header that names the caller; only when Envoy strips it from clients", (*stringValue)(&c.Identity.TrustedHeader)},
		{"jwt-payload-key", "COLLECTORD_JWT_PAYLOAD_KEY", "payload_in_metadata name of Envoy's jwt_authn provider; the verified JWT then names the caller", (*stringValue)(&c.Identity.JWT.PayloadKey)},
		{"introspection-url", "COLLECTORD_INTROSPECTION_URL", "base URL of a Clarifai-compatible API that resolves API keys unknown to the local store", (*stringValue)(&c.Identity.Introspection.BaseURL)},
		{"remote-base-url", "COLLECTORD_REMOTE_BASE_URL", "deliver to a Clarifai-compatible API at this base URL instead of the local app", (*stringValue)(&c.Ingest.RemoteBaseURL)},
		{"log-level", "COLLECTORD_LOG_LEVEL", "debug, info, warn or error", (*stringValue)(&c.Log.Level)},
		{"log-format", "COLLECTORD_LOG_FORMAT", "text or json", (*stringValue)(&c.Log.Format)},
		{"secret-key-file", "COLLECTORD_SECRET_KEY_FILE", "file of the keys that encrypt post-inputs keys at rest", (*stringValue)(&c.Secrets.KeyFile)},
		{"drain-timeout", "COLLECTORD_DRAIN_TIMEOUT", "bound on the graceful drain after SIGTERM", &c.DrainTimeout},
	}
}

// Load builds the configuration of a command from its arguments: defaults,
// then the file named by --config, then the environment, then the flags.
// fs receives the flags (plus --config); getenv reads the environment.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	cfg := Default()

	// The file comes first, so its path must be known before flags override
	// it: find --config with a throwaway parse of the same flag set.
	path, err := findConfigFlag(args)
	if err != nil {
		return cfg, err
	}
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, err
		}
	}

	for _, s := range cfg.settings() {
		v := getenv(s.env)
		if v == "" {
			continue
		}
		if err := s.value.Set(v); err != nil {
			return cfg, fmt.Errorf("environment variable %s: %w", s.env, err)
		}
	}

	// Key material comes only from the environment: a flag would show it in
	// the process list, and a config file is often shared.
	cfg.Secrets.Key = Sensitive(getenv(EnvSecretKey))

	fs.String("config", "", "YAML configuration file")
	for _, s := range cfg.settings() {
		fs.Var(s.value, s.flag, s.usage+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}

	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func findConfigFlag(args []string) (string, error) {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value, nil
		}
		if i+1 >= len(args) {
			return "", fmt.Errorf("flag --config needs a file path")
		}
		return args[i+1], nil
	}
	return "", nil
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

// secretURLValue is a URL flag whose String, which the flag package prints
// as the default in help text, hides the password.
type secretURLValue string

func (s *secretURLValue) String() string {
	if s == nil || *s == "" {
		return ""
	}
	u, err := url.Parse(string(*s))
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

func (s *secretURLValue) Set(v string) error { *s = secretURLValue(v); return nil }

type int64Value int64

func (i *int64Value) String() string { return strconv.FormatInt(int64(*i), 10) }
func (i *int64Value) Set(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*i = int64Value(n)
	return nil
}
