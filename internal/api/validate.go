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
