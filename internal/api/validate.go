package api

import (
	"fmt"
	"strings"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Limits of IDs and lists. Clarifai documents no exact ID rule; these are
// collectord's own.
const (
	maxResourceIDLen = 48
	maxInputIDLen    = 255

	defaultPerPage = 128
	maxPerPage     = 1000

	// maxItemsPerRequest caps the items of one batch RPC; for PostInputs it
	// is Clarifai's documented limit.
	maxItemsPerRequest = 128

	// maxPolicyWindowSeconds caps the dedup and balance windows of a
	// collector policy at 30 days, because deduplication and class balance
	// must remember every admission for the length of their window.
	maxPolicyWindowSeconds = 30 * 24 * 60 * 60
	// maxPolicyCount caps the budgets and the per-concept cap of a policy. A
	// larger number is no limit in practice and more likely a typo.
	maxPolicyCount = 100_000_000
)

// checkID reports whether id is 1 to maxLen characters from [A-Za-z0-9_-].
func checkID(field, id string, maxLen int) error {
	if id == "" {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "%s is required", field)
	}
	if len(id) > maxLen {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s %q is %d characters long; the maximum is %d", field, id, len(id), maxLen)
	}
	for _, r := range id {
		if !isIDChar(r) {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST,
				"%s %q contains %q; use only letters, digits, '_' and '-'", field, id, r)
		}
	}
	return nil
}

func isIDChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// pageBounds turns page and per_page into an offset and a limit, applying
// the defaults (page 1, 128 per page) and rejecting per_page above 1000.
func pageBounds(page, perPage uint32) (offset, limit int, err error) {
	if perPage > maxPerPage {
		return 0, 0, fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"per_page %d is above the maximum %d", perPage, maxPerPage)
	}
	if perPage == 0 {
		perPage = defaultPerPage
	}
	if page == 0 {
		page = 1
	}
	return int(page-1) * int(perPage), int(perPage), nil
}

// itemProblem is the rejection of one item of a batch.
type itemProblem struct {
	index int
	id    string
	err   *apiError
}

// itemProblems collects the rejected items of an all-or-nothing batch, so
// that one response names every problem at once.
type itemProblems struct {
	field    string
	problems []itemProblem
}

func (p *itemProblems) add(index int, id string, err *apiError) {
	p.problems = append(p.problems, itemProblem{index: index, id: id, err: err})
}

// err returns nil when no item was rejected; otherwise an apiError with the
// first problem's code and details that name each item and its problem.
func (p *itemProblems) err() error {
	if len(p.problems) == 0 {
		return nil
	}

	parts := make([]string, 0, len(p.problems))
	for _, pr := range p.problems {
		name := fmt.Sprintf("%s[%d]", p.field, pr.index)
		if pr.id != "" {
			name += fmt.Sprintf(" (id %q)", pr.id)
		}
		parts = append(parts, name+": "+pr.err.details)
	}
	return &apiError{code: p.problems[0].err.code, details: strings.Join(parts, "; ")}
}

// policyField is the name of the policy in errors.
const policyField = "policy"

// checkPolicy rejects a collector policy with a count or window above its
// bound, or with only one half of the class-balance pair.
func checkPolicy(p *pb.CollectorPolicy) error {
	counts := []struct {
		name  string
		value uint32
	}{
		{"max_inputs_per_hour", p.GetMaxInputsPerHour()},
		{"max_inputs_per_day", p.GetMaxInputsPerDay()},
		{"max_inputs_per_concept", p.GetMaxInputsPerConcept()},
	}
	for _, c := range counts {
		if c.value > maxPolicyCount {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST,
				"%s.%s %d is above the maximum %d", policyField, c.name, c.value, maxPolicyCount)
		}
	}

	windows := []struct {
		name  string
		value uint32
	}{
		{"dedup_window_seconds", p.GetDedupWindowSeconds()},
		{"balance_window_seconds", p.GetBalanceWindowSeconds()},
	}
	for _, w := range windows {
		if w.value > maxPolicyWindowSeconds {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST,
				"%s.%s %d is above the maximum %d (30 days)", policyField, w.name, w.value, maxPolicyWindowSeconds)
		}
	}

	perConcept, window := p.GetMaxInputsPerConcept(), p.GetBalanceWindowSeconds()
	switch {
	case perConcept > 0 && window == 0:
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s.max_inputs_per_concept needs %s.balance_window_seconds: set the window in which the cap applies",
			policyField, policyField)
	}
	// A window without a cap is allowed: 0 turns the cap off, like every
	// other limit, and the window then does nothing.
	return nil
}
