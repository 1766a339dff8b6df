package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const collectorsUsage = `usage: collectord collectors COMMAND [flags]

Commands:
  create --id ID --model-user USER --model-app APP --model MODEL [flags]
  list [--page N] [--per-page N]
  get ID
  update ID [flags]     change the fields whose flags are given, keep the rest
  pause ID...           stop collecting (status COLLECTOR_INACTIVE)
  resume ID...          collect again (status COLLECTOR_ACTIVE)
  delete ID... | --all
  preview ID            outcome counts and the newest records of the collector

Policy flags of create and update: --max-per-hour N, --max-per-day N,
--dedup-window DURATION, --max-per-concept N with --balance-window DURATION,
--preview. 0 turns a limit off.

They call the REST API of a running "collectord run": the address comes from
--api or $COLLECTORD_API, the API key from --key or $COLLECTORD_KEY, and the
post-inputs key of create from --post-inputs-key or $COLLECTORD_POST_INPUTS_KEY.
Run "collectord collectors COMMAND -h" for the flags of a command.
`

func collectorsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, collectorsUsage)
		return ErrUsage
	}
	switch args[0] {
	case "create":
		return collectorsCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return collectorsList(ctx, args[1:], stdout, stderr)
	case "get":
		return collectorsGet(ctx, args[1:], stdout, stderr)
	case "update":
		return collectorsUpdate(ctx, args[1:], stdout, stderr)
	case "pause":
		return collectorsSetStatus(ctx, "pause", pb.StatusCode_COLLECTOR_INACTIVE, args[1:], stdout, stderr)
	case "resume":
		return collectorsSetStatus(ctx, "resume", pb.StatusCode_COLLECTOR_ACTIVE, args[1:], stdout, stderr)
	case "delete":
		return collectorsDelete(ctx, args[1:], stdout, stderr)
	case "preview":
		return collectorsPreview(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, collectorsUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown collectors command %q\n\n%s", args[0], collectorsUsage)
		return ErrUsage
	}
}

// collectorFlags are the flags that set fields of a collector, shared by
// create and update.
type collectorFlags struct {
	description    string
	modelUser      string
	modelApp       string
	model          string
	modelVersion   string
	caller         string
	sample         float64
	collectOutputs bool
	preQueue       string
	postQueue      string
	postInputsKey  string

	maxPerHour    uint
	maxPerDay     uint
	dedupWindow   time.Duration
	maxPerConcept uint
	balanceWindow time.Duration
	preview       bool
}

func addCollectorFlags(fs *flag.FlagSet) *collectorFlags {
	f := &collectorFlags{}
	fs.StringVar(&f.description, "description", "", "description of the collector")
	fs.StringVar(&f.modelUser, "model-user", "", "user ID of the source model")
	fs.StringVar(&f.modelApp, "model-app", "", "app ID of the source model")
	fs.StringVar(&f.model, "model", "", "model ID of the source model")
	fs.StringVar(&f.modelVersion, "model-version", "", "model version ID; empty matches every version")
	fs.StringVar(&f.caller, "caller", "", "collect only the predicts of this user ID; empty collects every caller's")
	fs.Float64Var(&f.sample, "sample", 0, "fraction in (0,1] of matching predicts to keep; 0 means no sampling step")
	fs.BoolVar(&f.collectOutputs, "collect-outputs", false, "also store the predicted concepts with each input")
	fs.StringVar(&f.preQueue, "pre-queue-workflow", "", "ID of the workflow that filters predicts before the queue")
	fs.StringVar(&f.postQueue, "post-queue-workflow", "", "ID of the workflow run on inputs after the queue")
	fs.StringVar(&f.postInputsKey, "post-inputs-key", "",
		"API key with scope Inputs_Add on the app, used to store the inputs (default $"+envPostInputsKey+
			"; prefer the environment variable, because flags show in the process list)")

	fs.UintVar(&f.maxPerHour, "max-per-hour", 0, "keep at most this many inputs per rolling hour; 0 is no cap")
	fs.UintVar(&f.maxPerDay, "max-per-day", 0, "keep at most this many inputs per rolling day; 0 is no cap")
	fs.DurationVar(&f.dedupWindow, "dedup-window", 0,
		"drop an input whose content equals one kept within this duration, such as 10m; 0 turns deduplication off")
	fs.UintVar(&f.maxPerConcept, "max-per-concept", 0,
		"keep at most this many inputs per predicted top concept within --balance-window; 0 is no cap")
	fs.DurationVar(&f.balanceWindow, "balance-window", 0, "the window of --max-per-concept, such as 24h")
	fs.BoolVar(&f.preview, "preview", false,
		"count what the collector would keep and store the newest records for \"collectors preview\", but ingest nothing")
	return f
}

// set copies the value of the flag name into col and reports whether the
// flag is a collector field.
func (f *collectorFlags) set(col *pb.Collector, name string) bool {
	src := sourceOf(col)
	switch name {
	case "description":
		col.Description = f.description
	case "model-user":
		src.ModelUserId = f.modelUser
	case "model-app":
		src.ModelAppId = f.modelApp
	case "model":
		src.ModelId = f.model
	case "model-version":
		src.ModelVersionId = f.modelVersion
	case "caller":
		src.CallerUserId = f.caller
	case "sample":
		col.PreQueueRandomSample = float32(f.sample)
	case "collect-outputs":
		col.CollectOutputs = f.collectOutputs
	case "pre-queue-workflow":
		col.PreQueueWorkflowId = f.preQueue
	case "post-queue-workflow":
		col.PostQueueWorkflowId = f.postQueue
	case "post-inputs-key":
		src.PostInputsKeyId = f.postInputsKey
	case "max-per-hour":
		policyOf(col).MaxInputsPerHour = uint32(f.maxPerHour)
	case "max-per-day":
		policyOf(col).MaxInputsPerDay = uint32(f.maxPerDay)
	case "dedup-window":
		policyOf(col).DedupWindowSeconds = uint32(f.dedupWindow / time.Second)
	case "max-per-concept":
		policyOf(col).MaxInputsPerConcept = uint32(f.maxPerConcept)
	case "balance-window":
		policyOf(col).BalanceWindowSeconds = uint32(f.balanceWindow / time.Second)
	case "preview":
		policyOf(col).Preview = f.preview
	default:
		return false
	}
	return true
}

// policyOf returns the policy of col, creating it when absent.
func policyOf(col *pb.Collector) *pb.CollectorPolicy {
	if col.Policy == nil {
		col.Policy = &pb.CollectorPolicy{}
	}
	return col.Policy
}

// checkPolicyFlags rejects policy values that the API cannot carry: counts
// above 32 bits, and windows that are negative, not whole seconds or above
// 32 bits of seconds. The API checks the rest.
func (f *collectorFlags) checkPolicyFlags() error {
	counts := []struct {
		flag  string
		value uint
	}{
		{"--max-per-hour", f.maxPerHour},
		{"--max-per-day", f.maxPerDay},
		{"--max-per-concept", f.maxPerConcept},
	}
	for _, c := range counts {
		if c.value > math.MaxUint32 {
			return fmt.Errorf("%w: %s %d is above %d", ErrUsage, c.flag, c.value, uint64(math.MaxUint32))
		}
	}

	windows := []struct {
		flag  string
		value time.Duration
	}{
		{"--dedup-window", f.dedupWindow},
		{"--balance-window", f.balanceWindow},
	}
	for _, w := range windows {
		switch {
		case w.value < 0:
			return fmt.Errorf("%w: %s %s is negative", ErrUsage, w.flag, w.value)
		case w.value%time.Second != 0:
			return fmt.Errorf("%w: %s %s is not a whole number of seconds", ErrUsage, w.flag, w.value)
		case w.value/time.Second > math.MaxUint32:
			return fmt.Errorf("%w: %s %s is too long", ErrUsage, w.flag, w.value)
		}
	}
	return nil
}

// sourceOf returns the model source of col, creating it when absent.
func sourceOf(col *pb.Collector) *pb.APIPostModelOutputsCollectorSource {
	if col.CollectorSource == nil {
		col.CollectorSource = &pb.CollectorSource{}
	}
	if col.CollectorSource.ApiPostModelOutputsCollectorSource == nil {
		col.CollectorSource.ApiPostModelOutputsCollectorSource = &pb.APIPostModelOutputsCollectorSource{}
	}
	return col.CollectorSource.ApiPostModelOutputsCollectorSource
}

// newAppClient returns a client for a command on the resources of one app,
// such as collectors or workflows. The long paths name a user only together
// with an app.
func newAppClient(f *apiFlags, stdout, stderr io.Writer) (*apiClient, error) {
	if f.app == "" && f.user != "" && f.user != "me" {
		return nil, fmt.Errorf("%w: --user %q needs --app, because without --app the key's own user and app apply", ErrUsage, f.user)
	}
	return f.newClient(stdout, stderr)
}

func collectorsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors create", stderr)
	apiFlags := addAPIFlags(fs)
	id := fs.String("id", "", "collector ID (required)")
	fields := addCollectorFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: collectors create takes no arguments, got %q: give the ID with --id", ErrUsage, positional[0])
	}

	postInputsKey := firstNonEmpty(fields.postInputsKey, os.Getenv(envPostInputsKey))
	if err := checkCreateFlags(*id, fields, postInputsKey); err != nil {
		return err
	}
	if err := fields.checkPolicyFlags(); err != nil {
		return err
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}
	client.secrets = append(client.secrets, postInputsKey)

	// Only the policy flags given make a policy, so a collector created
	// without them has none.
	col := &pb.Collector{Id: *id}
	fs.VisitAll(func(fl *flag.Flag) {
		if !isPolicyFlag(fl.Name) {
			fields.set(col, fl.Name)
		}
	})
	fs.Visit(func(fl *flag.Flag) {
		if isPolicyFlag(fl.Name) {
			fields.set(col, fl.Name)
		}
	})
	sourceOf(col).PostInputsKeyId = postInputsKey

	req := &pb.PostCollectorsRequest{Collectors: []*pb.Collector{col}}
	resp := &pb.MultiCollectorResponse{}
	if err := client.call(ctx, "PostCollectors", http.MethodPost, client.appPath("collectors"), nil, req, resp); err != nil {
		return err
	}
	return client.printCollectors(resp, resp.GetCollectors())
}

func isPolicyFlag(name string) bool {
	switch name {
	case "max-per-hour", "max-per-day", "dedup-window", "max-per-concept", "balance-window", "preview":
		return true
	}
	return false
}

// checkCreateFlags rejects a create command without the fields that the API
// requires, before any request.
func checkCreateFlags(id string, fields *collectorFlags, postInputsKey string) error {
	required := []struct{ flag, value string }{
		{"--id", id},
		{"--model-user", fields.modelUser},
		{"--model-app", fields.modelApp},
		{"--model", fields.model},
	}
	for _, r := range required {
		if r.value == "" {
			return fmt.Errorf("%w: %s is required", ErrUsage, r.flag)
		}
	}
	if postInputsKey == "" {
		return fmt.Errorf("%w: no post-inputs key: set %s or --post-inputs-key to an API key with scope Inputs_Add on the app",
			ErrUsage, envPostInputsKey)
	}
	return checkSecret("the post-inputs key", postInputsKey)
}

func collectorsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors list", stderr)
	apiFlags := addAPIFlags(fs)
	page := fs.Uint("page", 1, "page number, from 1")
	perPage := fs.Uint("per-page", 0, "collectors per page; 0 uses the server default (128 in collectord, at most 1000)")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: collectors list takes no arguments, got %q", ErrUsage, positional[0])
	}
	query, err := pageQuery(*page, *perPage)
	if err != nil {
		return err
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	resp := &pb.MultiCollectorResponse{}
	if err := client.call(ctx, "ListCollectors", http.MethodGet, client.appPath("collectors"), query, nil, resp); err != nil {
		return err
	}
	return client.printCollectors(resp, resp.GetCollectors())
}

// pageQuery returns the query parameters page and per_page of a list
// request. A zero value is left out, so the server default applies.
func pageQuery(page, perPage uint) (url.Values, error) {
	if page == 0 {
		return nil, fmt.Errorf("%w: --page starts at 1", ErrUsage)
	}
	if page > math.MaxUint32 || perPage > math.MaxUint32 {
		return nil, fmt.Errorf("%w: --page and --per-page must be below %d", ErrUsage, uint64(math.MaxUint32)+1)
	}
	query := url.Values{}
	query.Set("page", strconv.FormatUint(uint64(page), 10))
	if perPage > 0 {
		query.Set("per_page", strconv.FormatUint(uint64(perPage), 10))
	}
	return query, nil
}

func collectorsGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors get", stderr)
	apiFlags := addAPIFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: collectors get takes one collector ID, got %d arguments", ErrUsage, len(positional))
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	resp, err := client.getCollector(ctx, positional[0])
	if err != nil {
		return err
	}
	return client.printCollectors(resp, []*pb.Collector{resp.GetCollector()})
}

func (c *apiClient) getCollector(ctx context.Context, id string) (*pb.SingleCollectorResponse, error) {
	resp := &pb.SingleCollectorResponse{}
	err := c.call(ctx, "GetCollector", http.MethodGet, c.appPath("collectors", id), nil, nil, resp)
	return resp, err
}

// collectorsUpdate reads the collector, applies the flags that were given
// and writes it back with PatchCollectors, action overwrite. The read
// collector carries a masked post-inputs key, and the API keeps the stored
// key when it gets the masked value back.
func collectorsUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors update", stderr)
	apiFlags := addAPIFlags(fs)
	fields := addCollectorFlags(fs)
	keyFromEnv := fs.Bool("post-inputs-key-from-env", false, "replace the post-inputs key with $"+envPostInputsKey)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: collectors update takes one collector ID, got %d arguments", ErrUsage, len(positional))
	}

	changed := visitedFields(fs, fields)
	newKey, err := updatedPostInputsKey(fields, changed, *keyFromEnv)
	if err != nil {
		return err
	}
	if len(changed) == 0 && newKey == "" {
		return fmt.Errorf("%w: nothing to update: give at least one field flag, such as --description or --sample", ErrUsage)
	}
	if err := fields.checkPolicyFlags(); err != nil {
		return err
	}

	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}
	client.secrets = append(client.secrets, newKey)

	got, err := client.getCollector(ctx, positional[0])
	if err != nil {
		return err
	}
	col := got.GetCollector()
	for _, name := range changed {
		fields.set(col, name)
	}
	if newKey != "" {
		sourceOf(col).PostInputsKeyId = newKey
	}
	return client.patchCollectors(ctx, []*pb.Collector{col})
}

// visitedFields returns the names of the collector field flags that the
// command line set.
func visitedFields(fs *flag.FlagSet, fields *collectorFlags) []string {
	var names []string
	probe := &pb.Collector{}
	fs.Visit(func(fl *flag.Flag) {
		if fields.set(probe, fl.Name) {
			names = append(names, fl.Name)
		}
	})
	return names
}

// updatedPostInputsKey returns the new post-inputs key of an update, or ""
// when the update keeps the stored key.
func updatedPostInputsKey(fields *collectorFlags, changed []string, fromEnv bool) (string, error) {
	fromFlag := false
	for _, name := range changed {
		fromFlag = fromFlag || name == "post-inputs-key"
	}

	var key string
	switch {
	case fromFlag && fromEnv:
		return "", fmt.Errorf("%w: give either --post-inputs-key or --post-inputs-key-from-env, not both", ErrUsage)
	case fromFlag:
		key = fields.postInputsKey
	case fromEnv:
		key = os.Getenv(envPostInputsKey)
	default:
		return "", nil
	}
	if key == "" {
		return "", fmt.Errorf("%w: the new post-inputs key is empty: set %s or --post-inputs-key", ErrUsage, envPostInputsKey)
	}
	return key, checkSecret("the post-inputs key", key)
}

// collectorsSetStatus pauses or resumes collectors: it reads each one and
// writes them back in one PatchCollectors request with the new status, so
// either all change or none.
func collectorsSetStatus(ctx context.Context, verb string, code pb.StatusCode, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors "+verb, stderr)
	apiFlags := addAPIFlags(fs)
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: collectors %s takes one or more collector IDs", ErrUsage, verb)
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	cols := make([]*pb.Collector, 0, len(ids))
	for _, id := range ids {
		got, err := client.getCollector(ctx, id)
		if err != nil {
			return err
		}
		col := got.GetCollector()
		col.Status = &pb.Status{Code: code}
		cols = append(cols, col)
	}
	return client.patchCollectors(ctx, cols)
}

// patchCollectors overwrites cols and prints the result.
// NOTE: overwrite replaces the whole definition, so a change that another
// client makes between the read and this write is lost.
func (c *apiClient) patchCollectors(ctx context.Context, cols []*pb.Collector) error {
	req := &pb.PatchCollectorsRequest{Collectors: cols, Action: "overwrite"}
	resp := &pb.MultiCollectorResponse{}
	if err := c.call(ctx, "PatchCollectors", http.MethodPatch, c.appPath("collectors"), nil, req, resp); err != nil {
		return err
	}
	return c.printCollectors(resp, resp.GetCollectors())
}

func collectorsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors delete", stderr)
	apiFlags := addAPIFlags(fs)
	all := fs.Bool("all", false, "delete every collector of the app")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *all && len(ids) > 0:
		return fmt.Errorf("%w: give collector IDs or --all, not both", ErrUsage)
	case !*all && len(ids) == 0:
		return fmt.Errorf("%w: collectors delete takes one or more collector IDs, or --all", ErrUsage)
	}
	client, err := newAppClient(apiFlags, stdout, stderr)
	if err != nil {
		return err
	}

	req := &pb.DeleteCollectorsRequest{Ids: ids, DeleteAll: *all}
	resp := &pb.BaseResponse{}
	if err := client.call(ctx, "DeleteCollectors", http.MethodDelete, client.appPath("collectors"), nil, req, resp); err != nil {
		return err
	}

	if client.json {
		return client.printJSON(resp)
	}
	if *all {
		fmt.Fprintf(stdout, "deleted all collectors of %s\n", client.appName())
		return nil
	}
	fmt.Fprintf(stdout, "deleted from %s: %s\n", client.appName(), strings.Join(ids, ", "))
	return nil
}

// appName names the command's app in messages.
func (c *apiClient) appName() string {
	if c.app == "" {
		return "the key's app"
	}
	return fmt.Sprintf("app %q", c.app)
}

// printCollectors prints resp as JSON or cols as a table.
func (c *apiClient) printCollectors(resp statusResponse, cols []*pb.Collector) error {
	if c.json {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODEL\tCALLER\tSAMPLE\tSTATUS\tPOLICY\tCREATED")
	for _, col := range cols {
		src := col.GetCollectorSource().GetApiPostModelOutputsCollectorSource()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			col.GetId(), modelName(src), callerName(src), sampleText(col.GetPreQueueRandomSample()),
			collectorState(col.GetStatus()), policyText(col.GetPolicy()), formatTime(col.GetCreatedAt()))
	}
	return tw.Flush()
}

// policyText returns the limits of a policy in one table cell, such as
// "100/h,1000/d,dedup=10m,5/concept/24h,preview", or "-" for none.
func policyText(p *pb.CollectorPolicy) string {
	var parts []string
	if n := p.GetMaxInputsPerHour(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d/h", n))
	}
	if n := p.GetMaxInputsPerDay(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d/d", n))
	}
	if s := p.GetDedupWindowSeconds(); s > 0 {
		parts = append(parts, "dedup="+secondsText(s))
	}
	if n := p.GetMaxInputsPerConcept(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d/concept/%s", n, secondsText(p.GetBalanceWindowSeconds())))
	}
	if p.GetPreview() {
		parts = append(parts, "preview")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// secondsText formats seconds as a Go duration without zero minutes and
// seconds: 3600 is "1h", 5400 is "1h30m".
func secondsText(seconds uint32) string {
	text := (time.Duration(seconds) * time.Second).String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

// modelName returns the source model as USER/APP/MODEL, with @VERSION when
// the collector is bound to one version.
func modelName(src *pb.APIPostModelOutputsCollectorSource) string {
	name := src.GetModelUserId() + "/" + src.GetModelAppId() + "/" + src.GetModelId()
	if v := src.GetModelVersionId(); v != "" {
		name += "@" + v
	}
	return name
}

func callerName(src *pb.APIPostModelOutputsCollectorSource) string {
	if c := src.GetCallerUserId(); c != "" {
		return c
	}
	return "any"
}

func sampleText(sample float32) string {
	if sample == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(sample), 'g', -1, 32)
}

func collectorState(st *pb.Status) string {
	switch st.GetCode() {
	case pb.StatusCode_COLLECTOR_ACTIVE:
		return "active"
	case pb.StatusCode_COLLECTOR_INACTIVE:
		return "paused"
	default:
		return st.GetCode().String()
	}
}
