package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/collectord/collectord/internal/ingest"
	"github.com/collectord/collectord/internal/store"
)

const (
	ownerUser  = "soak-owner"
	callerUser = "soak-caller"
	appID      = "soak"
	modelPath  = "/v2/users/demo/apps/main/models/text-stats/outputs"
	// markerPrefix starts the caller input ID of every soak predict; the
	// app keeps it as metadata.collectord.caller_input_id.
	markerPrefix = "soak-"
)

// node is the collectord child process and its fixed loopback addresses,
// kept across restarts so clients need not rediscover them.
type node struct {
	bin, dataDir, logPath string
	model                 string
	api, admin, proxy     string
	extproc               string
	ownerKey, callerKey   string

	cmd    *exec.Cmd
	client *http.Client

	// storedRead is how many inputs of the app earlier store checks read.
	// Inputs are listed oldest first and the soak never deletes one, so a
	// check reads only what was added since, plus one page of overlap for
	// inputs that share a creation time.
	storedRead int
}

func newNode(bin, work, model string) (*node, error) {
	n := &node{
		bin:     bin,
		dataDir: filepath.Join(work, "data"),
		logPath: filepath.Join(work, "collectord.log"),
		model:   model,
		client:  &http.Client{Timeout: 10 * time.Second},
	}
	for _, addr := range []*string{&n.api, &n.admin, &n.proxy, &n.extproc} {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		*addr = a
	}
	return n, nil
}

// setup creates the keys with the CLI, starts the node once to create the
// app and a collector through the API, and stops it gracefully.
func (n *node) setup(ctx context.Context) error {
	var err error
	if n.ownerKey, err = n.createKey(ctx, ownerUser, ""); err != nil {
		return err
	}
	if n.callerKey, err = n.createKey(ctx, callerUser, "Predict"); err != nil {
		return err
	}
	if err := n.spawn(ctx); err != nil {
		return err
	}
	if err := waitTCP(ctx, n.api, 30*time.Second); err != nil {
		return fmt.Errorf("management API on %s: %w", n.api, err)
	}

	if err := n.call(ctx, "POST", "/v2/users/me/apps", map[string]any{"apps": []any{map[string]any{"id": appID}}}, nil); err != nil {
		return err
	}
	source := map[string]any{
		"model_user_id": "demo", "model_app_id": "main", "model_id": "text-stats",
		"caller_user_id": callerUser, "post_inputs_key_id": n.ownerKey,
	}
	collector := map[string]any{"collectors": []any{map[string]any{
		"id": "all", "pre_queue_random_sample": 1,
		"collector_source": map[string]any{"api_post_model_outputs_collector_source": source},
	}}}
	if err := n.call(ctx, "POST", "/v2/users/me/apps/"+appID+"/collectors", collector, nil); err != nil {
		return err
	}
	return n.stop()
}

func (n *node) createKey(ctx context.Context, user, scopes string) (string, error) {
	args := []string{"keys", "create", "--data-dir", n.dataDir, "--user", user}
	if scopes != "" {
		args = append(args, "--scopes", scopes)
	}
	out, err := exec.CommandContext(ctx, n.bin, args...).Output()
	if err != nil {
		return "", fmt.Errorf("collectord keys create --user %s: %w", user, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// spawn starts `collectord run` with its log appended to the log file.
func (n *node) spawn(ctx context.Context) error {
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, n.bin, "run",
		"--data-dir", n.dataDir,
		"--api-listen", n.api,
		"--grpc-listen", "",
		"--admin-listen", n.admin,
		"--extproc-listen", n.extproc,
		"--proxy-listen", n.proxy,
		"--upstream", "http://"+n.model,
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start collectord: %w", err)
	}
	logFile.Close()
	n.cmd = cmd
	return nil
}

// start spawns the node and returns the time from spawning to the first
// predict served through the interceptor.
func (n *node) start(ctx context.Context, seq *atomic.Int64) (time.Duration, error) {
	began := time.Now()
	if err := n.spawn(ctx); err != nil {
		return 0, err
	}
	deadline := began.Add(30 * time.Second)
	for {
		err := n.predict(ctx, fmt.Sprintf("%s%08d", markerPrefix, seq.Add(1)))
		if err == nil {
			return time.Since(began), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no predict served within 30 s of the start (see %s): %w", n.logPath, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL and reaps the process.
func (n *node) kill() error {
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill collectord: %w", err)
	}
	_ = n.cmd.Wait()
	return nil
}

// stop sends SIGTERM and waits for the graceful drain.
func (n *node) stop() error {
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop collectord: %w", err)
	}
	if err := n.cmd.Wait(); err != nil {
		return fmt.Errorf("collectord exited with %w after SIGTERM (see %s)", err, n.logPath)
	}
	return nil
}

// predict sends one text-stats predict through the interceptor with the
// marker as its caller input ID.
func (n *node) predict(ctx context.Context, marker string) error {
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"id": marker, "data": map[string]any{"text": map[string]any{"raw": "soak predict " + marker}},
	}}})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+n.proxy+modelPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Key "+n.callerKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", marker)
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("predict: HTTP %d", resp.StatusCode)
	}
	return nil
}

// enqueued reads collectord_captures_total{outcome="enqueued"} from /metrics.
func (n *node) enqueued(ctx context.Context) (int, error) {
	return n.metric(ctx, "collectord_captures_total", `outcome="enqueued"`)
}

func (n *node) metric(ctx context.Context, name, label string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()

	var sum float64
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return int(sum), scanner.Err()
}

// durableCaptures reads, with the node stopped, the markers of the records
// its capture stream holds and of the inputs its app holds.
func (n *node) durableCaptures(ctx context.Context) (map[string]bool, error) {
	ids, err := n.queuedMarkers(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := n.storedMarkers(ctx)
	if err != nil {
		return nil, err
	}
	for id := range stored {
		ids[id] = true
	}
	return ids, nil
}

func (n *node) queuedMarkers(ctx context.Context) (map[string]bool, error) {
	e, err := ingest.OpenEmbedded(ingest.EmbeddedConfig{Dir: filepath.Join(n.dataDir, "jetstream"), MaxStoreBytes: 1 << 40})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	q, err := ingest.AttachQueue(ctx, e.Conn(), ingest.QueueConfig{})
	if err != nil {
		return nil, err
	}
	stream, err := q.JetStream().Stream(ctx, q.StreamName())
	if err != nil {
		return nil, err
	}

	ids := map[string]bool{}
	state := stream.CachedInfo().State
	for seq := state.FirstSeq; state.Msgs > 0 && seq <= state.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("capture stream sequence %d: %w", seq, err)
		}
		recs, err := ingest.DecodeMessage(msg.Header, msg.Data)
		if err != nil {
			return nil, fmt.Errorf("capture stream sequence %d: %w", seq, err)
		}
		for _, rec := range recs {
			ids[rec.GetInput().GetId()] = true
		}
	}
	return ids, nil
}

func (n *node) storedMarkers(ctx context.Context) (map[string]bool, error) {
	db, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    filepath.Join(n.dataDir, "collectord.db"),
		BlobDir: filepath.Join(n.dataDir, "blobs"),
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	defer db.Close()

	ids := map[string]bool{}
	const page = 1000
	for offset := max(0, n.storedRead-page); ; offset += page {
		inputs, err := db.ListInputs(ctx, ownerUser, appID, offset, page)
		if err != nil {
			return nil, err
		}
		for _, in := range inputs {
			md := in.GetData().GetMetadata().GetFields()[ingest.MetadataKey].GetStructValue()
			if id := md.GetFields()["caller_input_id"].GetStringValue(); strings.HasPrefix(id, markerPrefix) {
				ids[id] = true
			}
		}
		if len(inputs) < page {
			n.storedRead = offset + len(inputs)
			return ids, nil
		}
	}
}

// drain waits until the running node's queue is empty and returns the
// markers of the inputs in the app, read through the API.
func (n *node) drain(ctx context.Context) (map[string]bool, error) {
	// Records in flight at a kill come back after the queue's ack wait.
	deadline := time.Now().Add(120 * time.Second)
	for {
		depth, err := n.metric(ctx, "collectord_queue_depth", "")
		if err == nil && depth == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the capture queue did not drain within 120 s (depth %d, error %v)", depth, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return n.listMarkers(ctx)
}

func (n *node) listMarkers(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	for pageNum := 1; ; pageNum++ {
		var out struct {
			Inputs []struct {
				Data struct {
					Metadata map[string]any `json:"metadata"`
				} `json:"data"`
			} `json:"inputs"`
		}
		path := fmt.Sprintf("/v2/users/me/apps/%s/inputs?page=%d&per_page=1000", appID, pageNum)
		if err := n.call(ctx, "GET", path, nil, &out); err != nil {
			return nil, err
		}
		for _, in := range out.Inputs {
			own, _ := in.Data.Metadata[ingest.MetadataKey].(map[string]any)
			if id, _ := own["caller_input_id"].(string); strings.HasPrefix(id, markerPrefix) {
				ids[id] = true
			}
		}
		if len(out.Inputs) < 1000 {
			return ids, nil
		}
	}
}

// call sends a management API request as the owner and decodes the reply
// into out when out is not nil.
func (n *node) call(ctx context.Context, method, path string, body, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}

	req, err := http.NewRequestWithContext(ctx, method, "http://"+n.api+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Key "+n.ownerKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port != 4222 && port != 5432 {
			return addr, nil
		}
	}
	return "", errors.New("no free loopback port")
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
