package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/collectord/collectord/examples/demomodel/model"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/telemetry"
)

// smallPNG returns a PNG of size x size pixels of one colour.
func smallPNG(t testing.TB, size int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			img.Set(x, y, color.RGBA{R: 200, G: 30, B: 30, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatalf("png.Encode: %v", err)
	}
	return buf.Bytes()
}

func colorsPredictBody(t testing.TB, inputIDs ...string) string {
	t.Helper()
	image := base64.StdEncoding.EncodeToString(smallPNG(t, 8))
	var inputs []string
	for _, id := range inputIDs {
		inputs = append(inputs, fmt.Sprintf(`{"id":%q,"data":{"image":{"base64":%q}}}`, id, image))
	}
	return `{"inputs":[` + strings.Join(inputs, ",") + `]}`
}

// clientResponse is what a client received.
type clientResponse struct {
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
}

// testRequest builds a fresh request for base, so that the same request can
// go once to the upstream and once to the proxy.
type testRequest func(t testing.TB, base string) *http.Request

func doRequest(t testing.TB, client *http.Client, req *http.Request) clientResponse {
	t.Helper()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the response of %s %s: %v", req.Method, req.URL, err)
	}
	return clientResponse{status: res.StatusCode, header: res.Header, body: body, trailer: res.Trailer}
}

// echoWithTrailers responds with the request body and a trailer holding its
// SHA-256.
func echoWithTrailers(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Trailer", "X-Body-Sha256")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusAccepted)
	w.Write(body)
	sum := sha256.Sum256(body)
	w.Header().Set("X-Body-Sha256", fmt.Sprintf("%x", sum))
}

func TestProxy_UpstreamSeesSameRequest(t *testing.T) {
	demo := model.New(model.Config{})
	mux := http.NewServeMux()
	mux.Handle("/v2/", demo.Handler())
	mux.HandleFunc("/echo", echoWithTrailers)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	rec := &recorder{next: mux}
	upstream := startH2CServer(t, rec)
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{demoCollector("colors")}})

	predict := colorsPredictBody(t, "a", "b")
	tests := map[string]testRequest{
		"REST predict": func(t testing.TB, base string) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, base+"/v2/users/demo/apps/main/models/colors/outputs?trace=1;x=%20y", strings.NewReader(predict))
			req.Host = "models.internal:8000"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Key secret-pat")
			req.Header.Set(callerHeader, "caller-1")
			req.Header.Set("X-Request-Id", "req-rest-1")
			req.Header.Add("X-Multi", "one")
			req.Header.Add("X-Multi", "two")
			return req
		},
		"chunked body with trailers": func(t testing.TB, base string) *http.Request {
			body := io.MultiReader(strings.NewReader("first part,"), strings.NewReader(" second part"))
			req, _ := http.NewRequest(http.MethodPut, base+"/echo", body)
			req.Host = "models.internal:8000"
			req.Trailer = http.Header{"X-Checksum": {"c0ffee"}}
			return req
		},
		"GET": func(t testing.TB, base string) *http.Request {
			req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
			req.Host = "models.internal:8000"
			return req
		},
	}

	client := &http.Client{}
	for name, newRequest := range tests {
		t.Run(name, func(t *testing.T) {
			direct := doRequest(t, client, newRequest(t, upstream.URL))
			directSeen := rec.last(t)
			proxied := doRequest(t, client, newRequest(t, h.server.URL))
			proxiedSeen := rec.last(t)

			requireSameRequest(t, directSeen, proxiedSeen)
			requireSameResponse(t, direct, proxied)
		})
	}

	if forwarded := rec.last(t).header.Get("X-Forwarded-For"); forwarded != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", forwarded)
	}
	records := h.finish(t)
	if len(records) != 2 {
		t.Fatalf("records = %d, want 2 (the two inputs of the proxied predict)", len(records))
	}
	for i, r := range records {
		if r.GetRequestId() != "req-rest-1" || r.GetModelId() != "colors" || r.GetCallerUserId() != "caller-1" {
			t.Errorf("record %d = %v, want request req-rest-1, model colors, caller caller-1", i, r)
		}
	}
}

// requireSameRequest fails unless the upstream received the same request
// line, Host, end-to-end headers, body and trailers both times.
func requireSameRequest(t testing.TB, direct, proxied recordedRequest) {
	t.Helper()
	if direct.method != proxied.method || direct.uri != proxied.uri || direct.host != proxied.host {
		t.Errorf("request line: direct %s %s (Host %s), proxied %s %s (Host %s)",
			direct.method, direct.uri, direct.host, proxied.method, proxied.uri, proxied.host)
	}
	if d, p := endToEndHeaders(direct.header), endToEndHeaders(proxied.header); !reflect.DeepEqual(d, p) {
		t.Errorf("request headers differ:\ndirect  %v\nproxied %v", d, p)
	}
	if !bytes.Equal(direct.body, proxied.body) {
		t.Errorf("request body: direct %d bytes, proxied %d bytes, not equal", len(direct.body), len(proxied.body))
	}
	if !reflect.DeepEqual(direct.trailer, proxied.trailer) {
		t.Errorf("request trailers: direct %v, proxied %v", direct.trailer, proxied.trailer)
	}
}

// requireSameResponse fails unless the client received the same status,
// end-to-end headers, body and trailers both times.
func requireSameResponse(t testing.TB, direct, proxied clientResponse) {
	t.Helper()
	if direct.status != proxied.status {
		t.Errorf("status: direct %d, proxied %d", direct.status, proxied.status)
	}
	if d, p := endToEndHeaders(direct.header), endToEndHeaders(proxied.header); !reflect.DeepEqual(d, p) {
		t.Errorf("response headers differ:\ndirect  %v\nproxied %v", d, p)
	}
	if !bytes.Equal(direct.body, proxied.body) {
		t.Errorf("response body differs:\ndirect  %.300q\nproxied %.300q", direct.body, proxied.body)
	}
	if !reflect.DeepEqual(direct.trailer, proxied.trailer) {
		t.Errorf("response trailers: direct %v, proxied %v", direct.trailer, proxied.trailer)
	}
}

func TestProxy_RESTErrorsPassThrough(t *testing.T) {
	demo := model.New(model.Config{})
	failures := map[string]struct {
		status int
		body   string
	}{
		"bad-request": {http.StatusBadRequest, `{"status":{"code":10020,"description":"Failure","details":"invalid image"}}`},
		"internal":    {http.StatusInternalServerError, "internal error\n"},
		"unavailable": {http.StatusServiceUnavailable, `{"status":{"code":10030,"description":"Try again"}}`},
	}
	upstream := startH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := failures[r.Header.Get("X-Request-Id")]; ok {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.status)
			io.WriteString(w, f.body)
			return
		}
		demo.Handler().ServeHTTP(w, r)
	}))
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{demoCollector("colors")}})
	body := colorsPredictBody(t, "only")

	for _, requestID := range []string{"bad-request", "internal", "unavailable", "success"} {
		t.Run(requestID, func(t *testing.T) {
			newRequest := func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, base+"/v2/users/demo/apps/main/models/colors/outputs", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(callerHeader, "caller-1")
				req.Header.Set("X-Request-Id", requestID)
				return req
			}
			direct := doRequest(t, http.DefaultClient, newRequest(upstream.URL))
			proxied := doRequest(t, http.DefaultClient, newRequest(h.server.URL))

			requireSameResponse(t, direct, proxied)
			if f, ok := failures[requestID]; ok && (proxied.status != f.status || string(proxied.body) != f.body) {
				t.Errorf("proxied response = %d %q, want %d %q", proxied.status, proxied.body, f.status, f.body)
			}
		})
	}

	records := h.finish(t)
	if len(records) != 1 || records[0].GetRequestId() != "success" {
		t.Errorf("records = %v, want one record of request success", records)
	}
	if got := h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeUpstreamError); got != 3 {
		t.Errorf("upstream_error captures = %d, want 3", got)
	}
}

func TestProxy_LargeBodies(t *testing.T) {
	const size = 10 << 20
	upstream := startH2CServer(t, http.HandlerFunc(echoWithTrailers))
	h := newHarness(t, harnessConfig{
		upstream:        upstream.URL,
		collectors:      []collector.Collector{demoCollector("echo-size")},
		maxCaptureBytes: 1 << 20,
	})
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	req, _ := http.NewRequest(http.MethodPost, h.server.URL+"/v2/users/demo/apps/main/models/echo-size/outputs", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(callerHeader, "caller-1")
	res := doRequest(t, http.DefaultClient, req)

	if res.status != http.StatusAccepted {
		t.Errorf("status = %d, want 202", res.status)
	}
	if !bytes.Equal(res.body, payload) {
		t.Errorf("echoed body: %d bytes, want the %d bytes sent", len(res.body), len(payload))
	}
	want := fmt.Sprintf("%x", sha256.Sum256(payload))
	if got := res.trailer.Get("X-Body-Sha256"); got != want {
		t.Errorf("trailer X-Body-Sha256 = %q, want %q", got, want)
	}
	h.finish(t)
	if got := h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeTooLarge); got != 1 {
		t.Errorf("too_large captures = %d, want 1", got)
	}
}

// TestProxy_StreamsBodies checks that neither body is held back: the
// upstream sends its first chunk before the client has sent all of
// its own, and the client reads that chunk while its request is still open.
func TestProxy_StreamsBodies(t *testing.T) {
	upstream := startH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Without this, an HTTP/1.1 server reads the rest of the request
		// body before it sends the response headers.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		first := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, first); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write(append([]byte("got:"), first...))
		http.NewResponseController(w).Flush()

		rest, _ := io.ReadAll(r.Body)
		w.Write(append([]byte("|rest:"), rest...))
	}))
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{demoCollector("colors")}})

	bodyReader, bodyWriter := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, h.server.URL+"/v2/models/colors/outputs", bodyReader)
	req.Header.Set(callerHeader, "caller-1")
	// Full duplex needs HTTP/2 between the client and the proxy.
	client := &http.Client{Transport: newH2CTransport()}

	go bodyWriter.Write([]byte("hello"))
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer res.Body.Close()
	first := make([]byte, len("got:hello"))
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatalf("reading the first response chunk: %v", err)
	}
	if string(first) != "got:hello" {
		t.Errorf("first chunk = %q, want got:hello", first)
	}

	bodyWriter.Write([]byte(" world"))
	bodyWriter.Close()
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "|rest: world" {
		t.Errorf("rest of the response = %q, want |rest: world", rest)
	}
}

func newH2CTransport() *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: protocols}
}

func TestProxy_UpstreamDown(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	closedAddress := listener.Addr().String()
	listener.Close()
	h := newHarness(t, harnessConfig{upstream: "http://" + closedAddress, collectors: []collector.Collector{demoCollector("colors")}})

	req, _ := http.NewRequest(http.MethodPost, h.server.URL+"/v2/models/colors/outputs", strings.NewReader(colorsPredictBody(t, "x")))
	req.Header.Set(callerHeader, "caller-1")
	res := doRequest(t, http.DefaultClient, req)

	if res.status != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", res.status)
	}
	if got := h.counter(t, metricUpstreamErrors); got != 1 {
		t.Errorf("%s = %d, want 1", metricUpstreamErrors, got)
	}
	if records := h.finish(t); len(records) != 0 {
		t.Errorf("records = %d, want none", len(records))
	}
	if got := h.counter(t, "collectord_captures_total", "outcome="+telemetry.OutcomeAborted); got != 1 {
		t.Errorf("aborted captures = %d, want 1", got)
	}
}

func TestProxy_RESTCollectOutputs(t *testing.T) {
	upstream := startH2CServer(t, model.New(model.Config{}).Handler())
	outputs := demoCollector("colors")
	outputs.CollectOutputs = true
	h := newHarness(t, harnessConfig{upstream: upstream.URL, collectors: []collector.Collector{outputs}})

	req, _ := http.NewRequest(http.MethodPost, h.server.URL+"/v2/users/demo/apps/main/models/colors/outputs", strings.NewReader(colorsPredictBody(t, "a", "b")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(callerHeader, "caller-1")
	res := doRequest(t, http.DefaultClient, req)
	if res.status != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", res.status, res.body)
	}

	records := h.finish(t)
	if len(records) != 2 {
		t.Fatalf("records = %d, want 2", len(records))
	}
	for i, r := range records {
		concepts := r.GetOutputConcepts()
		if len(concepts) != 1 || concepts[0].GetId() != "red" || concepts[0].GetValue() != 1 {
			t.Errorf("record %d output concepts = %v, want red 1", i, concepts)
		}
		if r.GetModelVersionId() != model.DefaultVersionID {
			t.Errorf("record %d model version = %q, want %q from the response", i, r.GetModelVersionId(), model.DefaultVersionID)
		}
	}
}
