// Package api serves the management API: the subset of the Clarifai v2 API
// (service clarifai.api.V2) that manages collectors, workflows, the local apps
// and their inputs. One implementation serves both transports: gRPC, and REST through
// the grpc-gateway handlers, which call the same methods in process.
//
// Behaviour that the Clarifai API leaves open, as collectord implements it:
//
//   - Every response carries a status. gRPC calls end with gRPC status OK and
//     the outcome in the body. REST sets the HTTP status from the code (see
//     HTTPStatus), so MIXED_STATUS comes with 200 and FAILURE with 400.
//   - A key acts only for its own user: another user's ID in the path returns
//     CONN_INSUFFICIENT_SCOPES (403) whether or not that user exists. An app
//     key acts only on its app, and paths without /users/{user_id}/apps/{app_id}
//     use the key's app. With a personal key they return CONN_INVALID_REQUEST.
//   - PostCollectors, PatchCollectors and PostApps are all-or-nothing: one
//     invalid item rejects the request, its details name each item (by index
//     and ID) and field, and nothing is stored. PostInputs and the Delete RPCs
//     report each item instead and answer MIXED_STATUS when some failed.
//   - PatchCollectors "overwrite" replaces the whole definition of each
//     collector with the one in the request, except created_at. A missing
//     status keeps the collector's state, and an empty post_inputs_key_id (or
//     the masked value a response showed) keeps the stored key.
//   - post_inputs_key_id is masked in every response: "****" followed by the
//     last 4 characters of keys of 16 characters or more, "****" alone for
//     shorter ones.
//   - A PatchCollectors item without policy keeps the stored policy, because
//     Clarifai's clients do not know that field and would otherwise clear it
//     on every overwrite. An empty policy ({}) removes every limit.
//   - PostWorkflows and PatchWorkflows compile every workflow before they
//     store it, and reject one that does not compile with
//     WORKFLOW_INVALID_ARGUMENT and details that name the node and field.
//     PatchWorkflows "overwrite" replaces the node list, and "merge"
//     replaces nodes by ID and appends new ones. Both keep the stored nodes
//     when the request has none, and replace description and metadata when
//     the request sets them.
//   - A collector may name only workflows of its own app, and its pre-queue
//     workflow may not contain remote-model nodes. A workflow that a
//     collector names cannot be deleted.
//   - IDs of collectors, workflows and apps are 1 to 48 characters from
//     [A-Za-z0-9_-]; input IDs are 1 to 255 of the same characters.
//   - Lists take page (from 1) and per_page (default 128); a per_page above
//     1000 is rejected rather than clamped, so a client never believes it got
//     everything when it did not.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/audit"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// DefaultMaxRequestBytes is the default limit of a REST request body: the
// 128 MB that Clarifai allows for one PostInputs batch.
const DefaultMaxRequestBytes = 128 << 20

// Config sets the limits of the API.
type Config struct {
	// MaxRequestBytes caps the body of a REST request (larger bodies get
	// HTTP 413) and the messages that the server built by GRPCServer
	// receives. Zero means DefaultMaxRequestBytes.
	MaxRequestBytes int64
}

// KeyResolver resolves the value of an Authorization header ("Key ...") to
// a stored key. It returns identity.ErrNoCredentials when the value carries
// no usable key and identity.ErrKeyNotFound when the key is unknown.
type KeyResolver interface {
	ResolveKey(ctx context.Context, authorization string) (identity.Key, error)
}

// Deps are the stores and services the API uses. All are required except
// Filters, Audit, Logger, Meter and Now, which default to the zero
// filter.Config, no audit log, a discarding logger, a no-op meter and
// time.Now.
type Deps struct {
	Collectors collector.Store
	Workflows  workflow.Store
	Previews   admission.PreviewStore
	Apps       localapp.AppStore
	Inputs     localapp.InputStore
	Keys       KeyResolver
	// Filters compiles workflows to validate them before they are stored.
	// With the zero value no remote-model node compiles, because such a
	// node needs the endpoints that the node configures.
	Filters filter.Config
	Logger  *slog.Logger
	Meter   metric.Meter
	Now     func() time.Time
	// Audit receives an entry for every successful change. Nil keeps no
	// audit log, and ListAuditEntries then returns NOT_IMPLEMENTED.
	Audit audit.Store
}

// Server implements the clarifai.api.V2 service. PostModelOutputs, which
// collectord does not serve, returns NOT_IMPLEMENTED.
type Server struct {
	pb.UnimplementedV2Server

	cfg        Config
	collectors collector.Store
	workflows  workflow.Store
	previews   admission.PreviewStore
	filters    filter.Config
	apps       localapp.AppStore
	inputs     localapp.InputStore
	keys       KeyResolver
	audit      *auditLog
	log        *slog.Logger
	now        func() time.Time
	metrics    *apiMetrics
	gateway    http.Handler
}

var _ pb.V2Server = (*Server)(nil)

// New returns a Server; it fails when a required dependency is missing or a
// metric cannot be created.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := checkDeps(deps); err != nil {
		return nil, err
	}
	deps = withDefaults(deps)
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}

	m, err := newAPIMetrics(deps.Meter)
	if err != nil {
		return nil, err
	}
	auditLog, err := newAuditLog(deps.Audit, deps)
	if err != nil {
		return nil, err
	}

	s := &Server{
		cfg:        cfg,
		collectors: deps.Collectors,
		workflows:  deps.Workflows,
		previews:   deps.Previews,
		filters:    deps.Filters,
		apps:       deps.Apps,
		inputs:     deps.Inputs,
		keys:       deps.Keys,
		audit:      auditLog,
		log:        deps.Logger,
		now:        deps.Now,
		metrics:    m,
	}
	gw, err := s.newGateway()
	if err != nil {
		return nil, err
	}
	s.gateway = gw
	return s, nil
}

func checkDeps(deps Deps) error {
	switch {
	case deps.Collectors == nil:
		return errors.New("api: Deps.Collectors is required")
	case deps.Workflows == nil:
		return errors.New("api: Deps.Workflows is required")
	case deps.Previews == nil:
		return errors.New("api: Deps.Previews is required")
	case deps.Apps == nil:
		return errors.New("api: Deps.Apps is required")
	case deps.Inputs == nil:
		return errors.New("api: Deps.Inputs is required")
	case deps.Keys == nil:
		return errors.New("api: Deps.Keys is required")
	}
	return nil
}

func withDefaults(deps Deps) Deps {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Meter == nil {
		deps.Meter = noopMeter()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return deps
}

// Register adds the V2 service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterV2Server(r, s)
}

// GRPCServer returns a new grpc.Server that serves the V2 service and
// accepts messages up to MaxRequestBytes. The options in opts apply after
// that limit, so they can override it.
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(int(s.cfg.MaxRequestBytes))}, opts...)
	g := grpc.NewServer(opts...)
	s.Register(g)
	return g
}

// HTTPHandler returns the REST gateway: the paths of the V2 service's HTTP
// bindings, served by this Server in process.
func (s *Server) HTTPHandler() http.Handler {
	return s.gateway
}

// rpcSpec names an RPC and the scopes its key must hold.
type rpcSpec struct {
	name   string
	scopes []string
}

// call is the state of one request while an RPC body runs.
type call struct {
	rpc   rpcSpec
	reqID string
	key   identity.Key
	// userID and appID name the app the request acts on, once resolved.
	userID string
	appID  string
}

// serve authenticates the request, runs body and returns the status of the
// response. It logs the outcome, counts it, and turns a panic in body into
// INTERNAL_UNCATEGORIZED so that one bad request cannot stop the server.
func (s *Server) serve(ctx context.Context, rpc rpcSpec, body func(*call) error) (st *pb.Status) {
	c := &call{rpc: rpc, reqID: newRequestID()}
	start := s.now()

	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "api request panicked",
				"rpc", rpc.name, "req_id", c.reqID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			st = s.internalStatus(c)
		}
		s.finish(ctx, c, st, s.now().Sub(start))
	}()

	key, err := s.authenticate(ctx, rpc)
	if err == nil {
		c.key = key
		err = body(c)
	}
	return s.statusOf(ctx, c, err)
}

// statusOf converts the error of an RPC body into the response status.
func (s *Server) statusOf(ctx context.Context, c *call, err error) *pb.Status {
	if err == nil {
		return newStatus(pb.StatusCode_SUCCESS, "", c.reqID, 0)
	}
	if ae, ok := asAPIError(err); ok {
		return newStatus(ae.code, ae.details, c.reqID, ae.httpStatus)
	}

	s.log.ErrorContext(ctx, "api request failed",
		"rpc", c.rpc.name, "req_id", c.reqID, "user_id", c.key.UserID, "app_id", c.appID, "error", err)
	return s.internalStatus(c)
}

func (s *Server) internalStatus(c *call) *pb.Status {
	details := "internal error; the server log has the cause under req_id " + c.reqID
	return newStatus(pb.StatusCode_INTERNAL_UNCATEGORIZED, details, c.reqID, 0)
}

// finish logs one request at debug level and counts it.
func (s *Server) finish(ctx context.Context, c *call, st *pb.Status, elapsed time.Duration) {
	s.log.DebugContext(ctx, "api request",
		"rpc", c.rpc.name, "req_id", c.reqID, "key_id", c.key.ID,
		"user_id", c.userID, "app_id", c.appID,
		"code", st.GetCode().String(), "details", st.GetDetails(), "duration", elapsed)

	s.metrics.requests.Add(ctx, 1, metric.WithAttributes(
		attribute.String(attrRPC, c.rpc.name),
		attribute.String(attrCode, st.GetCode().String()),
	))
}

// newRequestID returns a random 32-character hex ID, the form of Clarifai's
// req_id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error.
	return hex.EncodeToString(b[:])
}
