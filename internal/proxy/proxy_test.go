package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/telemetry"
)

func TestNew_InvalidConfig(t *testing.T) {
	tests := map[string]Config{
		"no upstream":   {},
		"https":         {Upstream: &url.URL{Scheme: "https", Host: "127.0.0.1:1"}},
		"no host":       {Upstream: &url.URL{Scheme: "http"}},
		"user info":     {Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1", User: url.UserPassword("u", "secret")}},
		"query":         {Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1", RawQuery: "a=1"}},
		"negative idle": {Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, MaxIdleConnsPerHost: -1},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := New(cfg, nil, nil, nil)
			if err == nil {
				t.Fatalf("New(%+v) = %v, want an error", cfg, p)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the upstream password", err)
			}
		})
	}
}

func TestProxy_WithoutEngine(t *testing.T) {
	upstream := startH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "echo:"+string(body))
	}))
	for name, engine := range map[string]Engine{"nil": nil, "nil *capture.Engine": (*capture.Engine)(nil)} {
		t.Run(name, func(t *testing.T) {
			_, server := startProxy(t, upstream.URL, engine, nil)

			res, err := http.Post(server.URL+"/v2/models/colors/outputs", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || string(body) != "echo:{}" {
				t.Errorf("response = %d %q, want 200 echo:{}", res.StatusCode, body)
			}
		})
	}
}

// panickingCallers fails every caller lookup with a panic.
type panickingCallers struct{}

func (panickingCallers) ResolveCaller(context.Context, capture.RequestInfo) (string, bool) {
	panic("caller lookup failed")
}

func TestProxy_CapturePanicIsRecovered(t *testing.T) {
	upstream := startH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"status":{"code":10000}}`)
	}))
	h := newHarness(t, harnessConfig{
		upstream:   upstream.URL,
		collectors: []collector.Collector{demoCollector("colors")},
		callers:    panickingCallers{},
	})

	req, _ := http.NewRequest(http.MethodPost, h.server.URL+"/v2/users/demo/apps/main/models/colors/outputs", strings.NewReader(colorsPredictBody(t, "a")))
	res := doRequest(t, http.DefaultClient, req)

	if res.status != http.StatusOK || string(res.body) != `{"status":{"code":10000}}` {
		t.Errorf("response = %d %q, want the upstream's 200", res.status, res.body)
	}
	if got := h.counter(t, metricCapturePanics, "phase="+phaseBegin); got != 1 {
		t.Errorf("%s{phase=begin} = %d, want 1", metricCapturePanics, got)
	}
}

func TestProxy_ClientGoesAway(t *testing.T) {
	upstreamDone := make(chan struct{})
	upstream := startH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":`)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	outputs := demoCollector("colors")
	outputs.CollectOutputs = true
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{outputs}})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.server.URL+"/v2/users/demo/apps/main/models/colors/outputs", strings.NewReader(colorsPredictBody(t, "a")))
	req.Header.Set(callerHeader, "caller-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	first := make([]byte, len(`{"status":`))
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatalf("reading the first chunk: %v", err)
	}
	cancel()
	res.Body.Close()

	select {
	case <-upstreamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not canceled within 10s of the client leaving")
	}
	// The proxy handler closes the exchange as it unwinds, just after the
	// upstream request ends.
	deadline := time.Now().Add(10 * time.Second)
	for h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeAborted) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("aborted captures = %d after 10s, want 1", h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeAborted))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if records := h.finish(t); len(records) != 0 {
		t.Errorf("records = %d, want none", len(records))
	}
}

func TestRequestHeaders_Get(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v2/models/m%2F1/outputs?a=1;b", strings.NewReader("{}"))
	r.Host = "models.internal:8000"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Key k")
	headers := requestHeaders{r: r}

	tests := map[string]string{
		":method":        "POST",
		":path":          "/v2/models/m%2F1/outputs?a=1;b",
		":authority":     "models.internal:8000",
		":scheme":        "http",
		"content-type":   "application/json",
		"content-length": "2",
		"authorization":  "Key k",
		"x-absent":       "",
	}
	for name, want := range tests {
		if got := headers.Get(name); got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestResponseHeaders_Get(t *testing.T) {
	res := &http.Response{StatusCode: 503, Header: http.Header{"Grpc-Status": {"14"}}}
	headers := responseHeaders{res: res}

	if got := headers.Get(":status"); got != "503" {
		t.Errorf(`Get(":status") = %q, want 503`, got)
	}
	if got := headers.Get("grpc-status"); got != "14" {
		t.Errorf(`Get("grpc-status") = %q, want 14`, got)
	}
}

func TestRequestHeaders_ChunkedLength(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v2/models/m/outputs", strings.NewReader("{}"))
	r.ContentLength = -1

	if got := (requestHeaders{r: r}).Get("content-length"); got != "" {
		t.Errorf(`Get("content-length") = %q for a body of unknown length, want ""`, got)
	}
}

func TestProxy_UpstreamBasePath(t *testing.T) {
	rec := &recorder{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	upstream := startH2CServer(t, rec)
	_, server := startProxy(t, upstream.URL+"/base", nil, nil)

	res, err := http.Get(server.URL + "/v2/models?page=2")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	res.Body.Close()

	if got := rec.last(t).uri; got != "/base/v2/models?page=2" {
		t.Errorf("upstream request URI = %q, want /base/v2/models?page=2", got)
	}
}
