package envoytest

import (
	"context"
	"errors"
	"sync"
	"time"

	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// errTimeout reports that no reply arrived within message_timeout.
var errTimeout = errors.New("no reply within message_timeout")

// sideStream is one Process stream. A goroutine receives replies as they
// come, like Envoy's gRPC client, so a reply is seen even when nothing waits
// for it.
type sideStream struct {
	stream grpc.BidiStreamingClient[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]
	// cancel resets the stream.
	cancel context.CancelFunc
	// closed is set once close has run; only the player's goroutine uses it.
	closed bool

	mu       sync.Mutex
	replies  []*extprocpb.ProcessingResponse
	consumed int
	// err is the error that ended the receive loop: io.EOF when the
	// processor ended the stream with OK.
	err error

	notify chan struct{}
	done   chan struct{}
}

func openStream(ctx context.Context, client extprocpb.ExternalProcessorClient) (*sideStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := client.Process(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &sideStream{
		stream: stream,
		cancel: cancel,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	go s.receive()
	return s, nil
}

func (s *sideStream) receive() {
	defer close(s.done)
	for {
		reply, err := s.stream.Recv()

		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		s.replies = append(s.replies, reply)
		s.mu.Unlock()

		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// close ends the stream as Envoy's ext_proc client does when it closes a
// stream: a half-close followed at once by a reset (RST_STREAM). The
// processor's Recv returns io.EOF or codes.Canceled, and any later reply is
// discarded.
func (s *sideStream) close() {
	if s.closed {
		return
	}
	s.closed = true
	_ = s.stream.CloseSend()
	s.cancel()
}

// next returns the next unread reply. It fails with errTimeout after timeout,
// or with the error that ended the stream (io.EOF for an OK close).
func (s *sideStream) next(ctx context.Context, timeout time.Duration) (*extprocpb.ProcessingResponse, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		if reply, err, ok := s.poll(); ok {
			return reply, err
		}
		select {
		case <-s.notify:
		case <-s.done:
		case <-timer.C:
			return nil, errTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// poll returns the next unread reply or the end of the stream; ok is false
// when neither is there yet.
func (s *sideStream) poll() (reply *extprocpb.ProcessingResponse, err error, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consumed < len(s.replies) {
		reply = s.replies[s.consumed]
		s.consumed++
		return reply, nil, true
	}
	if s.err != nil {
		return nil, s.err, true
	}
	return nil, nil, false
}

// unread returns the replies not consumed yet and marks them read.
func (s *sideStream) unread() []*extprocpb.ProcessingResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	extra := s.replies[s.consumed:]
	s.consumed = len(s.replies)
	return extra
}

// endError waits up to timeout for the receive loop to end and returns its
// error; it returns nil when the stream is still open.
func (s *sideStream) endError(timeout time.Duration) error {
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-s.done:
		case <-timer.C:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// all returns every reply received so far.
func (s *sideStream) all() []*extprocpb.ProcessingResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*extprocpb.ProcessingResponse(nil), s.replies...)
}
