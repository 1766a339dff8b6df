package api

import (
	"errors"
	"fmt"
	"net/http"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// apiError is an outcome that a client sees as a Clarifai status. RPC bodies
// return it to end a request with a code other than SUCCESS; any other error
// becomes INTERNAL_UNCATEGORIZED and its text stays in the server log.
type apiError struct {
	code    pb.StatusCode
	details string
	// httpStatus overrides the HTTP status that the code maps to; 0 keeps it.
	httpStatus int
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s", e.code, e.details)
}

// fail returns an apiError with details formatted like fmt.Sprintf.
func fail(code pb.StatusCode, format string, args ...any) *apiError {
	return &apiError{code: code, details: fmt.Sprintf(format, args...)}
}

// descriptions are the short, fixed texts of the codes collectord returns, in
// the style of the Clarifai API. Details carry the request-specific part.
var descriptions = map[pb.StatusCode]string{
	pb.StatusCode_SUCCESS:                   "Ok",
	pb.StatusCode_MIXED_STATUS:              "Mixed status",
	pb.StatusCode_FAILURE:                   "Failure",
	pb.StatusCode_TRY_AGAIN:                 "Try again",
	pb.StatusCode_NOT_IMPLEMENTED:           "Not implemented",
	pb.StatusCode_CONN_INSUFFICIENT_SCOPES:  "Insufficient scopes",
	pb.StatusCode_CONN_KEY_INVALID:          "Invalid API key",
	pb.StatusCode_CONN_KEY_NOT_FOUND:        "API key not found",
	pb.StatusCode_CONN_BAD_REQUEST_FORMAT:   "Bad request format",
	pb.StatusCode_CONN_DOES_NOT_EXIST:       "Resource does not exist",
	pb.StatusCode_CONN_INVALID_REQUEST:      "Invalid request",
	pb.StatusCode_CONN_METHOD_NOT_ALLOWED:   "Method not allowed",
	pb.StatusCode_WORKFLOW_DOES_NOT_EXIST:   "Workflow does not exist",
	pb.StatusCode_WORKFLOW_INVALID_ARGUMENT: "Invalid workflow argument",
	pb.StatusCode_INPUT_SUCCESS:             "Input successfully uploaded",
	pb.StatusCode_INPUT_PENDING:             "Input pending",
	pb.StatusCode_INPUT_FAILED:              "Input failed",
	pb.StatusCode_INPUT_DUPLICATE:           "Duplicate input",
	pb.StatusCode_INPUT_DOES_NOT_EXIST:      "Input does not exist",
	pb.StatusCode_INPUT_INVALID_ARGUMENT:    "Invalid input argument",
	pb.StatusCode_DATABASE_DUPLICATE_KEY:    "Resource already exists",
	pb.StatusCode_COLLECTOR_MISSING:         "Collector does not exist",
	pb.StatusCode_COLLECTOR_ACTIVE:          "Collector is active",
	pb.StatusCode_COLLECTOR_INACTIVE:        "Collector is paused",
	pb.StatusCode_INTERNAL_UNCATEGORIZED:    "Internal error",
}

// describe returns the fixed description of code, or its enum name when none
// is listed.
func describe(code pb.StatusCode) string {
	if d, ok := descriptions[code]; ok {
		return d
	}
	return code.String()
}

// HTTPStatus returns the HTTP status that the REST gateway sends with a
// Clarifai status code. MIXED_STATUS, a partly successful batch, maps to 200
// so that HTTP clients go on to read the per-item statuses. FAILURE, a batch
// in which every item failed, maps to 400.
func HTTPStatus(code pb.StatusCode) int {
	switch code {
	case pb.StatusCode_SUCCESS, pb.StatusCode_MIXED_STATUS:
		return http.StatusOK
	case pb.StatusCode_FAILURE,
		pb.StatusCode_CONN_BAD_REQUEST_FORMAT, pb.StatusCode_CONN_INVALID_REQUEST,
		pb.StatusCode_MODEL_INVALID_ARGUMENT, pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
		pb.StatusCode_INPUT_INVALID_ARGUMENT, pb.StatusCode_INPUT_INVALID_REQUEST,
		pb.StatusCode_PREDICT_INVALID_REQUEST:
		return http.StatusBadRequest
	case pb.StatusCode_CONN_KEY_INVALID, pb.StatusCode_CONN_KEY_NOT_FOUND,
		pb.StatusCode_CONN_CREDENTIALS_INVALID:
		return http.StatusUnauthorized
	case pb.StatusCode_CONN_INSUFFICIENT_SCOPES, pb.StatusCode_CONN_ACCOUNT_ISSUES,
		pb.StatusCode_MODEL_PERMISSION_DENIED, pb.StatusCode_WORKFLOW_PERMISSION_DENIED,
		pb.StatusCode_INPUT_PERMISSION_DENIED:
		return http.StatusForbidden
	case pb.StatusCode_CONN_DOES_NOT_EXIST, pb.StatusCode_MODEL_DOES_NOT_EXIST,
		pb.StatusCode_WORKFLOW_DOES_NOT_EXIST, pb.StatusCode_INPUT_DOES_NOT_EXIST,
		pb.StatusCode_COLLECTOR_MISSING:
		return http.StatusNotFound
	case pb.StatusCode_CONN_METHOD_NOT_ALLOWED:
		return http.StatusMethodNotAllowed
	case pb.StatusCode_DATABASE_DUPLICATE_KEY, pb.StatusCode_INPUT_DUPLICATE:
		return http.StatusConflict
	case pb.StatusCode_NOT_IMPLEMENTED:
		return http.StatusNotImplemented
	case pb.StatusCode_TRY_AGAIN:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// newStatus builds a request-level status with its HTTP status filled in.
func newStatus(code pb.StatusCode, details, reqID string, httpStatus int) *pb.Status {
	if httpStatus == 0 {
		httpStatus = HTTPStatus(code)
	}
	return &pb.Status{
		Code:           code,
		Description:    describe(code),
		Details:        details,
		ReqId:          reqID,
		HttpStatusCode: int32(httpStatus),
	}
}

// itemStatus builds the status of one item of a batch, which carries no
// request ID or HTTP status of its own.
func itemStatus(code pb.StatusCode, details string) *pb.Status {
	return &pb.Status{Code: code, Description: describe(code), Details: details}
}

// asAPIError returns err as an apiError when it is one.
func asAPIError(err error) (*apiError, bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae, true
	}
	return nil, false
}
