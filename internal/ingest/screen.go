package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/collectord/collectord/filter"
	admissions "github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// admissionRetention is how long the Ledger keeps an admission: one day
// longer than the longest dedup or balance window a policy may set (30 days).
const admissionRetention = 31 * 24 * time.Hour

// needsScreening reports whether rec uses a post-queue workflow, a policy
// limit or preview mode. Records that use none of them skip the screening
// stage.
func needsScreening(rec *capturepb.Record) bool {
	return rec.GetPreviewDropReason() != "" || isPreview(rec) ||
		rec.GetPostQueueWorkflowId() != "" || hasLimits(rec.GetPolicy())
}

// isPreview reports whether rec belongs to a preview collector, which
// ingests nothing.
func isPreview(rec *capturepb.Record) bool {
	return rec.GetPreview() || rec.GetPolicy().GetPreview() || rec.GetPreviewDropReason() != ""
}

// hasLimits reports whether p sets a budget, a dedup window or a class cap.
// A class cap needs both its count and its window.
func hasLimits(p *clarifaipb.CollectorPolicy) bool {
	return p.GetMaxInputsPerHour() > 0 || p.GetMaxInputsPerDay() > 0 || p.GetDedupWindowSeconds() > 0 ||
		(p.GetMaxInputsPerConcept() > 0 && p.GetBalanceWindowSeconds() > 0)
}

// policyFromProto converts the policy a record carries.
func policyFromProto(p *clarifaipb.CollectorPolicy) collector.Policy {
	return collector.Policy{
		MaxPerHour:    int(p.GetMaxInputsPerHour()),
		MaxPerDay:     int(p.GetMaxInputsPerDay()),
		DedupWindow:   time.Duration(p.GetDedupWindowSeconds()) * time.Second,
		MaxPerConcept: int(p.GetMaxInputsPerConcept()),
		BalanceWindow: time.Duration(p.GetBalanceWindowSeconds()) * time.Second,
		Preview:       p.GetPreview(),
	}
}

// inputsLabels are the labels of one collectord_collector_inputs_total
// count.
type inputsLabels struct {
	outcome, operator, reason string
}

// previewItem is a record settled together with the collector's preview.
type previewItem struct {
	it item
	// labels count the record in collectord_collector_inputs_total. A zero
	// outcome counts nothing, which is right for records the sidecar dropped.
	labels inputsLabels
}

// groupScreen screens one collector group of a fetched batch.
type groupScreen struct {
	w   *Workers
	ref DestinationRef

	// counts are the collector_inputs counts of records already settled.
	counts map[inputsLabels]int

	// previewCounts and previewItems are what the group adds to the
	// collector's preview. Their records are settled once AddPreview
	// stored them.
	previewCounts map[string]int64
	previewItems  []previewItem
}

// screen applies the post-queue workflow, the admission policy and preview
// mode to one collector group. It settles every record it does not return
// and returns the records to post, in their original order. A group in
// which no record uses these features is returned as it is, without
// allocations or store calls.
func (w *Workers) screen(ctx context.Context, ref DestinationRef, items []item) []item {
	if !slices.ContainsFunc(items, func(it item) bool { return needsScreening(it.rec) }) {
		return items
	}

	// NOTE: a record that comes back after a failed post, or after an open
	// breaker deferred it, is screened again. Its post-queue workflow runs
	// again, with new remote-model calls and new random-sample draws, while
	// the Ledger admits its record ID again without counting it twice.
	s := &groupScreen{w: w, ref: ref}
	items = s.rejectUnavailable(ctx, items)
	items = s.takeDropRecords(items)
	items = s.runPostQueue(ctx, items)
	items = s.admit(ctx, items)
	items = s.takePreviews(items)

	s.flushPreview(ctx)
	s.flushCounts(ctx)
	return items
}

// rejectUnavailable dead-letters the records that need a collaborator the
// workers were started without. That is a wiring mistake, so retrying would
// not help, and the dead letter keeps the record for a replay.
func (s *groupScreen) rejectUnavailable(ctx context.Context, items []item) []item {
	var rejected int
	var lastReason string
	kept := items[:0]
	for _, it := range items {
		reason := s.missingCollaborator(it.rec)
		if reason == "" {
			kept = append(kept, it)
			continue
		}
		rejected++
		lastReason = reason
		s.w.fail(ctx, it, reason, errCollaboratorMissing)
	}

	if rejected > 0 {
		s.w.logger.Error("records need a feature the ingest workers were started without; they were dead-lettered",
			"user_id", s.ref.UserID, "app_id", s.ref.AppID, "collector_id", s.ref.CollectorID,
			"records", rejected, "reason", lastReason)
	}
	return kept
}

// errCollaboratorMissing is the cause of records rejected by rejectUnavailable.
var errCollaboratorMissing = errors.New("the ingest workers have no workflow finder, ledger or preview store for this record")

// missingCollaborator returns the dead-letter reason when rec needs a
// collaborator that is nil, or "".
func (s *groupScreen) missingCollaborator(rec *capturepb.Record) string {
	if isPreview(rec) && s.w.previews == nil {
		return ReasonPreviewUnavailable
	}
	if rec.GetPreviewDropReason() != "" {
		// A drop record only adds to the preview counts.
		return ""
	}
	if rec.GetPostQueueWorkflowId() != "" && s.w.workflows == nil {
		return ReasonWorkflowsUnavailable
	}
	if hasLimits(rec.GetPolicy()) && s.w.ledger == nil {
		return ReasonAdmissionUnavailable
	}
	return ""
}

// takeDropRecords moves the records of inputs the sidecar dropped for a
// preview collector into the preview counts.
func (s *groupScreen) takeDropRecords(items []item) []item {
	kept := items[:0]
	for _, it := range items {
		reason := it.rec.GetPreviewDropReason()
		if reason == "" {
			kept = append(kept, it)
			continue
		}
		s.addPreview(reason, previewItem{it: it})
	}
	return kept
}

// evaluation is the post-queue result of one record.
type evaluation struct {
	decision filter.Decision
	err      error
	// reason is the dead-letter reason used if err persists until the last
	// allowed delivery.
	reason string
}

// runPostQueue evaluates the post-queue workflow of each record that names
// one. Dropped records are settled, and failed evaluations are retried like
// a retryable delivery: an error never drops a record.
func (s *groupScreen) runPostQueue(ctx context.Context, items []item) []item {
	if !slices.ContainsFunc(items, func(it item) bool { return it.rec.GetPostQueueWorkflowId() != "" }) {
		return items
	}

	evalCtx, cancel := context.WithTimeout(ctx, s.w.cfg.PostTimeout)
	defer cancel()
	results := s.evaluate(evalCtx, items)

	var failed int
	var lastFailure evaluation
	kept := items[:0]
	for i, it := range items {
		if it.rec.GetPostQueueWorkflowId() == "" {
			kept = append(kept, it)
			continue
		}

		r := results[i]
		switch {
		case r.err != nil:
			failed++
			lastFailure = r
			s.w.retry(ctx, it, Result{Outcome: Retryable, Reason: r.reason, RetryAfter: remoteRetryAfter(r.err), Err: r.err})
		case r.decision.Keep:
			kept = append(kept, it)
		default:
			s.drop(ctx, it, filteredLabels(r.decision), telemetry.OutcomeFiltered)
		}
	}

	if failed > 0 {
		s.w.logger.Warn("post-queue workflow failed, will retry",
			"user_id", s.ref.UserID, "app_id", s.ref.AppID, "collector_id", s.ref.CollectorID,
			"records", failed, "reason", lastFailure.reason, "error", lastFailure.err)
	}
	return kept
}

// evaluate runs the post-queue workflows of items, at most
// PostQueueConcurrency at a time, and returns one evaluation per item
// (zero for items without a workflow).
func (s *groupScreen) evaluate(ctx context.Context, items []item) []evaluation {
	flows := map[string]compiledLookup{}
	results := make([]evaluation, len(items))
	sem := make(chan struct{}, s.w.cfg.PostQueueConcurrency)
	var wg sync.WaitGroup

	for i, it := range items {
		id := it.rec.GetPostQueueWorkflowId()
		if id == "" {
			continue
		}

		lookup, seen := flows[id]
		if !seen {
			lookup = s.findWorkflow(ctx, id)
			flows[id] = lookup
		}
		if lookup.err != nil {
			results[i] = evaluation{err: lookup.err, reason: lookup.reason}
			continue
		}

		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = evaluateRecord(ctx, lookup.flow, it.rec)
		})
	}

	wg.Wait()
	return results
}

// compiledLookup is the result of finding one workflow.
type compiledLookup struct {
	flow   *filter.Workflow
	err    error
	reason string
}

// findWorkflow finds a post-queue workflow of the group's app.
func (s *groupScreen) findWorkflow(ctx context.Context, id string) compiledLookup {
	compiled, err := s.w.workflows.Find(ctx, s.ref.UserID, s.ref.AppID, id)
	switch {
	case errors.Is(err, workflow.ErrNotFound):
		return compiledLookup{err: fmt.Errorf("post-queue workflow %q: %w", id, err), reason: ReasonWorkflowMissing}
	case err != nil:
		return compiledLookup{err: fmt.Errorf("post-queue workflow %q: %w", id, err), reason: ReasonPostQueueFailed}
	case compiled == nil || compiled.Flow == nil:
		return compiledLookup{err: fmt.Errorf("post-queue workflow %q: the finder returned no compiled workflow", id), reason: ReasonPostQueueFailed}
	}
	return compiledLookup{flow: compiled.Flow}
}

// evaluateRecord runs flow on the record's input and recorded concepts. A
// panicking operator fails this record instead of the process, so that a
// bad workflow ends in dead letters and not in a crash loop.
func evaluateRecord(ctx context.Context, flow *filter.Workflow, rec *capturepb.Record) (result evaluation) {
	defer func() {
		if p := recover(); p != nil {
			result = evaluation{err: fmt.Errorf("post-queue workflow %q panicked: %v", rec.GetPostQueueWorkflowId(), p), reason: ReasonPostQueueFailed}
		}
	}()

	decision, err := flow.EvaluateInput(ctx, &filter.Item{Input: rec.GetInput()}, rec.GetOutputConcepts())
	if err != nil {
		return evaluation{err: fmt.Errorf("post-queue workflow %q: %w", rec.GetPostQueueWorkflowId(), err), reason: ReasonPostQueueFailed}
	}
	return evaluation{decision: decision}
}

// remoteRetryAfter returns the delay a remote model requested, or 0.
func remoteRetryAfter(err error) time.Duration {
	if remote, ok := errors.AsType[*filter.RemoteError](err); ok {
		return remote.RetryAfter
	}
	return 0
}

// filteredLabels labels a record the workflow dropped with the operator that
// dropped it. A drop without a node (no concepts to start from) names the
// filter's reason instead.
func filteredLabels(d filter.Decision) inputsLabels {
	if d.Operator != "" {
		return inputsLabels{outcome: telemetry.OutcomeFiltered, operator: d.Operator}
	}
	return inputsLabels{outcome: telemetry.OutcomeFiltered, reason: d.Reason}
}

// admit calls Ledger.Admit once for the group, with the records whose
// policy sets a limit. A group with several collector versions is judged
// under the newest policy among them. A Ledger error retries the
// candidates like a retryable delivery.
func (s *groupScreen) admit(ctx context.Context, items []item) []item {
	var candidates []admissions.Candidate
	var policy *clarifaipb.CollectorPolicy
	var version int64
	for _, it := range items {
		if !hasLimits(it.rec.GetPolicy()) {
			continue
		}
		candidates = append(candidates, admissions.Candidate{
			RecordID:     it.rec.GetId(),
			ContentHash:  it.rec.GetContentHash(),
			TopConceptID: it.rec.GetTopConceptId(),
		})
		if policy == nil || it.rec.GetCollectorVersion() > version {
			policy, version = it.rec.GetPolicy(), it.rec.GetCollectorVersion()
		}
	}
	if len(candidates) == 0 {
		return items
	}

	reasons, err := s.askLedger(ctx, policyFromProto(policy), candidates)
	if err != nil {
		s.w.logger.Warn("admission failed, will retry",
			"user_id", s.ref.UserID, "app_id", s.ref.AppID, "collector_id", s.ref.CollectorID,
			"records", len(candidates), "error", err)
	}

	next := 0
	kept := items[:0]
	for _, it := range items {
		if !hasLimits(it.rec.GetPolicy()) {
			kept = append(kept, it)
			continue
		}
		if err != nil {
			s.w.retry(ctx, it, Result{Outcome: Retryable, Reason: ReasonAdmissionFailed, Err: err})
			continue
		}

		reason := reasons[next]
		next++
		if reason == "" {
			kept = append(kept, it)
			continue
		}
		s.drop(ctx, it, refusalLabels(reason), reason)
	}
	return kept
}

// askLedger calls Ledger.Admit and checks that it returned one known
// reason or "" per candidate.
func (s *groupScreen) askLedger(ctx context.Context, p collector.Policy, candidates []admissions.Candidate) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.w.cfg.PostTimeout)
	defer cancel()

	ref := admissions.Ref{UserID: s.ref.UserID, AppID: s.ref.AppID, CollectorID: s.ref.CollectorID}
	reasons, err := s.w.ledger.Admit(ctx, ref, p, time.Now(), candidates)
	if err != nil {
		return nil, fmt.Errorf("admit %d records: %w", len(candidates), err)
	}
	if len(reasons) != len(candidates) {
		return nil, fmt.Errorf("admit: the ledger returned %d decisions for %d records", len(reasons), len(candidates))
	}
	for _, reason := range reasons {
		if reason != "" && refusalLabels(reason).outcome == "" {
			return nil, fmt.Errorf("admit: the ledger returned the unknown reason %q", reason)
		}
	}
	return reasons, nil
}

// refusalLabels maps a Ledger reason to its collector_inputs labels, or to
// zero labels for an unknown reason.
func refusalLabels(reason string) inputsLabels {
	switch reason {
	case admissions.ReasonOverHourBudget, admissions.ReasonOverDayBudget:
		return inputsLabels{outcome: telemetry.OutcomeOverBudget, reason: reason}
	case admissions.ReasonDuplicate:
		return inputsLabels{outcome: telemetry.OutcomeDeduplicated}
	case admissions.ReasonClassCapped:
		return inputsLabels{outcome: telemetry.OutcomeClassCapped}
	}
	return inputsLabels{}
}

// takePreviews moves the preview records that passed the workflow and
// admission into the preview as kept.
func (s *groupScreen) takePreviews(items []item) []item {
	kept := items[:0]
	for _, it := range items {
		if !isPreview(it.rec) {
			kept = append(kept, it)
			continue
		}
		s.addPreview(PreviewOutcomeKept, previewItem{it: it, labels: inputsLabels{outcome: telemetry.OutcomePreviewed}})
	}
	return kept
}

// drop settles a record the collector does not keep. A preview record waits
// to be counted in the preview under previewOutcome. Any other record is
// acknowledged and counted at once.
func (s *groupScreen) drop(ctx context.Context, it item, labels inputsLabels, previewOutcome string) {
	if isPreview(it.rec) {
		s.addPreview(previewOutcome, previewItem{it: it, labels: labels})
		return
	}

	s.w.ackScreened(ctx, it)
	s.count(labels)
}

func (s *groupScreen) addPreview(outcome string, p previewItem) {
	if s.previewCounts == nil {
		s.previewCounts = map[string]int64{}
	}
	s.previewCounts[outcome]++
	s.previewItems = append(s.previewItems, p)
}

func (s *groupScreen) count(labels inputsLabels) {
	if labels.outcome == "" {
		return
	}
	if s.counts == nil {
		s.counts = map[inputsLabels]int{}
	}
	s.counts[labels]++
}

// flushPreview stores the group's preview counts and newest kept records
// with one AddPreview call, then acknowledges their records. When the store
// fails, every one of those records is retried like a retryable delivery,
// so no count is lost.
func (s *groupScreen) flushPreview(ctx context.Context) {
	if len(s.previewItems) == 0 {
		return
	}

	storeCtx, cancel := context.WithTimeout(ctx, s.w.cfg.PostTimeout)
	ref := admissions.Ref{UserID: s.ref.UserID, AppID: s.ref.AppID, CollectorID: s.ref.CollectorID}
	err := s.w.previews.AddPreview(storeCtx, ref, s.previewCounts, s.newestPreviewRecords(), admissions.DefaultPreviewRecords)
	cancel()

	if err != nil {
		s.w.logger.Warn("storing the collector preview failed, will retry",
			"user_id", s.ref.UserID, "app_id", s.ref.AppID, "collector_id", s.ref.CollectorID,
			"records", len(s.previewItems), "error", err)
		for _, p := range s.previewItems {
			s.w.retry(ctx, p.it, Result{Outcome: Retryable, Reason: ReasonPreviewFailed, Err: err})
		}
		return
	}

	for _, p := range s.previewItems {
		s.w.ackScreened(ctx, p.it)
		s.count(p.labels)
	}
}

// newestPreviewRecords returns the kept preview records, newest first by
// capture time (later in the stream first on a tie), at most
// DefaultPreviewRecords of them.
func (s *groupScreen) newestPreviewRecords() []*clarifaipb.PreviewRecord {
	var kept []*capturepb.Record
	for i := len(s.previewItems) - 1; i >= 0; i-- {
		if p := s.previewItems[i]; p.labels.outcome == telemetry.OutcomePreviewed {
			kept = append(kept, p.it.rec)
		}
	}
	slices.SortStableFunc(kept, func(a, b *capturepb.Record) int {
		return b.GetCapturedAt().AsTime().Compare(a.GetCapturedAt().AsTime())
	})

	kept = kept[:min(len(kept), admissions.DefaultPreviewRecords)]
	records := make([]*clarifaipb.PreviewRecord, len(kept))
	for i, rec := range kept {
		records[i] = previewRecord(rec)
	}
	return records
}

// previewRecord returns what GetCollectorPreview shows of rec: the input as
// the destination would have received it.
func previewRecord(rec *capturepb.Record) *clarifaipb.PreviewRecord {
	return &clarifaipb.PreviewRecord{
		RecordId:         rec.GetId(),
		CapturedAt:       rec.GetCapturedAt(),
		RequestId:        rec.GetRequestId(),
		CallerUserId:     rec.GetCallerUserId(),
		Input:            InputFromRecord(rec),
		OutputConcepts:   rec.GetOutputConcepts(),
		CollectorVersion: rec.GetCollectorVersion(),
	}
}

// flushCounts adds the group's settled records to
// collectord_collector_inputs_total.
func (s *groupScreen) flushCounts(ctx context.Context) {
	for labels, n := range s.counts {
		s.w.inputs.Add(ctx, s.ref.UserID, s.ref.AppID, s.ref.CollectorID, labels.outcome, labels.operator, labels.reason, n)
	}
}

// ackScreened settles a record the screening stage settled without a post.
func (w *Workers) ackScreened(ctx context.Context, it item) {
	w.done(ctx, it)
}

// pruneAdmissions removes expired admissions from the Ledger at start and
// then every PruneInterval, until Close.
func (w *Workers) pruneAdmissions() {
	defer w.wg.Done()

	ticker := time.NewTicker(w.cfg.PruneInterval)
	defer ticker.Stop()
	for {
		w.pruneOnce(w.runCtx)
		select {
		case <-w.stop:
			return
		case <-ticker.C:
		}
	}
}

func (w *Workers) pruneOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	removed, err := w.ledger.PruneAdmissions(ctx, time.Now().Add(-admissionRetention))
	if err != nil {
		w.logger.Error("pruning expired admissions failed, will retry",
			"retry_in", w.cfg.PruneInterval, "error", err)
		return
	}
	if removed > 0 {
		w.logger.Info("pruned expired admissions", "removed", removed)
	}
}
