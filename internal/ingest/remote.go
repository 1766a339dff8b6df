package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Defaults of RemoteConfig.
const (
	DefaultRemoteTimeout      = 30 * time.Second
	DefaultRemoteMaxIdleConns = 16
	// maxResponseBytes bounds the response body read; PostInputs responses
	// echo the inputs, so they can be as large as the request.
	maxResponseBytes = 8 << 20
	// maxRetryAfterSeconds clamps a parsed Retry-After to one day; workers
	// apply their own, lower cap.
	maxRetryAfterSeconds = 24 * 60 * 60
)

// RemoteConfig configures posting to a Clarifai-compatible API.
type RemoteConfig struct {
	// BaseURL is the API root, e.g. "https://api.example.com"; inputs are
	// posted to {BaseURL}/v2/users/{user}/apps/{app}/inputs.
	BaseURL string
	// Timeout bounds one request, connection and response body included.
	// Default 30s.
	Timeout time.Duration
	// MaxIdleConns is the number of idle keep-alive connections kept to the
	// API. Default 16.
	MaxIdleConns int
	// UserAgent is sent with every request. Default "collectord".
	UserAgent string
}

// KeyLookup finds the key that posts inputs for a collector. The key is
// looked up at delivery time so that it is never stored in a record.
type KeyLookup interface {
	// PostInputsKey returns the collector's post-inputs key, or an error
	// wrapping collector.ErrNotFound when the collector no longer exists.
	PostInputsKey(ctx context.Context, userID, appID, collectorID string) (string, error)
}

// RemoteDeps are the collaborators of a RemoteDestination.
type RemoteDeps struct {
	Keys   KeyLookup
	Logger *slog.Logger
}

// RemoteDestination posts inputs to a Clarifai-compatible REST API through
// one keep-alive HTTP client.
type RemoteDestination struct {
	base      string
	userAgent string
	client    *http.Client
	keys      KeyLookup
	logger    *slog.Logger
}

var _ Destination = (*RemoteDestination)(nil)

// NewRemoteDestination returns a destination posting to cfg.BaseURL.
func NewRemoteDestination(cfg RemoteConfig, deps RemoteDeps) (*RemoteDestination, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("remote destination: base URL %q is invalid: use http(s)://host[:port][/path]", cfg.BaseURL)
	}
	if deps.Keys == nil {
		return nil, errors.New("remote destination: a KeyLookup is required to find post-inputs keys")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRemoteTimeout
	}
	if cfg.MaxIdleConns <= 0 {
		cfg.MaxIdleConns = DefaultRemoteMaxIdleConns
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "collectord"
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = cfg.MaxIdleConns
	transport.MaxIdleConnsPerHost = cfg.MaxIdleConns
	transport.ResponseHeaderTimeout = cfg.Timeout

	return &RemoteDestination{
		base:      strings.TrimRight(base.String(), "/"),
		userAgent: cfg.UserAgent,
		client:    &http.Client{Transport: transport, Timeout: cfg.Timeout},
		keys:      deps.Keys,
		logger:    logger.With("component", "ingest_remote"),
	}, nil
}

// Close releases idle connections.
func (d *RemoteDestination) Close() {
	d.client.CloseIdleConnections()
}

// MaxPostInputs returns MaxInputsPerPost, the limit of the API.
func (d *RemoteDestination) MaxPostInputs() int { return MaxInputsPerPost }

// Post sends the records in one PostInputs request, splitting the batch
// when the API rejects it as a whole (400 or 413) so that one bad record
// fails alone.
func (d *RemoteDestination) Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result {
	key, err := d.keys.PostInputsKey(ctx, dest.UserID, dest.AppID, dest.CollectorID)
	switch {
	case errors.Is(err, collector.ErrNotFound):
		return fill(len(recs), Result{Outcome: Permanent, Reason: ReasonCollectorNotFound, Err: err})
	case err != nil:
		return fill(len(recs), Result{Outcome: Retryable, Err: fmt.Errorf("look up post-inputs key: %w", err)})
	case key == "":
		return fill(len(recs), Result{Outcome: Permanent, Reason: ReasonMissingKey,
			Err: errors.New("collector has no post-inputs key")})
	}

	inputs := make([]*clarifaipb.Input, len(recs))
	for i, rec := range recs {
		inputs[i] = InputFromRecord(rec)
	}
	return d.post(ctx, dest, key, inputs)
}

// post sends one request and maps its response to per-input results.
func (d *RemoteDestination) post(ctx context.Context, dest DestinationRef, key string, inputs []*clarifaipb.Input) []Result {
	resp, err := d.send(ctx, dest, key, inputs)
	if err != nil {
		return fill(len(inputs), Result{Outcome: Retryable, Err: err})
	}

	switch code := resp.statusCode; {
	case code >= 200 && code < 300:
		return successResults(inputs, resp.body)
	case code == http.StatusRequestEntityTooLarge:
		if len(inputs) == 1 {
			return []Result{{Outcome: Permanent, Reason: ReasonTooLarge, Err: resp.err()}}
		}
		return d.split(ctx, dest, key, inputs)
	case code == http.StatusBadRequest:
		return d.badRequest(ctx, dest, key, inputs, resp)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return fill(len(inputs), Result{Outcome: Retryable, RetryAfter: resp.retryAfter, Err: resp.err()})
	default:
		return fill(len(inputs), Result{Outcome: Permanent, Reason: statusReason(code), Err: resp.err()})
	}
}

// badRequest maps a 400. Per-input statuses covering every input decide
// alone; otherwise the batch is split until the rejected input is alone.
func (d *RemoteDestination) badRequest(ctx context.Context, dest DestinationRef, key string, inputs []*clarifaipb.Input, resp *remoteResponse) []Result {
	if results, ok := perInputResults(inputs, resp.body, ReasonBadRequest, false); ok {
		return results
	}
	if len(inputs) > 1 {
		return d.split(ctx, dest, key, inputs)
	}
	if isDuplicate(resp.body.GetStatus()) {
		return []Result{{Outcome: Duplicate}}
	}
	return []Result{{Outcome: Permanent, Reason: ReasonBadRequest, Err: resp.err()}}
}

func (d *RemoteDestination) split(ctx context.Context, dest DestinationRef, key string, inputs []*clarifaipb.Input) []Result {
	half := len(inputs) / 2
	d.logger.Debug("splitting rejected batch", "user_id", dest.UserID, "app_id", dest.AppID, "inputs", len(inputs))

	left := d.post(ctx, dest, key, inputs[:half])
	if r, ok := firstRetryable(left); ok {
		// The destination is throttled or down (a 429 or 5xx mid-split,
		// possibly deep in the left half's own split): posting the other
		// half now would ignore its Retry-After.
		return append(left, fill(len(inputs)-half, r)...)
	}
	right := d.post(ctx, dest, key, inputs[half:])
	return append(left, right...)
}

// firstRetryable returns the first Retryable result.
func firstRetryable(results []Result) (Result, bool) {
	for _, r := range results {
		if r.Outcome == Retryable {
			return r, true
		}
	}
	return Result{}, false
}

// remoteResponse is a decoded PostInputs response.
type remoteResponse struct {
	statusCode int
	retryAfter time.Duration
	// body is nil when the body was not a MultiInputResponse.
	body *clarifaipb.MultiInputResponse
}

func (r *remoteResponse) err() error {
	st := r.body.GetStatus()
	if st == nil {
		return fmt.Errorf("HTTP %d", r.statusCode)
	}
	return fmt.Errorf("HTTP %d: status %d %s %s", r.statusCode, st.GetCode(), st.GetDescription(), st.GetDetails())
}

func (d *RemoteDestination) send(ctx context.Context, dest DestinationRef, key string, inputs []*clarifaipb.Input) (*remoteResponse, error) {
	payload, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&clarifaipb.PostInputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: dest.UserID, AppId: dest.AppID},
		Inputs:    inputs,
	})
	if err != nil {
		return nil, fmt.Errorf("encode PostInputs request: %w", err)
	}

	endpoint := d.base + "/v2/users/" + url.PathEscape(dest.UserID) + "/apps/" + url.PathEscape(dest.AppID) + "/inputs"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("build PostInputs request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Key "+key)
	req.Header.Set("User-Agent", d.userAgent)

	httpResp, err := d.client.Do(req)
	if err != nil {
		// The error names the URL, which holds no key.
		return nil, fmt.Errorf("post inputs: %w", err)
	}
	defer httpResp.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(httpResp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("read PostInputs response: %w", err)
	}
	// Drain what the limit left so the connection can be reused.
	_, _ = io.Copy(io.Discard, httpResp.Body)

	resp := &remoteResponse{
		statusCode: httpResp.StatusCode,
		retryAfter: parseRetryAfter(httpResp.Header.Get("Retry-After"), time.Now()),
	}
	var body clarifaipb.MultiInputResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &body); err == nil {
		resp.body = &body
	}
	return resp, nil
}

// successResults maps a 2xx response. A SUCCESS status, or no status, means
// every input was stored; otherwise each listed input's status decides, and
// an unlisted input counts as stored.
func successResults(inputs []*clarifaipb.Input, body *clarifaipb.MultiInputResponse) []Result {
	switch body.GetStatus().GetCode() {
	case clarifaipb.StatusCode_ZERO, clarifaipb.StatusCode_SUCCESS:
		return fill(len(inputs), Result{Outcome: Delivered})
	case clarifaipb.StatusCode_TRY_AGAIN:
		return fill(len(inputs), Result{Outcome: Retryable, Err: errors.New("destination asked to try again")})
	}
	results, _ := perInputResults(inputs, body, ReasonRejected, true)
	return results
}

// perInputResults maps each input to the status the response lists for its
// ID. ok is false when some input is not listed; such inputs get Delivered
// when unlistedDelivered is set and Permanent otherwise.
func perInputResults(inputs []*clarifaipb.Input, body *clarifaipb.MultiInputResponse, failReason string, unlistedDelivered bool) ([]Result, bool) {
	statuses := make(map[string]*clarifaipb.Status, len(body.GetInputs()))
	for _, in := range body.GetInputs() {
		if in.GetId() != "" {
			statuses[in.GetId()] = in.GetStatus()
		}
	}

	results := make([]Result, len(inputs))
	complete := true
	for i, in := range inputs {
		st, listed := statuses[in.GetId()]
		switch {
		case listed:
			results[i] = inputResult(st, failReason)
		case unlistedDelivered:
			results[i] = Result{Outcome: Delivered}
		default:
			complete = false
			results[i] = Result{Outcome: Permanent, Reason: failReason}
		}
	}
	return results, complete
}

func inputResult(st *clarifaipb.Status, failReason string) Result {
	if isDuplicate(st) {
		return Result{Outcome: Duplicate}
	}
	switch st.GetCode() {
	case clarifaipb.StatusCode_ZERO, clarifaipb.StatusCode_SUCCESS,
		clarifaipb.StatusCode_INPUT_SUCCESS, clarifaipb.StatusCode_INPUT_PENDING:
		return Result{Outcome: Delivered}
	case clarifaipb.StatusCode_TRY_AGAIN:
		return Result{Outcome: Retryable, Err: errors.New("destination asked to try again")}
	}
	return Result{Outcome: Permanent, Reason: failReason,
		Err: fmt.Errorf("input status %d %s %s", st.GetCode(), st.GetDescription(), st.GetDetails())}
}

// isDuplicate reports a duplicate input ID, which Clarifai reports as
// INPUT_DUPLICATE or with the details "Input has a duplicate ID.".
func isDuplicate(st *clarifaipb.Status) bool {
	switch st.GetCode() {
	case clarifaipb.StatusCode_INPUT_DUPLICATE, clarifaipb.StatusCode_DATABASE_DUPLICATE_KEY:
		return true
	}
	text := strings.ToLower(st.GetDetails() + " " + st.GetDescription())
	return strings.Contains(text, "duplicate id")
}

func statusReason(code int) string {
	switch code {
	case http.StatusBadRequest:
		return ReasonBadRequest
	case http.StatusUnauthorized:
		return ReasonUnauthorized
	case http.StatusForbidden:
		return ReasonForbidden
	case http.StatusNotFound:
		return ReasonNotFound
	}
	if code >= 400 && code < 500 {
		return ReasonRejected
	}
	return ReasonUnexpectedStatus
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date;
// it returns 0 when the header is absent, invalid or in the past.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if secs, err := strconv.Atoi(value); err == nil {
		// Clamp before converting so a huge value cannot overflow.
		return time.Duration(min(max(secs, 0), maxRetryAfterSeconds)) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0)
	}
	return 0
}
