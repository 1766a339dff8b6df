package ingest

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/collectord/collectord/internal/pb/capturepb"
)

// item is one fetched record.
type item struct {
	d    *delivery
	rec  *capturepb.Record
	data []byte
	// index is the record's position in its message.
	index int
}

// delivery is one fetched message and the settlement of its records. The
// message is settled with JetStream once every record is: acknowledged when
// each was delivered, screened out or dead-lettered, and returned to the
// stream when all of them are to be delivered again. When only some are,
// they go back in a new message and the old one is acknowledged, so that
// the records already delivered are not posted again.
//
// A worker settles the records of a message on its own goroutine, so a
// delivery needs no lock.
type delivery struct {
	msg jetstream.Msg
	// attempts is this delivery's number for the message's records,
	// counting the deliveries they had in an earlier message.
	attempts uint64
	records  int
	pending  int

	// again holds the records to deliver again, after delay.
	again []item
	delay time.Duration
	// now returns the records at once: the worker is shutting down.
	now bool

	deadLettered int
	reason       string
}

// newDelivery counts attempts conservatively: a delivery that only waited
// out HeaderNotBefore counts too, so a record reaches the consumer's
// MaxDeliver here no later than JetStream stops delivering its message.
func newDelivery(msg jetstream.Msg, records int) *delivery {
	attempts := priorAttempts(msg.Headers())
	if meta, err := msg.Metadata(); err == nil {
		attempts += meta.NumDelivered
	} else {
		attempts++
	}
	return &delivery{msg: msg, attempts: attempts, records: records, pending: records}
}

// done settles a record that needs no further delivery.
func (w *Workers) done(ctx context.Context, it item) {
	it.d.pending--
	w.finish(ctx, it.d)
}

// deadLettered settles a record stored in the dead-letter stream.
func (w *Workers) deadLettered(ctx context.Context, it item, reason string) {
	it.d.deadLettered++
	it.d.reason = reason
	w.done(ctx, it)
}

// deliverAgain settles a record that is to be delivered again after delay,
// or at once when now is set.
func (w *Workers) deliverAgain(ctx context.Context, it item, delay time.Duration, now bool) {
	d := it.d
	d.again = append(d.again, it)
	d.delay = max(d.delay, delay)
	d.now = d.now || now
	d.pending--
	w.finish(ctx, d)
}

// finish settles the message once its last record is settled.
func (w *Workers) finish(ctx context.Context, d *delivery) {
	if d.pending > 0 {
		return
	}

	switch {
	case len(d.again) == 0 && d.deadLettered == d.records:
		if err := d.msg.TermWithReason(d.reason); err != nil {
			w.logger.Warn("term failed; the message will be dead-lettered again", "records", d.records, "error", err)
		}
	case len(d.again) == 0:
		if err := d.msg.Ack(); err != nil {
			w.logger.Warn("ack failed; the message will be delivered again", "records", d.records, "error", err)
		}
	case len(d.again) == d.records:
		w.nak(d)
	default:
		w.republish(ctx, d)
	}
}

// nak returns the whole message to the stream.
func (w *Workers) nak(d *delivery) {
	if d.now {
		_ = d.msg.Nak()
		return
	}
	if err := d.msg.NakWithDelay(d.delay); err != nil {
		w.logger.Warn("nak failed; the message will be delivered again after the ack wait",
			"records", d.records, "error", err)
	}
}

// republish publishes the records of d that are to be delivered again in a
// new message, which waits out their delay, and acknowledges d's message.
// When the publish fails, the whole message is returned instead: its
// delivered records will then be posted again, which destinations accept as
// duplicates of their input IDs.
func (w *Workers) republish(ctx context.Context, d *delivery) {
	msg := nats.NewMsg(d.msg.Subject())
	if len(d.again) == 1 {
		msg.Data = d.again[0].data
	} else {
		for _, it := range d.again {
			msg.Data = appendPacked(msg.Data, it.data)
		}
		msg.Header.Set(HeaderRecords, strconv.Itoa(len(d.again)))
	}
	msg.Header.Set(HeaderPriorAttempts, strconv.FormatUint(d.attempts, 10))
	if !d.now && d.delay > 0 {
		msg.Header.Set(HeaderNotBefore, time.Now().Add(d.delay).UTC().Format(time.RFC3339Nano))
	}

	// The ID names the records and this delivery, so a worker that fails
	// between the publish and the ack publishes a duplicate the stream drops.
	id := d.again[0].rec.GetId() + "+" + strconv.Itoa(len(d.again)) + "@" + strconv.FormatUint(d.attempts, 10)
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := w.q.js.PublishMsg(pubCtx, msg, jetstream.WithMsgID(id)); err != nil {
		w.logger.Warn("republish of records to deliver again failed; the whole message will be delivered again",
			"records", d.records, "again", len(d.again), "error", err)
		w.nak(d)
		return
	}
	if err := d.msg.Ack(); err != nil {
		w.logger.Warn("ack failed; the message will be delivered again", "records", d.records, "error", err)
	}
}

// waitNotBefore returns a message that must wait before delivery to the
// stream until its HeaderNotBefore time, and reports whether it did. At its
// last allowed delivery the message is processed at once instead.
func (w *Workers) waitNotBefore(msg jetstream.Msg) bool {
	wait := time.Until(notBefore(msg.Headers()))
	if wait <= 0 {
		return false
	}
	if meta, err := msg.Metadata(); err == nil && w.q.cfg.MaxDeliver > 0 && meta.NumDelivered >= uint64(w.q.cfg.MaxDeliver) {
		return false
	}
	if err := msg.NakWithDelay(wait); err != nil {
		w.logger.Warn("nak failed; the message will be delivered again after the ack wait", "error", err)
	}
	return true
}
