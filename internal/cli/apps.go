package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const appsUsage = `usage: collectord apps COMMAND [flags]

Commands:
  create --id ID [--name NAME] [--description TEXT]
  list [--page N] [--per-page N]
  get [ID]              without ID: the app of --app, else the app of an app key

They call the REST API of a running "collectord run": the address comes from
--api or $COLLECTORD_API, the API key from --key or $COLLECTORD_KEY.
Run "collectord apps COMMAND -h" for the flags of a command.
`

func appsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, appsUsage)
		return ErrUsage
	}
	switch args[0] {
	case "create":
		return appsCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return appsList(ctx, args[1:], stdout, stderr)
	case "get":
		return appsGet(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, appsUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown apps command %q\n\n%s", args[0], appsUsage)
		return ErrUsage
	}
}

// appsCreate creates one app of the key's user. It needs a personal key:
// app keys cannot create apps.
func appsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apps create", stderr)
	apiFlags := addAPIFlags(fs)
	id := fs.String("id", "", "app ID (required)")
	name := fs.String("name", "", "display name of the app")
	description := fs.String("description", "", "description of the app")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: apps create takes no arguments, got %q: give the ID with --id", ErrUsage, positional[0])
	}
	if *id == "" {
		return fmt.Errorf("%w: --id is required", ErrUsage)
	}
	client, err := apiFlags.newClient(stdout, stderr)
	if err != nil {
		return err
	}

	req := &pb.PostAppsRequest{Apps: []*pb.App{{Id: *id, Name: *name, Description: *description}}}
	resp := &pb.MultiAppResponse{}
	if err := client.call(ctx, "PostApps", http.MethodPost, client.userPath(), nil, req, resp); err != nil {
		return err
	}
	return client.printApps(resp, resp.GetApps())
}

func appsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apps list", stderr)
	apiFlags := addAPIFlags(fs)
	page := fs.Uint("page", 1, "page number, from 1")
	perPage := fs.Uint("per-page", 0, "apps per page; 0 uses the server default (128 in collectord, at most 1000)")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: apps list takes no arguments, got %q", ErrUsage, positional[0])
	}
	query, err := pageQuery(*page, *perPage)
	if err != nil {
		return err
	}
	client, err := apiFlags.newClient(stdout, stderr)
	if err != nil {
		return err
	}

	resp := &pb.MultiAppResponse{}
	if err := client.call(ctx, "ListApps", http.MethodGet, client.userPath(), query, nil, resp); err != nil {
		return err
	}
	return client.printApps(resp, resp.GetApps())
}

func appsGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apps get", stderr)
	apiFlags := addAPIFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 1 {
		return fmt.Errorf("%w: apps get takes at most one app ID, got %d arguments", ErrUsage, len(positional))
	}
	client, err := apiFlags.newClient(stdout, stderr)
	if err != nil {
		return err
	}

	id := client.app
	if len(positional) == 1 {
		id = positional[0]
	}
	// /v2/app is the app of an app key.
	path := "/v2/app"
	if id != "" {
		path = client.userPath(id)
	}

	resp := &pb.SingleAppResponse{}
	if err := client.call(ctx, "GetApp", http.MethodGet, path, nil, nil, resp); err != nil {
		return err
	}
	return client.printApps(resp, []*pb.App{resp.GetApp()})
}

// printApps prints resp as JSON or apps as a table.
func (c *apiClient) printApps(resp statusResponse, apps []*pb.App) error {
	if c.json {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tDESCRIPTION\tCREATED")
	for _, app := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n",
			app.GetId(), orDash(app.GetName()), orDash(app.GetDescription()), formatTime(app.GetCreatedAt()))
	}
	return tw.Flush()
}

// orDash keeps empty table cells visible.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
