package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Environment variables of the commands that call the REST API. Secrets are
// better passed this way than as flags, which other users of the machine can
// read in the process list.
const (
	envAPI           = "COLLECTORD_API"
	envKey           = "COLLECTORD_KEY"
	envPostInputsKey = "COLLECTORD_POST_INPUTS_KEY"
)

const (
	defaultAPIAddr = "http://127.0.0.1:8080"
	// maxResponseBytes bounds the response body the client reads. A page of
	// 1000 collectors, the API's maximum, is well under 2 MiB.
	maxResponseBytes = 32 << 20
)

// jsonOutput is the protojson form of responses printed with -o json.
// Default values are written too, so scripts see every field of a resource
// and an empty list as [].
var jsonOutput = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// apiFlags are the flags shared by every command that calls the REST API.
type apiFlags struct {
	addr    string
	key     string
	user    string
	app     string
	output  string
	timeout time.Duration
}

// addAPIFlags registers the shared flags on fs. The defaults of --api and
// --key stay empty in the help text, so -h never prints an environment
// value.
func addAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fs.StringVar(&f.addr, "api", "", "base URL of the collectord REST API (default $"+envAPI+", else "+defaultAPIAddr+")")
	fs.StringVar(&f.key, "key", "", "API key (default $"+envKey+"; prefer the environment variable, because flags show in the process list)")
	fs.StringVar(&f.user, "user", "me", `user ID; "me" is the key's own user`)
	fs.StringVar(&f.app, "app", "", "app ID; empty uses the app of an app key")
	fs.StringVar(&f.output, "o", "table", "output format: table or json")
	fs.StringVar(&f.output, "output", "table", "output format: table or json (same as -o)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout of each request to the API")
	return f
}

// apiClient calls the REST API of a running collectord with one API key.
type apiClient struct {
	baseURL string
	key     string
	user    string
	app     string
	json    bool
	http    *http.Client
	stdout  io.Writer
	stderr  io.Writer
	// secrets are removed from any server text the client prints.
	secrets []string
}

// newClient checks the shared flags and returns a client for them.
func (f *apiFlags) newClient(stdout, stderr io.Writer) (*apiClient, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("%w: output format %q is not table or json", ErrUsage, f.output)
	}
	if f.timeout <= 0 {
		return nil, fmt.Errorf("%w: --timeout must be positive, got %s", ErrUsage, f.timeout)
	}

	base, err := apiBaseURL(firstNonEmpty(f.addr, os.Getenv(envAPI), defaultAPIAddr))
	if err != nil {
		return nil, err
	}

	key := firstNonEmpty(f.key, os.Getenv(envKey))
	if key == "" {
		return nil, fmt.Errorf("%w: no API key: set %s or --key (create one with \"collectord keys create\")", ErrUsage, envKey)
	}
	if err := checkSecret("the API key", key); err != nil {
		return nil, err
	}

	user := f.user
	if user == "" {
		user = "me"
	}

	return &apiClient{
		baseURL: base,
		key:     key,
		user:    user,
		app:     f.app,
		json:    f.output == "json",
		http:    &http.Client{Timeout: f.timeout},
		stdout:  stdout,
		stderr:  stderr,
		secrets: []string{key},
	}, nil
}

// apiBaseURL returns raw as a base URL without a trailing slash. A bare
// host:port gets the http scheme.
func apiBaseURL(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	// Messages show the address with any password replaced by "xxxxx".
	u, err := url.Parse(raw)
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return "", fmt.Errorf("%w: invalid API address: %v", ErrUsage, urlErr.Err)
	}
	if err != nil {
		return "", fmt.Errorf("%w: invalid API address: %v", ErrUsage, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%w: API address %q: the scheme must be http or https", ErrUsage, u.Redacted())
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w: API address %q has no host", ErrUsage, u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: API address %q: use scheme://host:port with an optional path prefix only", ErrUsage, u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// checkSecret rejects a secret that cannot be sent in an HTTP header,
// without quoting it.
func checkSecret(name, secret string) error {
	for _, r := range secret {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s contains whitespace or control characters", ErrUsage, name)
		}
	}
	return nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// appPath returns the REST path of a collection of the command's app, such
// as /v2/users/me/apps/dest/collectors. Without --app it is the short form,
// /v2/collectors, in which the key's user and app apply.
func (c *apiClient) appPath(collection string, ids ...string) string {
	path := "/v2"
	if c.app != "" {
		path += "/users/" + url.PathEscape(c.user) + "/apps/" + url.PathEscape(c.app)
	}
	path += "/" + collection
	for _, id := range ids {
		path += "/" + url.PathEscape(id)
	}
	return path
}

// userPath returns the REST path of the apps of the command's user.
func (c *apiClient) userPath(ids ...string) string {
	path := "/v2/users/" + url.PathEscape(c.user) + "/apps"
	for _, id := range ids {
		path += "/" + url.PathEscape(id)
	}
	return path
}

// statusResponse is a Clarifai response message, which carries a status.
type statusResponse interface {
	proto.Message
	GetStatus() *pb.Status
}

// statusError is a response whose Clarifai status is not SUCCESS. The status
// itself has been printed to stderr.
type statusError struct {
	rpc    string
	status *pb.Status
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s failed with status %s", e.rpc, e.status.GetCode())
}

// call sends one request to the API and decodes the response into resp. It
// returns a *statusError, after printing the status to stderr, when the
// response status is not SUCCESS. req may be nil for requests without body.
func (c *apiClient) call(ctx context.Context, rpc, method, path string, query url.Values, req proto.Message, resp statusResponse) error {
	httpReq, err := c.newRequest(ctx, method, path, query, req)
	if err != nil {
		return err
	}

	httpResp, err := c.http.Do(httpReq)
	if err != nil {
		return c.connectionError(ctx, err)
	}
	defer httpResp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(httpResp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("%s: read the response from %s: %w", rpc, c.baseURL, err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("%s: the response from %s is larger than %d bytes", rpc, c.baseURL, maxResponseBytes)
	}

	decode := protojson.UnmarshalOptions{DiscardUnknown: true}
	if err := decode.Unmarshal(body, resp); err != nil || resp.GetStatus() == nil {
		return fmt.Errorf("%s: %s returned HTTP %d without a Clarifai status body: check that --api names the REST address of collectord",
			rpc, c.baseURL, httpResp.StatusCode)
	}

	if code := resp.GetStatus().GetCode(); code != pb.StatusCode_SUCCESS {
		c.printStatus(rpc, httpResp.StatusCode, resp.GetStatus())
		return &statusError{rpc: rpc, status: resp.GetStatus()}
	}
	return nil
}

func (c *apiClient) newRequest(ctx context.Context, method, path string, query url.Values, req proto.Message) (*http.Request, error) {
	var body io.Reader
	if req != nil {
		data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}

	target := c.baseURL + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	httpReq, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", target, err)
	}
	httpReq.Header.Set("Authorization", "Key "+c.key)
	httpReq.Header.Set("Accept", "application/json")
	if req != nil {
		httpReq.Header.Set("Content-Type", "application/json")
	}
	return httpReq, nil
}

// connectionError explains a request that got no HTTP response. The error
// of net/http names the URL, which carries no secret: the key travels in a
// header.
func (c *apiClient) connectionError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("the collectord API at %s did not respond within %s (--timeout)", c.baseURL, c.http.Timeout)
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return fmt.Errorf("cannot connect to the collectord API at %s: %v. Check that \"collectord run\" is running and that --api or %s is its REST address",
		c.baseURL, err, envAPI)
}

// printStatus writes a failed status to stderr: the code name, its
// description, the details and the request ID to quote in a bug report.
func (c *apiClient) printStatus(rpc string, httpStatus int, st *pb.Status) {
	fmt.Fprintf(c.stderr, "%s failed: HTTP %d, status %s (%s)\n",
		rpc, httpStatus, st.GetCode(), c.redact(st.GetDescription()))
	if st.GetDetails() != "" {
		fmt.Fprintf(c.stderr, "  details: %s\n", c.redact(st.GetDetails()))
	}
	if st.GetReqId() != "" {
		fmt.Fprintf(c.stderr, "  req_id:  %s\n", st.GetReqId())
	}
}

// redact replaces the client's secrets in server text. collectord never
// quotes a key in a status, so this only guards against a server that does.
func (c *apiClient) redact(s string) string {
	for _, secret := range c.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "****")
		}
	}
	return s
}

// printJSON writes m to stdout as indented protojson with snake_case names.
func (c *apiClient) printJSON(m proto.Message) error {
	data, err := jsonOutput.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	// protojson varies its whitespace on purpose, so json.Indent rewrites
	// it into a stable form for diffs and line-based tools.
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return fmt.Errorf("indent output: %w", err)
	}
	out.WriteByte('\n')
	_, err = c.stdout.Write([]byte(c.redact(out.String())))
	return err
}

// parseInterspersed parses args into fs and returns the positional
// arguments. Unlike fs.Parse alone, flags may follow positional arguments,
// as in "collectors update ID --sample 0.5". Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// formatTime returns ts as RFC 3339 in UTC, or "-" when the response has none.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}
