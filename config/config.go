// Package config is the configuration schema of collectord: defaults, loading
// from a YAML file, the environment and flags, and validation.
//
// Precedence, lowest first: defaults, the file given with --config, COLLECTORD_*
// environment variables, then command-line flags.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/collectord/collectord/filter"
)

// Config is the whole configuration of one collectord process.
type Config struct {
	// DataDir holds the embedded SQLite database, the embedded JetStream store
	// and the local app's input files.
	DataDir string `json:"data_dir"`
	// Store selects where collectors, keys, apps and inputs are stored.
	Store StoreConfig `json:"store"`

	// NATS selects the JetStream server: embedded, or an external cluster.
	NATS NATSConfig `json:"nats"`

	// ExtProc is the Envoy-facing ext_proc gRPC server.
	ExtProc ExtProcConfig `json:"extproc"`
	// API is the management API (REST and gRPC).
	API APIConfig `json:"api"`
	// Admin serves /healthz, /readyz and /metrics.
	Admin AdminConfig `json:"admin"`
	// Proxy is the optional reverse-proxy interceptor for use without Envoy.
	Proxy ProxyConfig `json:"proxy"`
	// Capture sets the limits of the capture engine.
	Capture CaptureConfig `json:"capture"`
	// Identity sets how the caller of a predict is resolved.
	Identity IdentityConfig `json:"identity"`
	// Ingest sets the JetStream queue and the delivery workers.
	Ingest IngestConfig `json:"ingest"`
	// Log sets the log level and format.
	Log LogConfig `json:"log"`
	// Secrets sets the keys that encrypt post-inputs keys at rest.
	Secrets SecretsConfig `json:"secrets"`
	// Workflows sets what workflow operators may use beyond the workflow
	// itself.
	Workflows WorkflowsConfig `json:"workflows"`

	// DrainTimeout bounds the graceful drain after SIGTERM: stop taking
	// streams, flush the hand-off into JetStream, finish in-flight batches.
	DrainTimeout Duration `json:"drain_timeout"`
}

// NATSConfig selects the JetStream server that carries captures.
type NATSConfig struct {
	// URL lists external NATS servers, comma separated (nats:// or tls://).
	// Empty (the default) runs an embedded JetStream server in data_dir,
	// which binds no port.
	URL string `json:"url"`
	// CredsFile is a NATS credentials file (JWT and NKey seed) for URL.
	CredsFile string `json:"creds_file"`
	// TLSCAFile is a PEM file of the CA certificates that verify the
	// servers of URL, in place of the system roots. Setting it makes the
	// connection require TLS, even with nats:// URLs.
	TLSCAFile string `json:"tls_ca_file"`
	// TLSCertFile is a PEM client certificate for servers that require one
	// (mutual TLS). It needs TLSKeyFile.
	TLSCertFile string `json:"tls_cert_file"`
	// TLSKeyFile is the PEM private key of TLSCertFile.
	TLSKeyFile string `json:"tls_key_file"`
	// Prefix starts the subjects and stream names, so several deployments
	// can share one cluster. Letters, digits, '-' and '_'.
	Prefix string `json:"prefix"`
	// Replicas of the capture and dead-letter streams: 3 on a three-node
	// cluster survives the loss of a node. The embedded server needs 1.
	Replicas int `json:"replicas"`
}

// StoreConfig selects the store.
type StoreConfig struct {
	// PostgresURL is the postgres:// or postgresql:// URL of a PostgreSQL
	// database shared by several collectord processes, which then see each
	// other's collector changes at once. A search_path parameter in the URL
	// selects the schema. Empty (the default) uses the embedded SQLite store
	// in data_dir. The URL may hold a password: prefer the environment
	// variable to the config file.
	PostgresURL string `json:"postgres_url"`
}

// ExtProcConfig configures the ext_proc server.
type ExtProcConfig struct {
	// Listen is a host:port, or unix:PATH for a Unix domain socket.
	Listen string `json:"listen"`
	// IdleTimeout ends a stream that has waited this long for Envoy's next
	// message and frees its state. It must exceed the slowest predict, or
	// captures of slow predicts are lost (the predicts themselves go on).
	IdleTimeout Duration `json:"idle_timeout"`
}

// APIConfig configures the management API listeners.
type APIConfig struct {
	// Listen is the host:port of the REST API.
	Listen string `json:"listen"`
	// GRPCListen is the host:port of the API over gRPC (clarifai.api.V2).
	GRPCListen string `json:"grpc_listen"`
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is the host:port of /healthz, /readyz and /metrics.
	Listen string `json:"listen"`
}

// ProxyConfig configures the reverse-proxy interceptor. It runs only when
// both fields are set.
type ProxyConfig struct {
	// Listen is the host:port the interceptor serves HTTP/1.1 and h2c on.
	Listen string `json:"listen"`
	// Upstream is the http:// URL of the model server behind the interceptor.
	Upstream string `json:"upstream"`
}

// CaptureConfig sets the limits of the capture engine.
type CaptureConfig struct {
	// MaxCaptureBytes caps the request plus response body bytes kept per
	// exchange; larger predicts pass through uncaptured and are counted.
	MaxCaptureBytes int64 `json:"max_capture_bytes"`
	// Assemblers is the number of goroutines that parse finished exchanges.
	Assemblers int `json:"assemblers"`
	// QueueSize bounds finished exchanges waiting for an assembler.
	QueueSize int `json:"queue_size"`
}

// IdentityConfig sets how callers are resolved.
type IdentityConfig struct {
	// TrustedHeader names a request header that carries the caller's user ID.
	// Empty (the default) turns it off. Set it only when Envoy strips that
	// header from client requests, or any client can claim any user.
	TrustedHeader string `json:"trusted_header"`
	// KeyCacheTTL is how long a resolved API key stays cached.
	KeyCacheTTL Duration `json:"key_cache_ttl"`
	// JWT reads the caller from a JWT payload verified by Envoy's jwt_authn
	// filter. It takes precedence over the trusted header and API keys.
	JWT JWTConfig `json:"jwt"`
	// Introspection resolves API keys that the local key store does not
	// hold through a Clarifai-compatible API.
	Introspection IntrospectionConfig `json:"introspection"`
}

// JWTConfig selects the caller from the verified JWT payload that Envoy's
// jwt_authn filter writes into dynamic metadata and the ext_proc filter
// forwards (metadata_options.forwarding_namespaces.untyped).
type JWTConfig struct {
	// Namespace is the dynamic metadata namespace of the jwt_authn filter.
	Namespace string `json:"namespace"`
	// PayloadKey is the payload_in_metadata name of the jwt_authn provider.
	// Empty (the default) turns JWT callers off.
	PayloadKey string `json:"payload_key"`
	// Claim is the top-level claim whose string value is the caller's user ID.
	Claim string `json:"claim"`
}

// IntrospectionConfig sets how unknown API keys are resolved with
// GET {base_url}/v2/users/me and "Authorization: Key <key>".
type IntrospectionConfig struct {
	// BaseURL is the http:// or https:// base of a Clarifai-compatible API,
	// without /v2. Empty (the default) turns introspection off.
	BaseURL string `json:"base_url"`
	// Timeout bounds one introspection request.
	Timeout Duration `json:"timeout"`
	// Wait bounds how long a predict's request headers wait for an
	// introspection; a slower response is cached for the next predict. Keep
	// it below Envoy's message_timeout.
	Wait Duration `json:"wait"`
	// CacheTTL is how long an accepted key stays cached.
	CacheTTL Duration `json:"cache_ttl"`
	// NegativeTTL is how long a rejected key stays cached as unknown.
	NegativeTTL Duration `json:"negative_ttl"`
}

// IngestConfig sets the queue and delivery.
type IngestConfig struct {
	// HandoffSize bounds records waiting to be published to JetStream; a full
	// hand-off drops and counts, it never blocks a predict.
	HandoffSize int `json:"handoff_size"`
	// MaxStoreBytes caps the capture stream on disk; when full, new captures
	// are rejected and counted, accepted ones are never evicted.
	MaxStoreBytes int64 `json:"max_store_bytes"`
	// Workers is the number of delivery workers.
	Workers int `json:"workers"`
	// BatchSize is the maximum number of inputs per post: up to 128 to a
	// remote API and 1024 to the local app. 0 (the default) takes the
	// destination's maximum.
	BatchSize int `json:"batch_size"`
	// RemoteBaseURL, when set, delivers to a Clarifai-compatible API at this
	// base URL instead of the built-in local app.
	RemoteBaseURL string `json:"remote_base_url"`
	// RemoteTimeout bounds one post to the remote API.
	RemoteTimeout Duration `json:"remote_timeout"`
}

// LogConfig sets logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `json:"level"`
	// Format is text or json.
	Format string `json:"format"`
}

// SecretsConfig names the data-encryption keys of post-inputs keys. With
// neither field set, `collectord run` uses DATA_DIR/secret.key and creates
// it at first start.
type SecretsConfig struct {
	// KeyFile is a file of keys, one per line as ID:KEY or KEY, where KEY is
	// 32 bytes in hex or base64. The first key encrypts, and the others only
	// decrypt values written before a rotation.
	KeyFile string `json:"key_file"`
	// Key is key material in the key file format. It is read only from the
	// COLLECTORD_SECRET_KEY environment variable, never from the file or a
	// flag, and prints as "****".
	Key Sensitive `json:"-"`
}

// WorkflowsConfig sets what workflow operators may use.
type WorkflowsConfig struct {
	// RemoteModels are the Clarifai-compatible model APIs that remote-model
	// workflow nodes may call, each under a name that a node gives in
	// output_info.params.endpoint. Workflows come from API users, so they can
	// reach no host that is not listed here. Empty (the default) turns
	// remote-model nodes off.
	RemoteModels []RemoteModelConfig `json:"remote_models"`
}

// RemoteModelConfig is one model API that remote-model nodes may call.
type RemoteModelConfig struct {
	// Name identifies the endpoint in workflow nodes. Names must be unique
	// and non-empty.
	Name string `json:"name"`
	// BaseURL is the http:// or https:// root of the API, without /v2.
	BaseURL string `json:"base_url"`
	// KeyFile is a file containing the API key, sent as "Authorization: Key
	// <key>". Whitespace around the key is ignored. The file is read at
	// start, so a new key takes effect after a restart.
	KeyFile string `json:"key_file"`
	// Timeout bounds one predict request. Zero means 10s.
	Timeout Duration `json:"timeout"`
}

// Sensitive is a string that fmt, slog and JSON print as "****", so a
// Config can be logged without its secrets.
type Sensitive string

// String returns "****", or "" when the value is empty.
func (s Sensitive) String() string {
	if s == "" {
		return ""
	}
	return "****"
}

// GoString returns the same as String, for %#v.
func (s Sensitive) GoString() string { return s.String() }

// MarshalJSON writes the masked form.
func (s Sensitive) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		DataDir: "./collectord-data",
		NATS:    NATSConfig{Prefix: "collectord", Replicas: 1},
		ExtProc: ExtProcConfig{Listen: "127.0.0.1:50051", IdleTimeout: Duration(5 * time.Minute)},
		API:     APIConfig{Listen: "127.0.0.1:8080", GRPCListen: "127.0.0.1:8081"},
		Admin:   AdminConfig{Listen: "127.0.0.1:9090"},
		Capture: CaptureConfig{
			MaxCaptureBytes: 16 << 20,
			Assemblers:      2,
			QueueSize:       256,
		},
		Identity: IdentityConfig{
			KeyCacheTTL: Duration(time.Minute),
			JWT:         JWTConfig{Namespace: "envoy.filters.http.jwt_authn", Claim: "sub"},
			Introspection: IntrospectionConfig{
				Timeout:     Duration(2 * time.Second),
				Wait:        Duration(100 * time.Millisecond),
				CacheTTL:    Duration(5 * time.Minute),
				NegativeTTL: Duration(30 * time.Second),
			},
		},
		Ingest: IngestConfig{
			HandoffSize:   1024,
			MaxStoreBytes: 1 << 30,
			Workers:       2,
			RemoteTimeout: Duration(30 * time.Second),
		},
		Log: LogConfig{Level: "info", Format: "text"},
		// An empty list rather than nil, so that the default equals what
		// "remote_models: []" in a file decodes to.
		Workflows:    WorkflowsConfig{RemoteModels: []RemoteModelConfig{}},
		DrainTimeout: Duration(20 * time.Second),
	}
}

// LoadFile merges the YAML file at path into c. Unknown fields are errors.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return fmt.Errorf("parse config file %s: %w", path, err)
	}
	return nil
}

// Validate checks every field and names the first invalid one.
func (c *Config) Validate() error {
	var errs []error
	check := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("config field %s: %w", field, err))
		}
	}

	if c.DataDir == "" {
		check("data_dir", errors.New("must not be empty"))
	}
	if c.Store.PostgresURL != "" {
		check("store.postgres_url", validatePostgresURL(c.Store.PostgresURL))
	}
	check("nats", c.NATS.validate())
	check("extproc.listen", validateListen(c.ExtProc.Listen, true))
	if c.ExtProc.IdleTimeout <= 0 {
		check("extproc.idle_timeout", errors.New("must be positive"))
	}
	check("api.listen", validateListen(c.API.Listen, false))
	if c.API.GRPCListen != "" {
		check("api.grpc_listen", validateListen(c.API.GRPCListen, false))
	}
	check("admin.listen", validateListen(c.Admin.Listen, false))
	check("proxy", c.Proxy.validate())

	if c.Capture.MaxCaptureBytes <= 0 {
		check("capture.max_capture_bytes", errors.New("must be positive"))
	}
	if c.Capture.Assemblers <= 0 {
		check("capture.assemblers", errors.New("must be positive"))
	}
	if c.Capture.QueueSize <= 0 {
		check("capture.queue_size", errors.New("must be positive"))
	}
	if c.Identity.TrustedHeader != "" && strings.ContainsAny(c.Identity.TrustedHeader, " :") {
		check("identity.trusted_header", fmt.Errorf("%q is not a header name", c.Identity.TrustedHeader))
	}
	check("identity.jwt", c.Identity.JWT.validate())
	check("identity.introspection", c.Identity.Introspection.validate())
	if c.Ingest.HandoffSize <= 0 {
		check("ingest.handoff_size", errors.New("must be positive"))
	}
	if c.Ingest.MaxStoreBytes <= 0 {
		check("ingest.max_store_bytes", errors.New("must be positive"))
	}
	if c.Ingest.Workers <= 0 {
		check("ingest.workers", errors.New("must be positive"))
	}
	if limit := maxBatchSize(c.Ingest.RemoteBaseURL); c.Ingest.BatchSize < 0 || c.Ingest.BatchSize > limit {
		check("ingest.batch_size", fmt.Errorf("%d is outside 0..%d; set 0 for the destination's maximum", c.Ingest.BatchSize, limit))
	}
	if c.Ingest.RemoteBaseURL != "" {
		check("ingest.remote_base_url", validateHTTPURL(c.Ingest.RemoteBaseURL))
	}
	if c.Ingest.RemoteTimeout <= 0 {
		check("ingest.remote_timeout", errors.New("must be positive"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		check("log.level", fmt.Errorf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		check("log.format", fmt.Errorf("%q is not one of text, json", c.Log.Format))
	}
	if c.Secrets.KeyFile != "" && c.Secrets.Key != "" {
		check("secrets.key_file", errors.New("is set together with COLLECTORD_SECRET_KEY: set only one"))
	}
	c.Workflows.validate(check)
	if c.DrainTimeout <= 0 {
		check("drain_timeout", errors.New("must be positive"))
	}
	return errors.Join(errs...)
}

// validate checks every remote model and reads its key file, so that a
// missing or unreadable key stops collectord at start and not at the first
// post-queue evaluation.
func (w WorkflowsConfig) validate(check func(field string, err error)) {
	seen := make(map[string]int, len(w.RemoteModels))
	for i, remote := range w.RemoteModels {
		field := fmt.Sprintf("workflows.remote_models[%d]", i)

		switch first, duplicate := seen[remote.Name]; {
		case strings.TrimSpace(remote.Name) == "":
			check(field+".name", errors.New("must not be empty"))
		case duplicate:
			check(field+".name", fmt.Errorf("%q is also the name of workflows.remote_models[%d]: names must be unique", remote.Name, first))
		default:
			seen[remote.Name] = i
		}

		check(field+".base_url", validateHTTPURL(remote.BaseURL))
		if _, err := readKeyFile(remote.KeyFile); err != nil {
			check(field+".key_file", err)
		}
		if remote.Timeout < 0 {
			check(field+".timeout", errors.New("must not be negative"))
		}
	}
}

// RemoteModelEndpoints reads the key file of every remote model and returns
// the endpoints by name, for filter.Config.RemoteEndpoints. Pass the same map
// to every compilation so that each endpoint keeps one HTTP client.
func (w WorkflowsConfig) RemoteModelEndpoints() (map[string]*filter.RemoteEndpoint, error) {
	endpoints := make(map[string]*filter.RemoteEndpoint, len(w.RemoteModels))
	for i, remote := range w.RemoteModels {
		if _, duplicate := endpoints[remote.Name]; duplicate || strings.TrimSpace(remote.Name) == "" {
			return nil, fmt.Errorf("config field workflows.remote_models[%d].name: %q is empty or not unique", i, remote.Name)
		}

		key, err := readKeyFile(remote.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("config field workflows.remote_models[%d].key_file: %w", i, err)
		}

		endpoints[remote.Name] = &filter.RemoteEndpoint{
			BaseURL: remote.BaseURL,
			Key:     key,
			Timeout: time.Duration(remote.Timeout),
		}
	}

	return endpoints, nil
}

// readKeyFile returns the trimmed content of an API key file. Its errors
// name the path and never the content.
func readKeyFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("missing: set the path of a file that contains the API key")
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read API key file: %w", err)
	}

	key := strings.TrimSpace(string(data))
	if key == "" {
		return "", fmt.Errorf("API key file %s is empty", path)
	}

	if strings.ContainsAny(key, "\r\n") {
		return "", fmt.Errorf("API key file %s contains more than one line: write only the key", path)
	}

	return key, nil
}

func (n NATSConfig) validate() error {
	if !natsPrefix.MatchString(n.Prefix) {
		return fmt.Errorf("prefix %q must be letters, digits, '-' and '_'", n.Prefix)
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		return fmt.Errorf("replicas %d is outside 1..5", n.Replicas)
	}
	if n.URL == "" {
		if n.Replicas != 1 {
			return errors.New("replicas must be 1 with the embedded server (url empty)")
		}
		return n.validateFilesWithoutURL()
	}
	if n.TLSCertFile != "" && n.TLSKeyFile == "" {
		return errors.New("tls_cert_file is set without tls_key_file: set both for a client certificate, or neither")
	}
	if n.TLSKeyFile != "" && n.TLSCertFile == "" {
		return errors.New("tls_key_file is set without tls_cert_file: set both for a client certificate, or neither")
	}
	for _, raw := range strings.Split(n.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return fmt.Errorf("url: %q is not a NATS URL such as nats://127.0.0.1:4222", raw)
		}
		switch u.Scheme {
		case "nats", "tls":
		default:
			return fmt.Errorf("url: %q must start with nats:// or tls://", raw)
		}
	}
	return nil
}

// validateFilesWithoutURL rejects credentials and TLS files set for the
// embedded server, which connects in process and would silently ignore them.
func (n NATSConfig) validateFilesWithoutURL() error {
	files := []struct{ field, path string }{
		{"creds_file", n.CredsFile},
		{"tls_ca_file", n.TLSCAFile},
		{"tls_cert_file", n.TLSCertFile},
		{"tls_key_file", n.TLSKeyFile},
	}
	for _, f := range files {
		if f.path != "" {
			return fmt.Errorf("%s is set but url is empty: it applies only to an external NATS cluster, so set url or remove %s", f.field, f.field)
		}
	}
	return nil
}

var natsPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (p ProxyConfig) validate() error {
	if p.Listen == "" && p.Upstream == "" {
		return nil
	}
	if p.Listen == "" || p.Upstream == "" {
		return errors.New("listen and upstream must be set together")
	}
	if err := validateListen(p.Listen, false); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := validateHTTPURL(p.Upstream); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	return nil
}

func (j JWTConfig) validate() error {
	if j.PayloadKey == "" {
		return nil
	}
	if strings.TrimSpace(j.Namespace) == "" {
		return errors.New("namespace must not be empty when payload_key is set")
	}
	if strings.TrimSpace(j.Claim) == "" {
		return errors.New("claim must not be empty when payload_key is set")
	}
	return nil
}

func (i IntrospectionConfig) validate() error {
	if i.BaseURL == "" {
		return nil
	}
	if err := validateHTTPURL(i.BaseURL); err != nil {
		return fmt.Errorf("base_url: %w", err)
	}
	if i.Timeout <= 0 || i.Wait <= 0 || i.CacheTTL <= 0 || i.NegativeTTL <= 0 {
		return errors.New("timeout, wait, cache_ttl and negative_ttl must be positive")
	}
	return nil
}

func validateListen(addr string, unixAllowed bool) error {
	if unixAllowed {
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			if path == "" {
				return errors.New("unix: needs a socket path")
			}
			return nil
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	return nil
}

func validateHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https://", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	return nil
}

// validatePostgresURL checks the scheme only, since libpq URLs may leave the
// host out (a Unix socket) or put it in the query. Its errors never repeat
// the URL, which may hold a password.
func validatePostgresURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return errors.New("must start with postgres:// or postgresql://")
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("30s") in
// YAML and JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string such as "30s" or "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Set parses a flag value; it makes Duration a flag.Value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// maxBatchSize returns the maximum inputs per post: the limit of a
// PostInputs request for a remote API, one transaction for the local app.
func maxBatchSize(remoteBaseURL string) int {
	if remoteBaseURL != "" {
		return 128
	}
	return 1024
}
