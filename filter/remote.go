package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Defaults and limits of remote-model nodes.
const (
	// DefaultRemoteTimeout bounds one predict request when RemoteEndpoint.Timeout is zero.
	DefaultRemoteTimeout = 10 * time.Second
	// remoteMaxIdleConns is the number of idle keep-alive connections kept per endpoint.
	remoteMaxIdleConns = 16
	// maxRemoteResponseBytes bounds the response body read. A response with the
	// concepts of one input is far smaller, and a larger body fails to parse.
	maxRemoteResponseBytes = 8 << 20
	// maxRetryAfter clamps a Retry-After header so a huge value cannot overflow.
	maxRetryAfter = 24 * time.Hour
)

// RemoteEndpoint is a Clarifai-compatible API that remote-model nodes may call. The
// operator of collectord configures endpoints by name, and a workflow node names one,
// so a workflow can only reach the hosts that the operator chose. Share one
// RemoteEndpoint value between compilations so that they share its HTTP client.
type RemoteEndpoint struct {
	// BaseURL is the http:// or https:// root of the API, without /v2.
	BaseURL string
	// Key is sent as "Authorization: Key <Key>". It never appears in errors.
	Key string
	// Timeout bounds one predict request, connection and response body included.
	// Zero means DefaultRemoteTimeout.
	Timeout time.Duration
	// HTTPClient sends the requests. Nil means a client built on first use with
	// keep-alive connections and Timeout.
	HTTPClient *http.Client

	clientOnce sync.Once
	client     *http.Client
}

// String returns the base URL with the key masked, so that logging an endpoint never
// prints its key.
func (e *RemoteEndpoint) String() string {
	return fmt.Sprintf("RemoteEndpoint{BaseURL: %q, Key: ****, Timeout: %v}", e.BaseURL, e.Timeout)
}

// timeout returns Timeout or its default.
func (e *RemoteEndpoint) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}

	return DefaultRemoteTimeout
}

// httpClient returns HTTPClient, or the client built for this endpoint on first use.
func (e *RemoteEndpoint) httpClient() *http.Client {
	if e.HTTPClient != nil {
		return e.HTTPClient
	}

	e.clientOnce.Do(func() {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.MaxIdleConns = remoteMaxIdleConns
		transport.MaxIdleConnsPerHost = remoteMaxIdleConns
		e.client = &http.Client{Transport: transport, Timeout: e.timeout()}
	})

	return e.client
}

// RemoteModel passes on the concepts that a model behind a RemoteEndpoint predicts for
// the item's input. It ignores the concepts it receives.
type RemoteModel struct {
	// EndpointName is the configured name of Endpoint, used in errors.
	EndpointName string
	// Endpoint is the API that serves the model.
	Endpoint *RemoteEndpoint
	// UserID and AppID own the model. When both are empty, the URL leaves them out
	// and the API uses the app of the endpoint's key.
	UserID string
	AppID  string
	// ModelID is the model to predict with.
	ModelID string
	// VersionID is the model version. Empty means the model's latest version.
	VersionID string
}

// Type returns TypeRemoteModel.
func (*RemoteModel) Type() string { return TypeRemoteModel }

// RemoteError is a remote-model call that did not return a usable prediction: the request
// failed, timed out, or the API returned an error status or an unreadable body.
// The input was not judged, so the caller should retry it later.
type RemoteError struct {
	// Endpoint is the configured endpoint name.
	Endpoint string
	// HTTPStatus is the response's HTTP status code, or 0 when no response arrived.
	HTTPStatus int
	// Code is the Clarifai status code of the response body, or ZERO when the body
	// has none.
	Code clarifaipb.StatusCode
	// RetryAfter is the delay that the Retry-After header requested, or 0.
	RetryAfter time.Duration

	// message describes the failure with the endpoint key removed.
	message string
	// err is the transport error, when there is one.
	err error
}

// Error returns the failure with the endpoint name, which never contains the key.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote model endpoint %q: %s", e.Endpoint, e.message)
}

// Unwrap returns the transport error, such as context.DeadlineExceeded, or nil.
func (e *RemoteError) Unwrap() error { return e.err }

// Apply posts the item's input as a PostModelOutputsRequest and returns the concepts
// of the output for it. A per-output status other than SUCCESS means the model rejected
// this input, so Apply returns no concepts and no error. A per-output TRY_AGAIN and
// every other failure return a *RemoteError.
func (r *RemoteModel) Apply(ctx context.Context, item *Item, _ []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	input := item.input()
	if input == nil {
		return nil, errors.New("remote model: the item has no input to send")
	}

	ctx, cancel := context.WithTimeout(ctx, r.Endpoint.timeout())
	defer cancel()

	status, retryAfter, raw, err := r.post(ctx, input)
	if err != nil {
		return nil, err
	}

	var response clarifaipb.MultiOutputResponse
	parseErr := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(raw, &response)

	if status < 200 || status > 299 {
		// The body of an error response is optional, so a parse error is ignored here.
		return nil, r.responseError(status, retryAfter, response.GetStatus(), "the API returned an error")
	}

	if parseErr != nil {
		return nil, r.responseError(status, 0, nil, "the response is not a MultiOutputResponse: "+parseErr.Error())
	}

	switch code := response.GetStatus().GetCode(); code {
	case clarifaipb.StatusCode_SUCCESS, clarifaipb.StatusCode_MIXED_STATUS:
	default:
		return nil, r.responseError(status, retryAfter, response.GetStatus(), "the response status is not SUCCESS")
	}

	// One input was sent, so exactly one output belongs to it.
	if n := len(response.GetOutputs()); n != 1 {
		return nil, r.responseError(status, 0, response.GetStatus(), fmt.Sprintf("the response has %d outputs for 1 input", n))
	}

	output := response.GetOutputs()[0]
	switch output.GetStatus().GetCode() {
	case clarifaipb.StatusCode_SUCCESS:
		return output.GetData().GetConcepts(), nil
	case clarifaipb.StatusCode_TRY_AGAIN:
		return nil, r.responseError(status, retryAfter, output.GetStatus(), "the output status is TRY_AGAIN")
	default:
		return nil, nil
	}
}

// post sends the request and returns the response's HTTP status, Retry-After delay and
// body.
func (r *RemoteModel) post(ctx context.Context, input *clarifaipb.Input) (int, time.Duration, []byte, error) {
	request := &clarifaipb.PostModelOutputsRequest{
		ModelId:   r.ModelID,
		VersionId: r.VersionID,
		Inputs:    []*clarifaipb.Input{input},
	}
	if r.UserID != "" {
		request.UserAppId = &clarifaipb.UserAppIDSet{UserId: r.UserID, AppId: r.AppID}
	}

	payload, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(request)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("remote model: encode PostModelOutputsRequest: %w", err)
	}

	httpRequest, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url(), bytes.NewReader(payload))
	if err != nil {
		return 0, 0, nil, r.transportError("build the request", err)
	}
	httpRequest.Header.Set("Content-Type", "application/json")
	httpRequest.Header.Set("Authorization", "Key "+r.Endpoint.Key)
	httpRequest.Header.Set("User-Agent", "collectord")

	response, err := r.Endpoint.httpClient().Do(httpRequest)
	if err != nil {
		return 0, 0, nil, r.transportError("post the input", err)
	}
	defer response.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(response.Body, maxRemoteResponseBytes))
	if err != nil {
		return 0, 0, nil, r.transportError("read the response", err)
	}

	// Drain what the limit left so that the connection can be reused.
	_, _ = io.Copy(io.Discard, response.Body)

	return response.StatusCode, parseRetryAfter(response.Header.Get("Retry-After"), time.Now()), raw, nil
}

// url returns {base}/v2[/users/{user}/apps/{app}]/models/{model}[/versions/{version}]/outputs.
func (r *RemoteModel) url() string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(r.Endpoint.BaseURL, "/"))
	b.WriteString("/v2")

	if r.UserID != "" {
		b.WriteString("/users/" + url.PathEscape(r.UserID) + "/apps/" + url.PathEscape(r.AppID))
	}

	b.WriteString("/models/" + url.PathEscape(r.ModelID))
	if r.VersionID != "" {
		b.WriteString("/versions/" + url.PathEscape(r.VersionID))
	}

	b.WriteString("/outputs")

	return b.String()
}

// transportError wraps an error of the HTTP exchange.
func (r *RemoteModel) transportError(step string, err error) *RemoteError {
	return &RemoteError{
		Endpoint: r.EndpointName,
		message:  r.redact(step + ": " + err.Error()),
		err:      err,
	}
}

// responseError describes a response that carries no usable prediction.
func (r *RemoteModel) responseError(httpStatus int, retryAfter time.Duration, status *clarifaipb.Status, problem string) *RemoteError {
	message := fmt.Sprintf("model %q: HTTP %d: %s", r.ModelID, httpStatus, problem)
	if status != nil {
		message += fmt.Sprintf(" (status %d %s: %s %s)", status.GetCode(), status.GetCode(), status.GetDescription(), status.GetDetails())
	}

	return &RemoteError{
		Endpoint:   r.EndpointName,
		HTTPStatus: httpStatus,
		Code:       status.GetCode(),
		RetryAfter: retryAfter,
		message:    r.redact(strings.TrimSpace(message)),
	}
}

// redact removes the endpoint key from text that the API or the transport produced,
// because an API may echo the Authorization header in an error description.
func (r *RemoteModel) redact(text string) string {
	if r.Endpoint.Key == "" {
		return text
	}

	return strings.ReplaceAll(text, r.Endpoint.Key, "****")
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date. It returns 0
// when the header is absent, invalid or in the past.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}

	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil {
		return time.Duration(min(max(seconds, 0), int64(maxRetryAfter/time.Second))) * time.Second
	}

	if at, err := http.ParseTime(value); err == nil {
		return min(max(at.Sub(now), 0), maxRetryAfter)
	}

	return 0
}

// newRemoteModel reads output_info.params endpoint, model_id, user_id, app_id and
// version_id, and resolves the endpoint among those configured.
func newRemoteModel(nodeID string, params *structpb.Struct, endpoints map[string]*RemoteEndpoint) (*RemoteModel, error) {
	name, err := stringParam(nodeID, params, "endpoint", true)
	if err != nil {
		return nil, err
	}

	endpoint, ok := endpoints[name]
	if !ok || endpoint == nil {
		if len(endpoints) == 0 {
			return nil, paramError(nodeID, "output_info.params.endpoint", "unknown endpoint %q: no remote model endpoints are configured, so remote-model nodes cannot run", name)
		}

		configured := slices.Sorted(maps.Keys(endpoints))
		return nil, paramError(nodeID, "output_info.params.endpoint", "unknown endpoint %q: the configured remote model endpoints are %q", name, configured)
	}

	if err := checkBaseURL(endpoint.BaseURL); err != nil {
		return nil, paramError(nodeID, "output_info.params.endpoint", "endpoint %q: %v", name, err)
	}

	model := &RemoteModel{EndpointName: name, Endpoint: endpoint}
	fields := []struct {
		name     string
		required bool
		target   *string
	}{
		{"model_id", true, &model.ModelID},
		{"user_id", false, &model.UserID},
		{"app_id", false, &model.AppID},
		{"version_id", false, &model.VersionID},
	}
	for _, field := range fields {
		*field.target, err = stringParam(nodeID, params, field.name, field.required)
		if err != nil {
			return nil, err
		}
	}

	if (model.UserID == "") != (model.AppID == "") {
		return nil, paramError(nodeID, "output_info.params.user_id", "user_id and app_id must be set together, or both left out to use the app of the endpoint key")
	}

	return model, nil
}

// stringParam reads a string parameter from output_info.params. A required one must be
// non-empty, and an optional one that is missing returns "".
func stringParam(nodeID string, params *structpb.Struct, name string, required bool) (string, error) {
	field := "output_info.params." + name

	value, ok := params.GetFields()[name]
	if !ok {
		if required {
			return "", paramError(nodeID, field, "missing parameter")
		}

		return "", nil
	}

	text, ok := value.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", paramError(nodeID, field, "invalid value %s: expected a string", value)
	}

	if required && text.StringValue == "" {
		return "", paramError(nodeID, field, "missing value: expected a non-empty string")
	}

	return text.StringValue, nil
}

// checkBaseURL accepts an http:// or https:// URL with a host.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("base URL %q is not a URL: %w", raw, err)
	}

	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("base URL %q must be http:// or https:// with a host", raw)
	}

	return nil
}
