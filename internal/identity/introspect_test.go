package identity_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/collectord/collectord/internal/identity"
)

const (
	carolPAT     = "5f4dcc3b5aa765d61d8327deb882cf99"
	davePAT      = "0cc175b9c0f1b6a831c399e269772661"
	malformedPAT = "not a key!"
)

// clarifaiUsers is a stand-in for Clarifai's GET /v2/users/me that follows
// Clarifai's documented behaviour. A known key gets HTTP 200 with status
// SUCCESS and the user. An unknown key gets 401 with CONN_KEY_NOT_FOUND
// (11009), and a malformed key gets 401 with CONN_KEY_INVALID (11008). It
// counts requests and connections, and can fail with 500 or hold requests.
type clarifaiUsers struct {
	srv   *httptest.Server
	users map[string]string // key to user ID

	requests atomic.Int64
	conns    atomic.Int64
	// fail makes every request return HTTP 500 while set.
	fail atomic.Bool

	mu sync.Mutex
	// hold, when set, blocks each request until it is closed.
	hold chan struct{}
	// arrived receives one value per request, when set.
	arrived chan string
	// auths and paths record the Authorization header and the path of
	// every request.
	auths []string
	paths []string
	// respond, when set, replaces the documented behaviour.
	respond func(w http.ResponseWriter)
}

func newClarifaiUsers(t testing.TB, users map[string]string) *clarifaiUsers {
	t.Helper()
	c := &clarifaiUsers{users: users}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			c.conns.Add(1)
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	// Unblock held requests before Close waits for them.
	t.Cleanup(c.release)
	return c
}

func (c *clarifaiUsers) serve(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	c.mu.Lock()
	c.auths = append(c.auths, r.Header.Get("Authorization"))
	c.paths = append(c.paths, r.URL.Path)
	hold, arrived, respond := c.hold, c.arrived, c.respond
	c.mu.Unlock()

	if arrived != nil {
		arrived <- r.Header.Get("Authorization")
	}
	if hold != nil {
		<-hold
	}

	w.Header().Set("Content-Type", "application/json")
	switch {
	case respond != nil:
		respond(w)
	case c.fail.Load():
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"status":{"code":99009,"description":"Internal error"}}`)
	case r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/v2/users/me"):
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"status":{"code":11101,"description":"Resource does not exist"}}`)
	default:
		c.serveUser(w, r.Header.Get("Authorization"))
	}
}

func (c *clarifaiUsers) serveUser(w http.ResponseWriter, authorization string) {
	key, ok := strings.CutPrefix(authorization, "Key ")
	if !ok || strings.ContainsAny(key, " !") {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"status":{"code":11008,"description":"Invalid API key or Invalid API key/application pair"}}`)
		return
	}
	user, ok := c.users[key]
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"status":{"code":11009,"description":"API key not found"}}`)
		return
	}
	// Clarifai's user carries many more fields; the unknown ones must be
	// ignored.
	fmt.Fprintf(w, `{"status":{"code":10000,"description":"Ok","req_id":"r1"},"user":{"id":%q,"first_name":"Test","date_gdpr_consent":"2024-01-01T00:00:00Z","metadata":{"a":1}}}`, user)
}

// holdRequests makes requests block until release and report their arrival.
func (c *clarifaiUsers) holdRequests() <-chan string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = make(chan struct{})
	c.arrived = make(chan string, 1000)
	return c.arrived
}

func (c *clarifaiUsers) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold != nil {
		close(c.hold)
		c.hold = nil
	}
}

func (c *clarifaiUsers) setResponse(fn func(w http.ResponseWriter)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.respond = fn
}

func (c *clarifaiUsers) authorizations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.auths...)
}

func (c *clarifaiUsers) requestPaths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.paths...)
}

type introspectorFixture struct {
	users  *clarifaiUsers
	intro  *identity.Introspector
	reader *sdkmetric.ManualReader
	logs   *syncBuffer
}

func newIntrospectorFixture(t testing.TB, cfg identity.IntrospectionConfig) *introspectorFixture {
	t.Helper()
	return newIntrospectorFixtureWith(t, cfg, map[string]string{carolPAT: "carol", davePAT: "dave"})
}

// newIntrospectorFixtureWith starts an endpoint that accepts the keys of
// users (key to user ID) and an Introspector for it.
func newIntrospectorFixtureWith(t testing.TB, cfg identity.IntrospectionConfig, users map[string]string) *introspectorFixture {
	t.Helper()
	f := &introspectorFixture{
		users:  newClarifaiUsers(t, users),
		reader: sdkmetric.NewManualReader(),
		logs:   &syncBuffer{},
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = f.users.srv.URL
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test")

	intro, err := identity.NewIntrospector(cfg, identity.IntrospectorDeps{Logger: logger, Meter: meter})
	if err != nil {
		t.Fatalf("NewIntrospector: %v", err)
	}
	t.Cleanup(intro.Close)
	f.intro = intro
	return f
}

// results returns collectord_key_introspections_total by result.
func (f *introspectorFixture) results(t testing.TB) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "collectord_key_introspections_total" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				result, _ := dp.Attributes.Value("result")
				out[result.AsString()] += dp.Value
			}
		}
	}
	return out
}

func TestIntrospector_Found(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	ctx := context.Background()

	user, err := f.intro.Introspect(ctx, carolPAT)
	if err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	if user != "carol" {
		t.Errorf("Introspect = %q, want carol", user)
	}
	f.intro.Wait()

	user, err = f.intro.Introspect(ctx, carolPAT)
	if err != nil || user != "carol" {
		t.Errorf("Introspect again = %q, %v; want carol from the cache", user, err)
	}
	if n := f.users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1", n)
	}
	if got := f.users.authorizations(); len(got) != 1 || got[0] != "Key "+carolPAT {
		t.Errorf("endpoint received Authorization %q, want the key with the Key scheme", got)
	}
	results := f.results(t)
	if results["found"] != 1 || results["hit"] != 1 {
		t.Errorf("introspections = %v, want one found and one hit", results)
	}
}

func TestIntrospector_ConcurrentLookupsShareRequest(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	arrived := f.users.holdRequests()

	const callers = 100
	var joined sync.WaitGroup
	joined.Add(callers)
	f.intro.SetJoinedHook(joined.Done)

	users := make(chan string, callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			user, err := f.intro.Introspect(context.Background(), carolPAT)
			if err != nil {
				errs <- err
				return
			}
			users <- user
		}()
	}

	// The request cannot finish before release, so every caller that has
	// joined waits on that one request.
	<-arrived
	joined.Wait()
	f.users.release()

	for range callers {
		select {
		case err := <-errs:
			t.Errorf("Introspect: %v", err)
		case user := <-users:
			if user != "carol" {
				t.Errorf("Introspect = %q, want carol", user)
			}
		}
	}
	if n := f.users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests for %d concurrent lookups, want 1", n, callers)
	}
}

func TestIntrospector_RejectedKeyNegativeCached(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	ctx := context.Background()

	for _, key := range []string{"ffffffffffffffffffffffffffffffff", malformedPAT} {
		for range 3 {
			if _, err := f.intro.Introspect(ctx, key); !errors.Is(err, identity.ErrKeyNotFound) {
				t.Fatalf("Introspect of a rejected key error = %v, want ErrKeyNotFound", err)
			}
			f.intro.Wait()
		}
	}

	if n := f.users.requests.Load(); n != 2 {
		t.Errorf("endpoint received %d requests for 2 rejected keys asked 3 times each, want 2", n)
	}
	results := f.results(t)
	if results["not_found"] != 2 || results["hit"] != 4 {
		t.Errorf("introspections = %v, want 2 not_found and 4 hits", results)
	}
}

func TestIntrospector_ServerErrorNotCached(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	ctx := context.Background()
	f.users.fail.Store(true)

	for range 3 {
		_, err := f.intro.Introspect(ctx, carolPAT)
		if err == nil || errors.Is(err, identity.ErrKeyNotFound) {
			t.Fatalf("Introspect on HTTP 500 error = %v, want a failure that is not ErrKeyNotFound", err)
		}
		if !strings.Contains(err.Error(), "HTTP 500") {
			t.Errorf("error %q does not name the HTTP status", err)
		}
		f.intro.Wait()
	}
	if n := f.users.requests.Load(); n != 3 {
		t.Errorf("endpoint received %d requests, want 3: a failure must not be cached", n)
	}

	f.users.fail.Store(false)
	if user, err := f.intro.Introspect(ctx, carolPAT); err != nil || user != "carol" {
		t.Errorf("Introspect after recovery = %q, %v; want carol", user, err)
	}
	if got := f.results(t)["error"]; got != 3 {
		t.Errorf("error introspections = %d, want 3", got)
	}
	if n := strings.Count(f.logs.String(), "API key introspection failed"); n != 1 {
		t.Errorf("logged the failure %d times in a row, want 1", n)
	}
}

func TestIntrospector_Timeout(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	f.users.holdRequests()

	// The endpoint holds the request until release, so only the timeout
	// can end it.
	_, err := f.intro.Introspect(ctx, carolPAT)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("Introspect of a held request error = %v, want a timeout", err)
	}
	f.intro.Wait()

	f.users.release()
	if user, err := f.intro.Introspect(ctx, carolPAT); err != nil || user != "carol" {
		t.Errorf("Introspect after the timeout = %q, %v; want carol", user, err)
	}
	if n := f.users.requests.Load(); n != 2 {
		t.Errorf("endpoint received %d requests, want 2: a timeout must not be cached", n)
	}
}

func TestIntrospector_AbandonedRequestGoesOn(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	arrived := f.users.holdRequests()

	var joined sync.WaitGroup
	f.intro.SetJoinedHook(joined.Done)

	// The first lookup gives up while the request is held.
	ctx, cancel := context.WithCancel(context.Background())
	joined.Add(1)
	first := make(chan error, 1)
	go func() {
		_, err := f.intro.Introspect(ctx, carolPAT)
		first <- err
	}()
	<-arrived
	joined.Wait()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Introspect error = %v, want context.Canceled", err)
	}

	// A second lookup joins the same request, which still completes.
	joined.Add(1)
	second := make(chan string, 1)
	go func() {
		user, _ := f.intro.Introspect(context.Background(), carolPAT)
		second <- user
	}()
	joined.Wait()
	f.users.release()

	if user := <-second; user != "carol" {
		t.Errorf("Introspect after an abandoned lookup = %q, want carol", user)
	}
	if n := f.users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1", n)
	}
	if got := f.results(t)["abandoned"]; got != 1 {
		t.Errorf("abandoned introspections = %d, want 1", got)
	}
}

func TestIntrospector_Busy(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{MaxInFlight: 1})
	arrived := f.users.holdRequests()

	done := make(chan string, 1)
	go func() {
		user, _ := f.intro.Introspect(context.Background(), carolPAT)
		done <- user
	}()
	<-arrived

	if _, err := f.intro.Introspect(context.Background(), davePAT); !errors.Is(err, identity.ErrIntrospectionBusy) {
		t.Errorf("Introspect over MaxInFlight error = %v, want ErrIntrospectionBusy", err)
	}
	f.users.release()
	if user := <-done; user != "carol" {
		t.Errorf("held Introspect = %q, want carol", user)
	}

	// Busy is not cached: the key is looked up once a slot is free.
	if user, err := f.intro.Introspect(context.Background(), davePAT); err != nil || user != "dave" {
		t.Errorf("Introspect after the slot freed = %q, %v; want dave", user, err)
	}
	if got := f.results(t)["busy"]; got != 1 {
		t.Errorf("busy introspections = %d, want 1", got)
	}
}

func TestIntrospector_KeepAlive(t *testing.T) {
	users := map[string]string{}
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", i+1)
		users[keys[i]] = fmt.Sprintf("user-%d", i)
	}
	f := newIntrospectorFixtureWith(t, identity.IntrospectionConfig{}, users)

	for i, key := range keys {
		user, err := f.intro.Introspect(context.Background(), key)
		if err != nil || user != users[key] {
			t.Fatalf("Introspect key %d = %q, %v; want %s", i, user, err, users[key])
		}
	}
	// Go's transport may open a second connection when a request starts
	// before the previous connection is back in the pool.
	if n := f.users.conns.Load(); n > 3 {
		t.Errorf("%d sequential requests opened %d connections, want at most 3", len(keys), n)
	}
}

func TestIntrospector_Responses(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		body     string
		wantUser string
		wantErr  error // nil with wantUser empty means any other error
	}{
		{"success", 200, `{"status":{"code":10000},"user":{"id":"erin"}}`, "erin", nil},
		{"success with enum name", 200, `{"status":{"code":"SUCCESS"},"user":{"id":"erin"}}`, "erin", nil},
		{"key not found", 401, `{"status":{"code":11009,"description":"API key not found"}}`, "", identity.ErrKeyNotFound},
		{"key invalid", 401, `{"status":{"code":11008}}`, "", identity.ErrKeyNotFound},
		{"key not found with 200", 200, `{"status":{"code":11009}}`, "", identity.ErrKeyNotFound},
		{"401 without body", 401, ``, "", identity.ErrKeyNotFound},
		{"insufficient scopes", 403, `{"status":{"code":11007}}`, "", identity.ErrKeyNotFound},
		{"server error", 503, `{"status":{"code":10030}}`, "", nil},
		{"rate limited", 429, `{"status":{"code":10030}}`, "", nil},
		{"bad request", 400, `{"status":{"code":11102}}`, "", nil},
		{"not json", 200, `<html>ok</html>`, "", nil},
		{"failure status", 200, `{"status":{"code":10020}}`, "", nil},
		{"no user", 200, `{"status":{"code":10000}}`, "", nil},
		{"blank user", 200, `{"status":{"code":10000},"user":{"id":"  "}}`, "", nil},
		{"body over the limit", 200, `{"status":{"code":10000},"user":{"id":"erin"},"pad":"` + strings.Repeat("x", 70<<10) + `"}`, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
			f.users.setResponse(func(w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			})

			user, err := f.intro.Introspect(context.Background(), carolPAT)
			switch {
			case tc.wantUser != "":
				if err != nil || user != tc.wantUser {
					t.Errorf("Introspect = %q, %v; want %s", user, err, tc.wantUser)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Introspect error = %v, want %v", err, tc.wantErr)
				}
			default:
				if err == nil || errors.Is(err, identity.ErrKeyNotFound) {
					t.Errorf("Introspect = %q, %v; want a failure that is not ErrKeyNotFound", user, err)
				}
			}
		})
	}
}

func TestIntrospector_RedirectNotFollowed(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{})
	f.users.setResponse(func(w http.ResponseWriter) {
		w.Header().Set("Location", "/v2/users/me?again=1")
		w.WriteHeader(http.StatusFound)
	})

	_, err := f.intro.Introspect(context.Background(), carolPAT)
	if err == nil || errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("Introspect of a redirect error = %v, want a failure that is not ErrKeyNotFound", err)
	}
	if n := f.users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1: the redirect must not be followed", n)
	}
}

func TestIntrospector_BaseURLPath(t *testing.T) {
	users := newClarifaiUsers(t, map[string]string{carolPAT: "carol"})
	intro, err := identity.NewIntrospector(identity.IntrospectionConfig{BaseURL: users.srv.URL + "/clarifai/"},
		identity.IntrospectorDeps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("NewIntrospector: %v", err)
	}
	defer intro.Close()

	if user, err := intro.Introspect(context.Background(), carolPAT); err != nil || user != "carol" {
		t.Errorf("Introspect = %q, %v; want carol", user, err)
	}
	if paths := users.requestPaths(); len(paths) != 1 || paths[0] != "/clarifai/v2/users/me" {
		t.Errorf("endpoint paths = %q, want [/clarifai/v2/users/me]", paths)
	}
}

func TestNewIntrospector_InvalidBaseURL(t *testing.T) {
	for _, base := range []string{"", "api.clarifai.example", "ftp://host", "http://", "http://user:pass@host", "http://host/?q=1", "http://host/#f"} {
		if _, err := identity.NewIntrospector(identity.IntrospectionConfig{BaseURL: base}, identity.IntrospectorDeps{}); err == nil {
			t.Errorf("NewIntrospector(%q) succeeded, want an error", base)
		}
	}
}

func TestIntrospector_NoSecretInLogsOrLabels(t *testing.T) {
	f := newIntrospectorFixture(t, identity.IntrospectionConfig{Timeout: 50 * time.Millisecond})
	ctx := context.Background()

	f.intro.Introspect(ctx, carolPAT)
	f.intro.Introspect(ctx, "ffffffffffffffffffffffffffffffff")
	f.users.fail.Store(true)
	f.intro.Introspect(ctx, davePAT)
	f.users.fail.Store(false)
	f.users.holdRequests()
	f.intro.Introspect(ctx, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
	f.users.release()

	logs := f.logs.String()
	if !strings.Contains(logs, "introspected API key") || !strings.Contains(logs, "API key introspection failed") {
		t.Fatalf("expected debug and warning lines to search, got:\n%s", logs)
	}

	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				for _, kv := range dp.Attributes.ToSlice() {
					labels = append(labels, kv.Value.Emit())
				}
			}
		}
	}
	if len(labels) == 0 {
		t.Fatal("no metric labels to search")
	}

	for _, secret := range []string{carolPAT, davePAT, "ffffffffffffffffffffffffffffffff", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"} {
		for _, s := range []string{secret, identity.HashKey(secret)} {
			if strings.Contains(logs, s) {
				t.Errorf("log contains a key or its hash:\n%s", logs)
			}
			for _, label := range labels {
				if strings.Contains(label, s) {
					t.Errorf("metric label %q contains a key or its hash", label)
				}
			}
		}
	}
}
