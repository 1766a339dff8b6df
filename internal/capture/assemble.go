package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/predict"
	"github.com/collectord/collectord/internal/telemetry"
)

// assembleSafely assembles one exchange and recovers a panic, so that one
// bad exchange costs only itself.
func (e *Engine) assembleSafely(ctx context.Context, job *finished) {
	e.queuedBytes.Add(-job.size())
	defer func() {
		if r := recover(); r != nil {
			e.metrics.assemblerPanics.Add(ctx, 1)
			e.logger.Error("capture assembler recovered from a panic; the exchange is lost",
				slog.String("request_id", job.requestID),
				slog.String("panic", fmt.Sprint(r)),
				slog.String("stack", string(debug.Stack())))
		}
	}()
	e.assemble(ctx, job)
}

// assemble parses a complete exchange, decides per collector and input, and
// offers the records to the sink.
func (e *Engine) assemble(ctx context.Context, job *finished) {
	request, err := predict.ParseRequest(job.route, job.requestBody, job.requestEncoding)
	if err != nil {
		e.countParseFailure(ctx, job, "request", err)
		return
	}
	model := collector.ModelRef{UserID: request.UserID, AppID: request.AppID, ModelID: request.ModelID, VersionID: request.VersionID}

	matches := e.recheck(ctx, job, model)
	if len(matches) == 0 {
		return
	}

	var response *predict.Response
	if job.hasResponse {
		response, err = predict.ParseResponse(job.route, job.responseBody, job.responseEncoding)
		if err != nil {
			e.countParseFailure(ctx, job, "response", err)
			return
		}
		if !predictSucceeded(response.Status) {
			e.metrics.captures.Add(ctx, telemetry.OutcomeUpstreamError, reasonResponseBody, 1)
			return
		}
		model = settleModel(model, response)
	}
	// The parsed messages hold copies of what they need.
	job.requestBody, job.responseBody = nil, nil

	for i := range matches {
		e.emit(ctx, job, request, response, model, &matches[i])
	}
}

// recheck returns the collectors of the exchange that still match now that
// the model is known from the body. It queries the finder again, so that a
// collector paused or deleted since the request headers is left out, and
// keeps only collectors seen at Begin, because the exchange's plan was made
// for those.
func (e *Engine) recheck(ctx context.Context, job *finished, model collector.ModelRef) []collector.Collector {
	current := e.collectors.Candidates(ctx, job.callerUserID, model)
	current = filterCandidates(current, job.callerUserID, model.VersionID)

	var matches []collector.Collector
	for _, c := range job.candidates {
		for i := range current {
			if current[i].UserID == c.UserID && current[i].AppID == c.AppID && current[i].ID == c.ID {
				matches = append(matches, c)
				break
			}
		}
	}
	return matches
}

// emit applies one collector's version rule, sampling, pre-queue workflow
// and output rule to the inputs of a predict, and offers a record per kept
// input. A preview collector also offers a small record per dropped input,
// so that its preview counts every outcome.
func (e *Engine) emit(ctx context.Context, job *finished, request *predict.Request, response *predict.Response, model collector.ModelRef, c *collector.Collector) {
	if !versionMatches(c, request, response) {
		return
	}
	inputs := request.Inputs
	e.count(ctx, c, telemetry.OutcomeMatched, "", "", len(inputs))
	records := newRecordBuilder(job, model, c)

	// One draw per request and collector keeps or drops all its inputs
	// together. A sample of 1 or more keeps everything without a draw.
	if c.RandomSample > 0 && c.RandomSample < 1 && e.draw() >= float64(c.RandomSample) {
		e.count(ctx, c, telemetry.OutcomeSampledOut, "", "", len(inputs))
		e.offerAllDropped(records, len(inputs), previewSampledOut)
		return
	}

	var flow *filter.Workflow
	if c.PreQueueWorkflowID != "" {
		compiled, reason := e.findWorkflow(ctx, c)
		if compiled == nil {
			e.count(ctx, c, telemetry.OutcomeDropped, "", reason, len(inputs))
			e.offerAllDropped(records, len(inputs), previewDropped)
			return
		}
		flow = compiled.Flow
		records.workflowVersion = compiled.Version
	}

	var drops tally
	logged := false
	for i, input := range inputs {
		var output *clarifaipb.Output
		if response != nil {
			output = response.OutputFor(i, input.GetId())
			if output == nil {
				drops.add(telemetry.OutcomeOutputFailed, "", "")
				e.offerDropped(records, i, previewOutputFailed)
				continue
			}
		}

		concepts := output.GetData().GetConcepts()
		if flow != nil {
			decision, err := flow.Evaluate(ctx, &filter.Item{Input: input, Output: output})
			if err != nil {
				drops.add(telemetry.OutcomeDropped, "", reasonWorkflowError)
				e.offerDropped(records, i, previewDropped)
				if !logged {
					logged = true
					e.workflowWarning(ctx, c, reasonWorkflowError, err)
				}
				continue
			}
			if !decision.Keep {
				outcome, operator, reason, preview := filteredLabels(flow, decision)
				drops.add(outcome, operator, reason)
				e.offerDropped(records, i, preview)
				continue
			}
			// What collect_outputs posts is what the workflow passed on,
			// for example the concepts a synonym mapper renamed.
			if c.CollectOutputs {
				concepts = decision.Concepts
			}
		}
		e.sink.Offer(records.kept(i, input, output, concepts))
	}

	for _, entry := range drops.entries {
		e.count(ctx, c, entry.outcome, entry.operator, entry.reason, entry.n)
	}
}

// offerAllDropped offers a drop record for each of n inputs of a preview
// collector. Other collectors send nothing for dropped inputs.
func (e *Engine) offerAllDropped(records *recordBuilder, n int, reason string) {
	if !records.c.Policy.Preview {
		return
	}
	for i := range n {
		e.sink.Offer(records.dropped(i, reason))
	}
}

// offerDropped offers the drop record of one input of a preview collector.
func (e *Engine) offerDropped(records *recordBuilder, index int, reason string) {
	if records.c.Policy.Preview {
		e.sink.Offer(records.dropped(index, reason))
	}
}

// versionMatches applies a collector's version: blank matches any version;
// otherwise it must equal the version the request named or, when the
// request named none, the version named in the response.
func versionMatches(c *collector.Collector, request *predict.Request, response *predict.Response) bool {
	switch {
	case c.Model.VersionID == "":
		return true
	case request.VersionID != "":
		return c.Model.VersionID == request.VersionID
	case response != nil:
		return c.Model.VersionID == response.ModelVersionID
	default:
		return false
	}
}

// settleModel fills the model fields the request left blank from the model
// named in the response's outputs.
func settleModel(model collector.ModelRef, response *predict.Response) collector.ModelRef {
	if model.VersionID == "" {
		model.VersionID = response.ModelVersionID
	}
	if model.UserID != "" && model.AppID != "" {
		return model
	}
	for _, output := range response.Outputs {
		answered := output.GetModel()
		if answered.GetUserId() != "" && answered.GetAppId() != "" {
			if model.UserID == "" {
				model.UserID = answered.GetUserId()
			}
			if model.AppID == "" {
				model.AppID = answered.GetAppId()
			}
			break
		}
	}
	return model
}

// predictSucceeded reports whether a response's own status allows capture.
// MIXED_STATUS means that some inputs succeeded, and each output's status
// shows which. An unset status defers to the transport status, which was a
// success.
func predictSucceeded(code clarifaipb.StatusCode) bool {
	switch code {
	case clarifaipb.StatusCode_SUCCESS, clarifaipb.StatusCode_MIXED_STATUS, clarifaipb.StatusCode_ZERO:
		return true
	default:
		return false
	}
}

// countParseFailure counts and logs a body that could not be parsed. The log
// names only the kind of failure, because parser messages may quote body
// bytes.
func (e *Engine) countParseFailure(ctx context.Context, job *finished, body string, err error) {
	outcome, kind := telemetry.OutcomeParseError, "malformed"
	switch {
	case errors.Is(err, predict.ErrUnsupportedEncoding):
		outcome, kind = telemetry.OutcomeUnsupportedEncoding, "unsupported_encoding"
	case errors.Is(err, predict.ErrTooLarge):
		outcome, kind = telemetry.OutcomeTooLarge, "decompressed_too_large"
	case errors.Is(err, predict.ErrTruncatedFrame):
		kind = "truncated_frame"
	}

	e.metrics.captures.Add(ctx, outcome, "", 1)
	e.logger.Debug("capture skipped: predict body not parsed",
		slog.String("request_id", job.requestID),
		slog.String("body", body),
		slog.String("error_kind", kind))
}
