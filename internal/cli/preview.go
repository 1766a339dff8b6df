package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// previewConcepts is how many predicted concepts a preview record shows in
// the table. The -o json output shows all of them.
const previewConcepts = 3

// collectorsPreview prints the preview of one collector: the outcome counts,
// then the newest records.
func collectorsPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors preview", stderr)
	apiFlags := addAPIFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: collectors preview takes one collector ID, got %d arguments", ErrUsage, len(positional))
	}
	// The preview has no short path without /users/{user_id}/apps/{app_id}.
	if apiFlags.app == "" {
		return fmt.Errorf("%w: collectors preview needs --app, because its REST path names the app", ErrUsage)
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	path := client.appPath("collectors", positional[0], "preview")
	resp := &pb.SingleCollectorPreviewResponse{}
	if err := client.call(ctx, "GetCollectorPreview", http.MethodGet, path, nil, nil, resp); err != nil {
		return err
	}
	if client.json {
		return client.printJSON(resp)
	}
	return client.printPreview(resp.GetPreview())
}

// printPreview writes two tables separated by a blank line: OUTCOME and
// COUNT, then one row per record, newest first.
func (c *apiClient) printPreview(p *pb.CollectorPreview) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTCOME\tCOUNT")
	for _, count := range p.GetCounts() {
		fmt.Fprintf(tw, "%s\t%d\n", count.GetOutcome(), count.GetCount())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)

	tw = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORD\tCAPTURED\tCALLER\tVERSION\tCONCEPTS")
	for _, r := range p.GetRecords() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n",
			r.GetRecordId(), formatTime(r.GetCapturedAt()), orDash(r.GetCallerUserId()),
			r.GetCollectorVersion(), conceptsText(r.GetOutputConcepts()))
	}
	return tw.Flush()
}

// conceptsText returns the first previewConcepts concepts as id=value.
func conceptsText(concepts []*pb.Concept) string {
	if len(concepts) == 0 {
		return "-"
	}
	parts := make([]string, 0, previewConcepts)
	for i, concept := range concepts {
		if i == previewConcepts {
			parts = append(parts, fmt.Sprintf("+%d", len(concepts)-previewConcepts))
			break
		}
		parts = append(parts, concept.GetId()+"="+strconv.FormatFloat(float64(concept.GetValue()), 'g', 3, 32))
	}
	return strings.Join(parts, ",")
}
