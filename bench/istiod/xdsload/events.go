package main

// The events file: one JSON line per response received,
//
//	{"t":<unix ns at receipt>,"p":<proxy index>,"type":"cds","bytes":<size of the whole
//	 DeltaDiscoveryResponse>,"n":<resources>,"rm":<removed>,"mark":<mark>,"nonce":"..."}
//
// and one per stream end, {"t":...,"p":...,"event":"error"|"close","detail":"..."}
// ("error": the stream failed or istiod ended it; "close": this process closed it).
// Written through one buffer, flushed at least once per second and on flush/close.

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

type events struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	line []byte // scratch, under mu
	err  error  // first write error, reported once
}

func openEvents(path string) (*events, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	e := &events{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	go e.flushLoop()
	return e, nil
}

func (e *events) flushLoop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		e.mu.Lock()
		if e.w == nil {
			e.mu.Unlock()
			return
		}
		if e.w.Buffered() > 0 {
			e.noteErr(e.w.Flush())
		}
		e.mu.Unlock()
	}
}

func (e *events) noteErr(err error) {
	if err != nil && e.err == nil {
		e.err = err
		fmt.Fprintf(os.Stderr, "mb-xdsload: events file: %v\n", err)
	}
}

// begin starts a line with its time and proxy index, in the reused buffer; under e.mu.
func (e *events) begin(t int64, p int) []byte {
	b := e.line[:0]
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"p":`...)
	return strconv.AppendInt(b, int64(p), 10)
}

// response writes the line of one response.
func (e *events) response(t int64, p int, shortType string, size, n, rm int, mark int64, nonce []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return
	}
	b := e.begin(t, p)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, shortType)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"rm":`...)
	b = strconv.AppendInt(b, int64(rm), 10)
	b = append(b, `,"mark":`...)
	b = strconv.AppendInt(b, mark, 10)
	b = append(b, `,"nonce":`...)
	b = appendJSONString(b, string(nonce))
	b = append(b, "}\n"...)
	e.line = b
	_, err := e.w.Write(b)
	e.noteErr(err)
}

// streamEnd writes the line of a stream's end ("error" or "close").
func (e *events) streamEnd(t int64, p int, event, detail string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return
	}
	b := e.begin(t, p)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, event)
	b = append(b, `,"detail":`...)
	b = appendJSONString(b, detail)
	b = append(b, "}\n"...)
	e.line = b
	_, err := e.w.Write(b)
	e.noteErr(err)
}

// Flush writes out what is buffered.
func (e *events) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return nil
	}
	return e.w.Flush()
}

// Close flushes and closes the file; later writes are dropped.
func (e *events) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w == nil {
		return nil
	}
	err := e.w.Flush()
	if cerr := e.f.Close(); err == nil {
		err = cerr
	}
	e.w = nil
	return err
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				switch c {
				case '\n':
					b = append(b, '\\', 'n')
				case '\r':
					b = append(b, '\\', 'r')
				case '\t':
					b = append(b, '\\', 't')
				default:
					b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				}
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
