package capture

import (
	"context"
	"errors"
	"log/slog"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// errNoCompiledWorkflow replaces the missing error of a Finder that
// returned no workflow, so that a broken Finder costs its inputs and not
// the assembler.
var errNoCompiledWorkflow = errors.New("the workflow finder returned no compiled workflow")

// findWorkflow returns the collector's compiled pre-queue workflow, or nil
// and the reason to count the collector's inputs as dropped.
func (e *Engine) findWorkflow(ctx context.Context, c *collector.Collector) (*workflow.Compiled, string) {
	if e.workflows == nil {
		// A configuration bug repeats on every predict, so it is logged
		// once and the metric counts every input.
		e.noWorkflowsOnce.Do(func() {
			e.logger.Error("capture: a collector names a pre-queue workflow, but the engine has no workflow finder, so its inputs are dropped; set Deps.Workflows",
				slog.String("user_id", c.UserID),
				slog.String("app_id", c.AppID),
				slog.String("collector_id", c.ID),
				slog.String("workflow_id", c.PreQueueWorkflowID))
		})
		return nil, reasonWorkflowsUnavailable
	}

	compiled, err := e.workflows.Find(ctx, c.UserID, c.AppID, c.PreQueueWorkflowID)
	if err == nil && (compiled == nil || compiled.Flow == nil) {
		err = errNoCompiledWorkflow
	}
	if err != nil {
		reason := reasonWorkflowError
		if errors.Is(err, workflow.ErrNotFound) {
			reason = reasonWorkflowMissing
		}
		e.workflowWarning(ctx, c, reason, err)
		return nil, reason
	}
	return compiled, ""
}

// workflowWarning logs a workflow that could not be found or run. The error
// comes from the finder or an operator, never from body bytes.
func (e *Engine) workflowWarning(ctx context.Context, c *collector.Collector, reason string, err error) {
	e.logger.LogAttrs(ctx, slog.LevelWarn, "capture: pre-queue workflow failed, so the collector's inputs are dropped",
		slog.String("user_id", c.UserID),
		slog.String("app_id", c.AppID),
		slog.String("collector_id", c.ID),
		slog.String("workflow_id", c.PreQueueWorkflowID),
		slog.String("reason", reason),
		slog.String("error", err.Error()))
}

// filteredLabels returns the outcome, operator and reason that count an
// input a workflow did not keep, and the preview drop reason.
func filteredLabels(flow *filter.Workflow, d filter.Decision) (outcome, operator, reason, preview string) {
	switch d.Reason {
	case filter.ReasonOutputFailed:
		return telemetry.OutcomeOutputFailed, "", "", previewOutputFailed
	case filter.ReasonNoConcepts:
		return telemetry.OutcomeFiltered, "", filter.ReasonNoConcepts, previewFiltered
	default:
		return telemetry.OutcomeFiltered, operatorOf(flow, d), "", previewFiltered
	}
}

// operatorOf returns the operator type of the node that dropped an input.
// Operator types are a fixed set, so they are safe as a metric label.
func operatorOf(flow *filter.Workflow, d filter.Decision) string {
	if d.Operator != "" {
		return d.Operator
	}
	for _, node := range flow.Nodes {
		if node.ID == d.NodeID {
			return node.Operator.Type()
		}
	}
	return ""
}

// tally sums the outcomes of one collector's inputs by label set, so that
// each set is added to the counters once per predict rather than per input.
type tally struct {
	entries []tallyEntry
}

type tallyEntry struct {
	outcome, operator, reason string
	n                         int
}

func (t *tally) add(outcome, operator, reason string) {
	for i := range t.entries {
		entry := &t.entries[i]
		if entry.outcome == outcome && entry.operator == operator && entry.reason == reason {
			entry.n++
			return
		}
	}
	t.entries = append(t.entries, tallyEntry{outcome: outcome, operator: operator, reason: reason, n: 1})
}

// count adds n inputs of collector c to collectord_captures_total and to the
// collector's own collectord_collector_inputs_total.
func (e *Engine) count(ctx context.Context, c *collector.Collector, outcome, operator, reason string, n int) {
	e.metrics.captures.Add(ctx, outcome, reason, n)
	e.metrics.inputs.Add(ctx, c.UserID, c.AppID, c.ID, outcome, operator, reason, n)
}
