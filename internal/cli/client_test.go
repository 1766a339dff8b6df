package cli_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/node"
)

// testNode is one collectord process started in-process, as "collectord
// run" starts it, with every listener on a random loopback port.
type testNode struct {
	t       *testing.T
	dataDir string
	apiURL  string
	logs    *syncBuffer
}

// syncBuffer collects the node's log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startNode(t *testing.T) *testNode {
	t.Helper()
	n := &testNode{t: t, dataDir: t.TempDir(), logs: &syncBuffer{}}

	cfg := config.Default()
	cfg.DataDir = n.dataDir
	cfg.ExtProc.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.GRPCListen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Log.Level = "debug"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	running, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("start collectord: %v", err)
	}
	n.apiURL = "http://" + running.Addrs().API
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := running.Close(ctx); err != nil {
			t.Errorf("close collectord: %v", err)
		}
		if t.Failed() {
			t.Logf("collectord logs:\n%s", n.logs.String())
		}
	})
	return n
}

// createKey runs "collectord keys create" on the node's data directory with
// the extra flags, such as --app or --scopes, and returns the printed key.
func (n *testNode) createKey(user string, flags ...string) string {
	n.t.Helper()
	args := append([]string{"keys", "create", "--data-dir", n.dataDir, "--user", user}, flags...)
	r := runCLI(n.t, args...)
	if r.err != nil {
		n.t.Fatalf("keys create: %v: %s", r.err, r.stderr)
	}
	key := strings.TrimSpace(r.stdout)
	if key == "" || strings.ContainsAny(key, " \n") {
		n.t.Fatalf("keys create printed %q, want the key alone", r.stdout)
	}
	return key
}

// requireNoSecretsInLogs fails the test when a secret is in the node's log.
func (n *testNode) requireNoSecretsInLogs(secrets ...string) {
	n.t.Helper()
	logs := n.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			n.t.Errorf("the collectord log contains a secret of %d characters", len(s))
		}
	}
}

// result is the outcome of one command line.
type result struct {
	args   []string
	stdout string
	stderr string
	err    error
}

// runCLI runs one command line through cli.Main.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := cli.Main(ctx, args, &stdout, &stderr)
	return result{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// requireOK fails the test unless the command succeeded.
func (r result) requireOK(t *testing.T) result {
	t.Helper()
	if r.err != nil {
		t.Fatalf("collectord %s: %v\nstderr:\n%s", strings.Join(r.args, " "), r.err, r.stderr)
	}
	return r
}

// requireExit fails the test unless the command failed with the exit code.
func (r result) requireExit(t *testing.T, code int) result {
	t.Helper()
	if r.err == nil {
		t.Fatalf("collectord %s succeeded, want exit code %d\nstdout:\n%s", strings.Join(r.args, " "), code, r.stdout)
	}
	if got := cli.ExitCode(r.err); got != code {
		t.Fatalf("collectord %s: exit code %d, want %d: %v\nstderr:\n%s", strings.Join(r.args, " "), got, code, r.err, r.stderr)
	}
	return r
}

// requireNoSecrets fails the test when stdout, stderr or the error text
// contains a secret.
func (r result) requireNoSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	errText := ""
	if r.err != nil {
		errText = r.err.Error()
	}
	for _, s := range secrets {
		for name, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "error": errText} {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("collectord %s: %s contains a secret of %d characters", r.args[0], name, len(s))
			}
		}
	}
}

var cellSeparator = regexp.MustCompile(`\s{2,}`)

// tableRows parses a tabwriter table into one map per row, keyed by the
// header, and checks the header.
func tableRows(t *testing.T, out string, header ...string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := cellSeparator.Split(strings.TrimSpace(lines[0]), -1); strings.Join(got, "|") != strings.Join(header, "|") {
		t.Fatalf("table header = %q, want %q\n%s", got, header, out)
	}
	var rows []map[string]string
	for _, line := range lines[1:] {
		cells := cellSeparator.Split(strings.TrimSpace(line), -1)
		if len(cells) != len(header) {
			t.Fatalf("table row %q has %d cells, want %d", line, len(cells), len(header))
		}
		row := make(map[string]string, len(header))
		for i, name := range header {
			row[name] = cells[i]
		}
		rows = append(rows, row)
	}
	return rows
}

var collectorHeader = []string{"ID", "MODEL", "CALLER", "SAMPLE", "STATUS", "POLICY", "CREATED"}

// deadAddress returns a loopback address on which nothing listens.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// isolateEnv clears the environment variables the API commands read, so a
// developer's own settings never reach a test.
func isolateEnv(t *testing.T) {
	t.Setenv("COLLECTORD_API", "http://"+deadAddress(t))
	t.Setenv("COLLECTORD_KEY", "")
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", "")
}

func TestClient_APIDown(t *testing.T) {
	isolateEnv(t)
	addr := deadAddress(t)

	r := runCLI(t, "collectors", "list", "--api", addr, "--key", "some-key-0123456789abcdef", "--app", "dest").requireExit(t, 1)
	msg := r.err.Error()
	if !strings.Contains(msg, "http://"+addr) {
		t.Errorf("error %q does not name the address http://%s", msg, addr)
	}
	if !strings.Contains(msg, `"collectord run" is running`) {
		t.Errorf("error %q does not say to check that collectord run is running", msg)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want empty", r.stdout)
	}
	r.requireNoSecrets(t, "some-key-0123456789abcdef")
}

func TestClient_EnvAddress(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	key := n.createKey("alice")

	// COLLECTORD_API applies without --api, and a bare host:port gets http://.
	t.Setenv("COLLECTORD_API", strings.TrimPrefix(n.apiURL, "http://"))
	t.Setenv("COLLECTORD_KEY", key)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)

	// --api wins over the environment variable.
	t.Setenv("COLLECTORD_API", "http://"+deadAddress(t))
	r := runCLI(t, "apps", "list", "--api", n.apiURL).requireOK(t)
	rows := tableRows(t, r.stdout, "ID", "NAME", "DESCRIPTION", "CREATED")
	if len(rows) != 1 || rows[0]["ID"] != "dest" {
		t.Errorf("apps list rows = %v, want the app dest", rows)
	}
	runCLI(t, "apps", "list").requireExit(t, 1)
}

func TestClient_NotCollectord(t *testing.T) {
	isolateEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<html>not here</html>"))
	}))
	t.Cleanup(srv.Close)

	r := runCLI(t, "collectors", "get", "c1", "--api", srv.URL, "--key", "k-0123456789abcdef", "--app", "dest").requireExit(t, 1)
	if !strings.Contains(r.err.Error(), "HTTP 404 without a Clarifai status body") {
		t.Errorf("error = %q, want it to say the body is not a Clarifai status", r.err)
	}
}

func TestClient_Timeout(t *testing.T) {
	isolateEnv(t)
	// The handler returns only after the client cancels the request, so the
	// request can end in no other way than the client's timeout.
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)

	r := runCLI(t, "apps", "list", "--api", srv.URL, "--key", "k-0123456789abcdef", "--timeout", "50ms").requireExit(t, 1)
	if !strings.Contains(r.err.Error(), "did not respond within 50ms") {
		t.Errorf("error = %q, want a timeout that names 50ms", r.err)
	}
}

func TestClient_UsageErrors(t *testing.T) {
	isolateEnv(t)
	api := "http://" + deadAddress(t)
	key := "usage-key-0123456789abcdef"

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"collectors", "list", "--api", api, "--app", "dest"}, "COLLECTORD_KEY"},
		{"bad output", []string{"collectors", "list", "--api", api, "--key", key, "-o", "yaml"}, `"yaml" is not table or json`},
		{"bad scheme", []string{"apps", "list", "--api", "ftp://127.0.0.1:1", "--key", key}, "http or https"},
		{"key with space", []string{"apps", "list", "--api", api, "--key", "a b"}, "whitespace"},
		{"user without app", []string{"collectors", "list", "--api", api, "--key", key, "--user", "bob"}, "needs --app"},
		{"missing model", []string{"collectors", "create", "--api", api, "--key", key, "--id", "c1",
			"--model-user", "u", "--model-app", "a", "--post-inputs-key", "p-0123456789abcdef"}, "--model is required"},
		{"missing id", []string{"collectors", "create", "--api", api, "--key", key,
			"--model-user", "u", "--model-app", "a", "--model", "m"}, "--id is required"},
		{"missing post-inputs key", []string{"collectors", "create", "--api", api, "--key", key, "--id", "c1",
			"--model-user", "u", "--model-app", "a", "--model", "m"}, "COLLECTORD_POST_INPUTS_KEY"},
		{"get without id", []string{"collectors", "get", "--api", api, "--key", key}, "one collector ID"},
		{"delete ids and all", []string{"collectors", "delete", "c1", "--all", "--api", api, "--key", key}, "not both"},
		{"delete nothing", []string{"collectors", "delete", "--api", api, "--key", key}, "or --all"},
		{"update nothing", []string{"collectors", "update", "c1", "--api", api, "--key", key}, "nothing to update"},
		{"update empty key from env", []string{"collectors", "update", "c1", "--post-inputs-key-from-env", "--api", api, "--key", key}, "new post-inputs key is empty"},
		{"page zero", []string{"collectors", "list", "--page", "0", "--api", api, "--key", key}, "--page starts at 1"},
		{"apps create without id", []string{"apps", "create", "--api", api, "--key", key}, "--id is required"},
		{"unknown flag", []string{"collectors", "list", "--colour"}, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...).requireExit(t, 2)
			if !errors.Is(r.err, cli.ErrUsage) {
				t.Errorf("error %v is not ErrUsage", r.err)
			}
			if !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", r.err, tt.want)
			}
			r.requireNoSecrets(t, key, "p-0123456789abcdef")
		})
	}
}

func TestClient_UnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"collectors"}, {"collectors", "rename"}, {"apps", "delete"}} {
		r := runCLI(t, args...).requireExit(t, 2)
		if !strings.Contains(r.stderr, "usage: collectord "+args[0]) {
			t.Errorf("collectord %s: stderr = %q, want the usage text", strings.Join(args, " "), r.stderr)
		}
	}
}

func TestClient_HelpHidesSecrets(t *testing.T) {
	isolateEnv(t)
	key := "help-key-0123456789abcdef"
	postKey := "help-postkey-0123456789abcdef"
	t.Setenv("COLLECTORD_KEY", key)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", postKey)

	r := runCLI(t, "collectors", "create", "-h")
	if !errors.Is(r.err, flag.ErrHelp) {
		t.Fatalf("collectors create -h: error %v, want flag.ErrHelp", r.err)
	}
	if !strings.Contains(r.stderr, "-post-inputs-key") {
		t.Errorf("help text does not list --post-inputs-key:\n%s", r.stderr)
	}
	r.requireNoSecrets(t, key, postKey)
}
