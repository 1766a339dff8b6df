package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/capturepb"
)

// A capture stream message holds one record, or several records of one
// collector packed by the publisher. JetStream stores, deduplicates,
// acknowledges and, in a work queue, removes each message. Packing shares
// that work among the records, because with 1 KiB records it costs more
// than storing the inputs.
//
// A packed message carries HeaderRecords, and its data is the encoding of a
// message with one field, `repeated collectord.capture.v1.Record records = 1`.
// A message without the header is one encoded Record.
const (
	// HeaderRecords is the number of records a packed message holds.
	HeaderRecords = "Collectord-Records"
	// HeaderPriorAttempts counts the deliveries the records of a message had
	// in an earlier message. A worker that settles only some records of a
	// packed message publishes the rest in a new message with this header.
	HeaderPriorAttempts = "Collectord-Prior-Attempts"
	// HeaderNotBefore is the time, in RFC 3339 form, before which a worker
	// returns the message unread: the retry delay of records republished
	// from a packed message.
	HeaderNotBefore = "Collectord-Not-Before"
)

// Defaults of the packing limits of PublisherConfig.
const (
	DefaultMessageRecords = 64
	DefaultMessageBytes   = 256 << 10
)

// recordsField is the field number of the records in a packed message.
const recordsField protowire.Number = 1

// appendPacked appends one encoded record to a packed message's data.
func appendPacked(data, record []byte) []byte {
	data = protowire.AppendTag(data, recordsField, protowire.BytesType)
	return protowire.AppendBytes(data, record)
}

// packedSize returns the bytes one record of n bytes adds to a packed message.
func packedSize(n int) int {
	return protowire.SizeTag(recordsField) + protowire.SizeBytes(n)
}

// errMalformedPacked reports packed data that is not a list of records.
var errMalformedPacked = errors.New("malformed packed message")

// messageRecords returns the encoded records of a capture stream message
// with these headers and data. The slices share data.
func messageRecords(h nats.Header, data []byte) ([][]byte, error) {
	if h.Get(HeaderRecords) == "" {
		return [][]byte{data}, nil
	}
	return unpack(data)
}

// DecodeMessage returns the records of a capture stream message with these
// headers and data, for tools that read the stream directly.
func DecodeMessage(h nats.Header, data []byte) ([]*capturepb.Record, error) {
	parts, err := messageRecords(h, data)
	if err != nil {
		return nil, err
	}
	records := make([]*capturepb.Record, len(parts))
	for i, part := range parts {
		records[i] = &capturepb.Record{}
		if err := proto.Unmarshal(part, records[i]); err != nil {
			return nil, fmt.Errorf("record %d of %d: %w", i+1, len(parts), err)
		}
	}
	return records, nil
}

// unpack splits a packed message's data into its encoded records.
func unpack(data []byte) ([][]byte, error) {
	var records [][]byte
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return nil, fmt.Errorf("%w: %w", errMalformedPacked, protowire.ParseError(n))
		}
		if num != recordsField || typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: unexpected field %d of wire type %d", errMalformedPacked, num, typ)
		}
		data = data[n:]

		record, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return nil, fmt.Errorf("%w: %w", errMalformedPacked, protowire.ParseError(n))
		}
		records = append(records, record)
		data = data[n:]
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("%w: no records", errMalformedPacked)
	}
	return records, nil
}

// priorAttempts returns the deliveries a message's records had before it
// was published, from HeaderPriorAttempts.
func priorAttempts(h nats.Header) uint64 {
	n, err := strconv.ParseUint(h.Get(HeaderPriorAttempts), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// notBefore returns the time before which the message waits, from
// HeaderNotBefore, or the zero time.
func notBefore(h nats.Header) time.Time {
	t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderNotBefore))
	if err != nil {
		return time.Time{}
	}
	return t
}
