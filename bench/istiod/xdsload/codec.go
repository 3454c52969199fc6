package main

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// rawCodec marshals requests as protobuf and hands responses over as their wire bytes
// (rawMessage), which wire.go reads without unmarshalling them. Named "proto", so the
// content-type is application/grpc+proto as with gRPC's own codec.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *rawMessage:
		// A copy of exactly the message's size, left to the GC. (gRPC's pool would hand
		// out its next tier, 1 MiB for anything between 32 KiB and 1 MiB, and keep such
		// buffers around: with 10,000 streams that is gigabytes for nothing.)
		m.b = data.Materialize()
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	default:
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
}

// rawMessage is one received message's bytes.
type rawMessage struct {
	b []byte
}

func (m *rawMessage) bytes() []byte { return m.b }

// free drops the reference, so that the bytes can be collected while the stream waits.
func (m *rawMessage) free() { m.b = nil }
