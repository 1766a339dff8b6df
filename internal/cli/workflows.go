package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const workflowsUsage = `usage: collectord workflows COMMAND [flags]

Commands:
  create --file FILE    FILE ("-" for stdin) contains one workflow as JSON in the
                        Clarifai REST shape, {"id": ..., "nodes": [...]}, or a
                        whole request body, {"workflows": [...]}
  update --file FILE    replaces the nodes, description and metadata of the
                        workflows in FILE (same shape as create) by ID; a
                        collector that names a workflow uses the new version
                        from its next predict
  list [--page N] [--per-page N]
  get ID
  delete ID... | --all

They call the REST API of a running "collectord run": the address comes from
--api or $COLLECTORD_API, the API key from --key or $COLLECTORD_KEY.
Run "collectord workflows COMMAND -h" for the flags of a command.
`

// maxWorkflowFileBytes bounds the file that workflows create reads. The
// API's own limits on nodes and metadata are far smaller.
const maxWorkflowFileBytes = 8 << 20

func workflowsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, workflowsUsage)
		return ErrUsage
	}
	switch args[0] {
	case "create":
		return workflowsCreate(ctx, args[1:], stdout, stderr)
	case "update":
		return workflowsUpdate(ctx, args[1:], stdout, stderr)
	case "list":
		return workflowsList(ctx, args[1:], stdout, stderr)
	case "get":
		return workflowsGet(ctx, args[1:], stdout, stderr)
	case "delete":
		return workflowsDelete(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, workflowsUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown workflows command %q\n\n%s", args[0], workflowsUsage)
		return ErrUsage
	}
}

func workflowsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return workflowsWrite(ctx, "create", args, stdout, stderr)
}

func workflowsUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return workflowsWrite(ctx, "update", args, stdout, stderr)
}

// workflowsWrite posts the workflows of a file (create) or patches the
// stored ones with action overwrite (update).
func workflowsWrite(ctx context.Context, command string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("workflows "+command, stderr)
	apiFlags := addAPIFlags(fs)
	file := fs.String("file", "", `JSON file with the workflow, or "-" for stdin (required)`)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: workflows %s takes no arguments, got %q: give the workflow with --file", ErrUsage, command, positional[0])
	}
	if *file == "" {
		return fmt.Errorf("%w: --file is required", ErrUsage)
	}
	req, err := readWorkflowFile(*file)
	if err != nil {
		return err
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	resp := &pb.MultiWorkflowResponse{}
	if command == "update" {
		patch := &pb.PatchWorkflowsRequest{Workflows: req.GetWorkflows(), Action: "overwrite"}
		if err := client.call(ctx, "PatchWorkflows", http.MethodPatch, client.appPath("workflows"), nil, patch, resp); err != nil {
			return err
		}
		return client.printWorkflows(resp, resp.GetWorkflows())
	}
	if err := client.call(ctx, "PostWorkflows", http.MethodPost, client.appPath("workflows"), nil, req, resp); err != nil {
		return err
	}
	return client.printWorkflows(resp, resp.GetWorkflows())
}

// readWorkflowFile reads the workflows of a create command from a file or
// stdin. Unknown fields are rejected here, with the line and column that
// protojson names, rather than by the server.
func readWorkflowFile(name string) (*pb.PostWorkflowsRequest, error) {
	var (
		data []byte
		err  error
	)
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, maxWorkflowFileBytes+1))
	} else {
		data, err = readLimited(name, maxWorkflowFileBytes+1)
	}
	if err != nil {
		return nil, fmt.Errorf("read the workflow file: %w", err)
	}
	if len(data) > maxWorkflowFileBytes {
		return nil, fmt.Errorf("%w: the workflow file %s is larger than %d bytes", ErrUsage, name, maxWorkflowFileBytes)
	}

	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: the workflow file %s is not a JSON object: %v", ErrUsage, name, err)
	}

	req := &pb.PostWorkflowsRequest{}
	if _, ok := top["workflows"]; ok {
		if err := protojson.Unmarshal(data, req); err != nil {
			return nil, fmt.Errorf("%w: the workflow file %s: %v", ErrUsage, name, err)
		}
		return req, nil
	}
	wf := &pb.Workflow{}
	if err := protojson.Unmarshal(data, wf); err != nil {
		return nil, fmt.Errorf("%w: the workflow file %s: %v", ErrUsage, name, err)
	}
	req.Workflows = []*pb.Workflow{wf}
	return req, nil
}

// readLimited reads at most limit bytes of a file.
func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

func workflowsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("workflows list", stderr)
	apiFlags := addAPIFlags(fs)
	page := fs.Uint("page", 1, "page number, from 1")
	perPage := fs.Uint("per-page", 0, "workflows per page; 0 uses the server default (128 in collectord, at most 1000)")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: workflows list takes no arguments, got %q", ErrUsage, positional[0])
	}
	query, err := pageQuery(*page, *perPage)
	if err != nil {
		return err
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	resp := &pb.MultiWorkflowResponse{}
	if err := client.call(ctx, "ListWorkflows", http.MethodGet, client.appPath("workflows"), query, nil, resp); err != nil {
		return err
	}
	return client.printWorkflows(resp, resp.GetWorkflows())
}

func workflowsGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("workflows get", stderr)
	apiFlags := addAPIFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: workflows get takes one workflow ID, got %d arguments", ErrUsage, len(positional))
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	resp := &pb.SingleWorkflowResponse{}
	if err := client.call(ctx, "GetWorkflow", http.MethodGet, client.appPath("workflows", positional[0]), nil, nil, resp); err != nil {
		return err
	}
	return client.printWorkflows(resp, []*pb.Workflow{resp.GetWorkflow()})
}

func workflowsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("workflows delete", stderr)
	apiFlags := addAPIFlags(fs)
	all := fs.Bool("all", false, "delete every workflow of the app that no collector uses")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *all && len(ids) > 0:
		return fmt.Errorf("%w: give workflow IDs or --all, not both", ErrUsage)
	case !*all && len(ids) == 0:
		return fmt.Errorf("%w: workflows delete takes one or more workflow IDs, or --all", ErrUsage)
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	req := &pb.DeleteWorkflowsRequest{Ids: ids, DeleteAll: *all}
	resp := &pb.BaseResponse{}
	if err := client.call(ctx, "DeleteWorkflows", http.MethodDelete, client.appPath("workflows"), nil, req, resp); err != nil {
		return err
	}

	if client.json {
		return client.printJSON(resp)
	}
	if *all {
		fmt.Fprintf(stdout, "deleted all workflows of %s\n", client.appName())
		return nil
	}
	fmt.Fprintf(stdout, "deleted from %s: %s\n", client.appName(), strings.Join(ids, ", "))
	return nil
}

// printWorkflows prints resp as JSON or wfs as a table whose NODES column
// shows the chain as node:operator pairs in the order they were given.
func (c *apiClient) printWorkflows(resp statusResponse, wfs []*pb.Workflow) error {
	if c.json {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNODES\tDESCRIPTION\tCREATED")
	for _, wf := range wfs {
		nodes := make([]string, len(wf.GetNodes()))
		for i, n := range wf.GetNodes() {
			nodes[i] = n.GetId() + ":" + orDash(n.GetModel().GetModelTypeId())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n",
			wf.GetId(), orDash(strings.Join(nodes, ",")), orDash(wf.GetDescription()), formatTime(wf.GetCreatedAt()))
	}
	return tw.Flush()
}
