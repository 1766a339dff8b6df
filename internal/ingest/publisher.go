package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
)

// Defaults of PublisherConfig.
const (
	DefaultHandoffSize = 4096
	DefaultPublishers  = 4
	DefaultWindow      = 512
	DefaultWindowBytes = 4 << 20
	DefaultRetries     = 3
	DefaultRetryWait   = 50 * time.Millisecond
	DefaultAckTimeout  = 10 * time.Second
)

// JetStream error codes that decide whether a failed publish is retried.
const (
	jsErrStoreFailed     jetstream.ErrorCode = 10077
	jsErrMessageTooLarge jetstream.ErrorCode = 10054
)

// PublisherConfig sizes the publisher.
type PublisherConfig struct {
	// HandoffSize bounds records offered and not yet published; past it Offer
	// drops. Default 4096.
	HandoffSize int
	// Publishers is the number of goroutines publishing. Default 4.
	Publishers int
	// Window bounds the asynchronous publishes one goroutine has in flight,
	// and WindowBytes their encoded bytes. A window takes no more records
	// once it reaches WindowBytes, so it holds at most WindowBytes plus one
	// record. Defaults 512 and 4 MiB.
	Window      int
	WindowBytes int
	// Retries bounds republishing a record whose publish failed, with
	// RetryWait doubled each time. Defaults 3 and 50ms; a negative Retries
	// disables retrying.
	Retries   int
	RetryWait time.Duration
	// AckTimeout bounds the wait for JetStream's acknowledgement of one
	// publish. Default 10s.
	AckTimeout time.Duration
	// MessageRecords and MessageBytes bound the records of one collector
	// that a window packs into one capture stream message, and the
	// message's data size. A record larger than MessageBytes goes alone.
	// MessageBytes is capped at the stream's MaxMsgSize and the server's
	// maximum payload. Defaults 64 and 256 KiB; a MessageRecords of 1
	// turns packing off.
	MessageRecords int
	MessageBytes   int
}

func (c *PublisherConfig) setDefaults() {
	if c.HandoffSize <= 0 {
		c.HandoffSize = DefaultHandoffSize
	}
	if c.Publishers <= 0 {
		c.Publishers = DefaultPublishers
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.WindowBytes <= 0 {
		c.WindowBytes = DefaultWindowBytes
	}
	if c.Retries < 0 {
		c.Retries = 0
	} else if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.RetryWait <= 0 {
		c.RetryWait = DefaultRetryWait
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.MessageRecords <= 0 {
		c.MessageRecords = DefaultMessageRecords
	}
	if c.MessageBytes <= 0 {
		c.MessageBytes = DefaultMessageBytes
	}
}

// PublisherDeps are the collaborators of a Publisher.
type PublisherDeps struct {
	Meter  metric.Meter
	Logger *slog.Logger
}

// Publisher puts capture records on the capture stream, and Offer never
// blocks. A record counts as enqueued once JetStream acknowledged it, and as
// dropped with a reason when it could not be stored. A duplicate of a record
// stored earlier is not counted again.
type Publisher struct {
	q        *Queue
	js       jetstream.JetStream
	cfg      PublisherConfig
	captures *telemetry.Captures
	// inputs counts enqueued and dropped records per collector.
	inputs *telemetry.CollectorInputs
	logger *slog.Logger
	drops  *dropLog

	handoff chan *capturepb.Record
	// mu orders Offer against Close, so no Offer sends on a closed channel.
	mu     sync.RWMutex
	closed bool

	// ctx is canceled when Close runs out of time; publishing then stops.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ capture.Sink = (*Publisher)(nil)

// NewPublisher starts a publisher on the queue's connection.
func NewPublisher(q *Queue, cfg PublisherConfig, deps PublisherDeps) (*Publisher, error) {
	p, err := newPublisher(q, cfg, deps)
	if err != nil {
		return nil, err
	}
	p.start()
	return p, nil
}

// newPublisher builds a publisher without starting its goroutines.
func newPublisher(q *Queue, cfg PublisherConfig, deps PublisherDeps) (*Publisher, error) {
	cfg.setDefaults()
	if limit := int(q.cfg.MaxMsgSize); limit > 0 {
		cfg.MessageBytes = min(cfg.MessageBytes, limit)
	}
	// The headers of a packed message need room within the payload limit.
	if limit := int(q.nc.MaxPayload()) - 1024; limit > 0 {
		cfg.MessageBytes = min(cfg.MessageBytes, limit)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	captures, err := telemetry.NewCaptures(meterOrNoop(deps.Meter))
	if err != nil {
		return nil, fmt.Errorf("publisher: register metrics: %w", err)
	}
	inputs, err := telemetry.NewCollectorInputs(meterOrNoop(deps.Meter))
	if err != nil {
		return nil, fmt.Errorf("publisher: register metrics: %w", err)
	}

	// A JetStream context of its own, so the asynchronous publish limits
	// and timeout apply to this publisher only.
	js, err := jetstream.New(q.nc,
		jetstream.WithPublishAsyncMaxPending(cfg.Publishers*cfg.Window),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("publisher: open JetStream: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &Publisher{
		q:        q,
		js:       js,
		cfg:      cfg,
		captures: captures,
		inputs:   inputs,
		logger:   logger.With("component", "ingest_publisher"),
		drops:    newDropLog(),
		handoff:  make(chan *capturepb.Record, cfg.HandoffSize),
		ctx:      ctx,
		cancel:   cancel,
	}, nil
}

func (p *Publisher) start() {
	for range p.cfg.Publishers {
		p.wg.Add(1)
		go p.run()
	}
}

// Offer hands a record to the publisher without blocking. It returns false,
// and counts the drop, when the hand-off is full or the publisher is closed.
func (p *Publisher) Offer(rec *capturepb.Record) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()

	if p.closed {
		p.drop(rec, DropClosed, nil)
		return false
	}
	select {
	case p.handoff <- rec:
		return true
	default:
		p.drop(rec, DropHandoffFull, nil)
		return false
	}
}

// Close stops taking records, publishes those already offered and waits for
// JetStream's acknowledgements. When ctx ends first, the records not yet
// acknowledged are counted as dropped (reason closed) and ctx's error is
// returned.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.handoff)
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()

	select {
	case <-done:
		p.cancel()
		return nil
	case <-ctx.Done():
		p.cancel()
		<-done
		return fmt.Errorf("publisher: close: %w", ctx.Err())
	}
}

func (p *Publisher) run() {
	defer p.wg.Done()

	batch := make([]outgoing, 0, p.cfg.Window)
	for {
		var open bool
		batch, open = p.take(batch[:0])
		if len(batch) > 0 {
			p.publishBatch(batch)
		}
		if !open {
			return
		}
	}
}

// outgoing is one encoded record of a batch.
type outgoing struct {
	rec  *capturepb.Record
	data []byte
}

// take waits for one record, then adds those already waiting, up to Window
// records and WindowBytes bytes. It encodes each record and drops those that
// cannot be encoded. It returns false once the hand-off is closed and empty.
func (p *Publisher) take(batch []outgoing) ([]outgoing, bool) {
	rec, ok := <-p.handoff
	if !ok {
		return batch, false
	}
	batch, size := p.add(batch, rec, 0)

	for len(batch) < cap(batch) && size < p.cfg.WindowBytes {
		select {
		case rec, ok := <-p.handoff:
			if !ok {
				return batch, false
			}
			batch, size = p.add(batch, rec, size)
		default:
			return batch, true
		}
	}
	return batch, true
}

// add encodes rec and appends it to batch, whose encoded size is size.
func (p *Publisher) add(batch []outgoing, rec *capturepb.Record, size int) ([]outgoing, int) {
	data, reason, err := encodeRecord(rec)
	if reason != "" {
		p.drop(rec, reason, err)
		return batch, size
	}
	return append(batch, outgoing{rec: rec, data: data}), size + len(data)
}

// message is one capture stream message: one record, or several records
// of one collector packed together.
type message struct {
	records []outgoing
	data    []byte
	// packedSize is the size of the records packed together.
	packedSize int
	// id deduplicates the message in the stream's duplicate window.
	id string
}

// single returns the message of one record.
func single(out outgoing) message {
	return message{records: []outgoing{out}, data: out.data, packedSize: packedSize(len(out.data)), id: out.rec.GetId()}
}

// pack groups a window's records by collector into messages of at most
// MessageRecords records and MessageBytes bytes, in the order each
// collector first appears.
func (p *Publisher) pack(batch []outgoing) []message {
	var messages []message
	open := map[DestinationRef]int{}
	for _, out := range batch {
		ref := DestinationRef{UserID: out.rec.GetUserId(), AppID: out.rec.GetAppId(), CollectorID: out.rec.GetCollectorId()}
		i, ok := open[ref]
		if ok && p.fits(messages[i], out) {
			messages[i].records = append(messages[i].records, out)
			messages[i].packedSize += packedSize(len(out.data))
			continue
		}
		open[ref] = len(messages)
		messages = append(messages, single(out))
	}

	for i := range messages {
		if len(messages[i].records) > 1 {
			packRecords(&messages[i])
		}
	}
	return messages
}

// fits reports whether out can join m within the packing limits.
func (p *Publisher) fits(m message, out outgoing) bool {
	if len(m.records) >= p.cfg.MessageRecords {
		return false
	}
	return m.packedSize+packedSize(len(out.data)) <= p.cfg.MessageBytes
}

// packRecords sets the data of a message of several records to their packed
// form. Its ID names the first and last records and their count, so that
// publishing the same records again is deduplicated.
func packRecords(m *message) {
	m.data = make([]byte, 0, m.packedSize)
	for _, r := range m.records {
		m.data = appendPacked(m.data, r.data)
	}
	first, last := m.records[0].rec.GetId(), m.records[len(m.records)-1].rec.GetId()
	m.id = first + "+" + strconv.Itoa(len(m.records)) + "+" + last
}

// inflight is one message published asynchronously.
type inflight struct {
	message
	future jetstream.PubAckFuture
	err    error
}

// publishBatch packs a window's records, publishes every message
// asynchronously, then waits for each acknowledgement in turn and retries
// the failed ones synchronously. The messages of a window leave together,
// so they share one AckTimeout.
func (p *Publisher) publishBatch(batch []outgoing) {
	messages := p.pack(batch)
	pending := make([]inflight, 0, len(messages))
	for _, m := range messages {
		if p.ctx.Err() != nil {
			p.dropAll(m.records, DropClosed, nil)
			continue
		}
		future, err := p.js.PublishMsgAsync(p.newMsg(m), jetstream.WithMsgID(m.id))
		pending = append(pending, inflight{message: m, future: future, err: err})
	}

	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AckTimeout)
	defer cancel()
	enqueued, total := collectorCounts{}, 0
	for _, f := range pending {
		err := f.err
		if err == nil {
			var ack *jetstream.PubAck
			ack, err = p.waitAck(ctx, f.future)
			if err == nil {
				// A duplicate of a message stored within the duplicate
				// window is not counted again, so that enqueued equals
				// the records that will be delivered.
				if !ack.Duplicate {
					for _, out := range f.records {
						enqueued.add(out.rec)
					}
					total += len(f.records)
				}
				continue
			}
		}
		p.retry(f.message, err)
	}
	p.captures.Add(context.Background(), telemetry.OutcomeEnqueued, "", total)
	p.countCollectors(enqueued, telemetry.OutcomeEnqueued)
}

func (p *Publisher) waitAck(ctx context.Context, future jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-future.Ok():
		return ack, nil
	case err := <-future.Err():
		return nil, err
	case <-ctx.Done():
		if p.ctx.Err() != nil {
			return nil, p.ctx.Err()
		}
		return nil, fmt.Errorf("no acknowledgement within %s", p.cfg.AckTimeout)
	}
}

// collectorCounts counts the records of one batch per collector, so that a
// batch updates each metric once per collector instead of once per record.
type collectorCounts map[DestinationRef]int

// add counts rec. The small records a preview collector sends for the
// inputs it dropped are not inputs, so they are left out.
func (c collectorCounts) add(rec *capturepb.Record) {
	if rec.GetPreviewDropReason() != "" {
		return
	}
	c[DestinationRef{UserID: rec.GetUserId(), AppID: rec.GetAppId(), CollectorID: rec.GetCollectorId()}]++
}

// countCollectors adds counts to the per-collector metric.
func (p *Publisher) countCollectors(counts collectorCounts, outcome string) {
	for ref, n := range counts {
		p.inputs.Add(context.Background(), ref.UserID, ref.AppID, ref.CollectorID, outcome, "", "", n)
	}
}

// retried counts the records of a message a retry stored. A duplicate
// counts too: it is this publisher's own earlier attempt, stored although
// its acknowledgement was lost (a cluster changing stream leader loses
// some), and it was counted neither as enqueued nor as dropped.
func (p *Publisher) retried(records []outgoing) {
	counts := collectorCounts{}
	for _, out := range records {
		counts.add(out.rec)
	}
	p.captures.Add(context.Background(), telemetry.OutcomeEnqueued, "", len(records))
	p.countCollectors(counts, telemetry.OutcomeEnqueued)
}

// countCollector counts a record in the per-collector metric. The small
// records a preview collector sends for the inputs it dropped are not
// inputs, so they are left out.
func (p *Publisher) countCollector(rec *capturepb.Record, outcome, reason string) {
	if rec.GetPreviewDropReason() != "" {
		return
	}
	p.inputs.Add(context.Background(), rec.GetUserId(), rec.GetAppId(), rec.GetCollectorId(), outcome, "", reason, 1)
}

// retry republishes a message whose first publish failed. The message ID
// deduplicates a publish that did reach the stream although its
// acknowledgement was lost. A packed message the stream rejects as too
// large is split into messages of one record.
func (p *Publisher) retry(m message, err error) {
	wait := p.cfg.RetryWait
	for attempt := 0; ; attempt++ {
		reason := p.finalReason(err)
		if reason == DropTooLarge && len(m.records) > 1 {
			for _, out := range m.records {
				p.publishAlone(out)
			}
			return
		}
		if reason != "" {
			p.dropAll(m.records, reason, err)
			return
		}
		if attempt >= p.cfg.Retries {
			p.dropAll(m.records, DropPublishFailed, err)
			return
		}

		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			p.dropAll(m.records, DropClosed, p.ctx.Err())
			return
		}
		wait *= 2

		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AckTimeout)
		_, err = p.js.PublishMsg(ctx, p.newMsg(m), jetstream.WithMsgID(m.id))
		cancel()
		if err == nil {
			p.retried(m.records)
			return
		}
	}
}

// publishAlone publishes one record of a packed message the stream
// rejected, and retries it like any failed publish.
func (p *Publisher) publishAlone(out outgoing) {
	m := single(out)
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AckTimeout)
	_, err := p.js.PublishMsg(ctx, p.newMsg(m), jetstream.WithMsgID(m.id))
	cancel()
	if err == nil {
		p.retried(m.records)
		return
	}
	p.retry(m, err)
}

// finalReason returns the drop reason of an error that no retry can fix, or
// "" when the publish may be retried.
func (p *Publisher) finalReason(err error) string {
	if p.ctx.Err() != nil {
		return DropClosed
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return DropTooLarge
	}

	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return ""
	}
	switch {
	case apiErr.ErrorCode == jsErrMessageTooLarge:
		return DropTooLarge
	case apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "maximum"):
		// The stream is full and discards new messages: waiting a few
		// milliseconds frees no room, so the record is dropped at once.
		return DropQueueFull
	}
	return ""
}

func (p *Publisher) newMsg(m message) *nats.Msg {
	rec := m.records[0].rec
	msg := nats.NewMsg(p.q.Subject(rec.GetUserId(), rec.GetAppId()))
	msg.Data = m.data
	if len(m.records) > 1 {
		msg.Header.Set(HeaderRecords, strconv.Itoa(len(m.records)))
	}
	return msg
}

// dropAll drops every record of a message.
func (p *Publisher) dropAll(records []outgoing, reason string, err error) {
	for _, out := range records {
		p.drop(out.rec, reason, err)
	}
}

func (p *Publisher) drop(rec *capturepb.Record, reason string, err error) {
	p.captures.Add(context.Background(), telemetry.OutcomeDropped, reason, 1)
	p.countCollector(rec, telemetry.OutcomeDropped, reason)
	if n, ok := p.drops.due(reason); ok {
		attrs := []any{"reason", reason, "record_id", rec.GetId(), "dropped_since_last_log", n}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		p.logger.Warn("capture record dropped", attrs...)
	}
}

// encodeRecord marshals a record, or returns the reason to drop it.
func encodeRecord(rec *capturepb.Record) ([]byte, string, error) {
	if rec.GetId() == "" {
		return nil, DropMissingID, nil
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return nil, DropEncodeFailed, err
	}
	return data, "", nil
}

// dropLog limits drop warnings to one per reason every dropLogInterval, so a
// full queue does not flood the log. Each warning carries the count since
// the previous one.
type dropLog struct {
	mu    sync.Mutex
	last  map[string]time.Time
	count map[string]int
}

const dropLogInterval = 10 * time.Second

func newDropLog() *dropLog {
	return &dropLog{last: map[string]time.Time{}, count: map[string]int{}}
}

func (d *dropLog) due(reason string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()

	d.count[reason]++
	now := time.Now()
	if now.Sub(d.last[reason]) < dropLogInterval {
		return 0, false
	}
	n := d.count[reason]
	d.count[reason] = 0
	d.last[reason] = now
	return n, true
}
