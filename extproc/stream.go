package extproc

import (
	"context"
	"sync/atomic"
	"time"

	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// streamEnd is the end of a stream's Recv loop: its error and whether a
// reply was due.
type streamEnd struct {
	// err is the error of Recv or Send, or the stream context's error.
	err error
	// replying is set when the stream ended while a reply was due: during
	// the handling of a message or its Send.
	replying bool
}

// idleClock tracks since when a stream has waited in Recv. The Recv loop
// writes it and Process reads it, so it is atomic.
type idleClock struct {
	start time.Time
	// waitingSince is the time since start, plus one nanosecond, at which
	// Recv was entered. It is zero while a message is being handled.
	waitingSince atomic.Int64
}

func (c *idleClock) waiting() {
	c.waitingSince.Store(int64(time.Since(c.start)) + 1)
}

func (c *idleClock) busy() {
	c.waitingSince.Store(0)
}

// left returns how much of idle remains before the stream counts as idle. A
// stream handling a message has all of it.
func (c *idleClock) left(idle time.Duration) time.Duration {
	since := c.waitingSince.Load()
	if since == 0 {
		return idle
	}
	waited := time.Since(c.start) - time.Duration(since-1)
	return idle - waited
}

func newStreamState(s *Server, ctx context.Context) *streamState {
	return &streamState{server: s, ctx: ctx, clock: idleClock{start: time.Now()}}
}

// receive runs the Recv, handle, Send loop until the stream ends, then
// closes the exchange.
func (st *streamState) receive(stream grpc.BidiStreamingServer[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]) streamEnd {
	defer st.close()

	for {
		if err := st.ctx.Err(); err != nil {
			return streamEnd{err: err}
		}

		st.clock.waiting()
		req, err := stream.Recv()
		st.clock.busy()
		if err != nil {
			return streamEnd{err: err}
		}

		reply := st.handle(req)
		// In observability mode Envoy ignores replies, so none is sent and
		// the loop returns to Recv at once.
		if req.GetObservabilityMode() {
			continue
		}
		if err := st.ctx.Err(); err != nil {
			return streamEnd{err: err, replying: true}
		}
		if err := stream.Send(reply); err != nil {
			return streamEnd{err: err, replying: true}
		}
	}
}

// await waits for the Recv loop to end and returns its end. ok is false when
// the stream waited idle in Recv for idle first.
func (st *streamState) await(ended <-chan streamEnd, idle time.Duration) (end streamEnd, ok bool) {
	timer := time.NewTimer(idle)
	defer timer.Stop()

	for {
		select {
		case end := <-ended:
			return end, true
		case <-timer.C:
			left := st.clock.left(idle)
			if left <= 0 {
				return streamEnd{}, false
			}
			timer.Reset(left)
		}
	}
}
