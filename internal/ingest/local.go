package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// LocalDestination stores records as inputs of the built-in local apps.
type LocalDestination struct {
	inputs localapp.InputStore
}

var _ Destination = (*LocalDestination)(nil)

// NewLocalDestination returns a destination over an input store.
func NewLocalDestination(inputs localapp.InputStore) *LocalDestination {
	return &LocalDestination{inputs: inputs}
}

// MaxPostInputs returns MaxLocalInputsPerPost.
func (d *LocalDestination) MaxPostInputs() int { return MaxLocalInputsPerPost }

// Post inserts the records' inputs. ErrInputDuplicateID counts as
// delivered: input IDs are the record IDs, so only this record can have
// stored one. A missing app is permanent; any other store error is retried.
func (d *LocalDestination) Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result {
	inputs := make([]*clarifaipb.Input, len(recs))
	for i, rec := range recs {
		inputs[i] = InputFromRecord(rec)
	}

	errs := d.inputs.InsertInputs(ctx, dest.UserID, dest.AppID, inputs)
	if len(errs) != len(recs) {
		err := fmt.Errorf("input store returned %d results for %d inputs", len(errs), len(recs))
		return fill(len(recs), Result{Outcome: Retryable, Err: err})
	}

	results := make([]Result, len(recs))
	for i, err := range errs {
		results[i] = localResult(err)
	}
	return results
}

func localResult(err error) Result {
	switch {
	case err == nil:
		return Result{Outcome: Delivered}
	case errors.Is(err, localapp.ErrInputDuplicateID):
		return Result{Outcome: Duplicate}
	case errors.Is(err, localapp.ErrAppNotFound):
		return Result{Outcome: Permanent, Reason: ReasonAppNotFound, Err: err}
	default:
		return Result{Outcome: Retryable, Err: err}
	}
}
