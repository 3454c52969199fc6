package main

// The command loop's commands. One JSON line in, one JSON line out:
//
//	{"cmd":"connect","from":i,"to":j}  open the streams of proxies[i:j] (already opened
//	                                   ones are skipped) -> {"ok":true,"connected":n,"opened":k}
//	{"cmd":"status"}                   -> {"ok":true,"connected","synced","responses","bytes",
//	                                   "last_response_ns","errors","errors_total",
//	                                   "decode_errors","streams_failed","opened","proxies","mark"}
//	{"cmd":"mark"}                     -> {"ok":true,"mark":k}
//	{"cmd":"dump","proxies":[...],"path":p}  bodies of "keep" proxies -> {"ok":true,...}
//	{"cmd":"held","path":p}            count, bytes, digest per type of every proxy -> {"ok":true}
//	{"cmd":"flush"}                    flush the events file -> {"ok":true}
//	{"cmd":"close"}                    close every stream, reply, exit 0
//
// Anything else: {"ok":false,"error":"..."}.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const maxErrorLen = 400

type app struct {
	cfg     config
	proxies []*proxy
	ev      *events

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  map[int]*grpc.ClientConn // by proxy index / streams-per-conn; command loop only
	closed bool

	opened    atomic.Int64 // streams started
	open      atomic.Int64 // streams started and not ended
	failed    atomic.Int64
	retries   atomic.Int64
	responses atomic.Int64
	bytes     atomic.Int64
	lastResp  atomic.Int64
	mark      atomic.Int64
	decodeErr atomic.Int64

	errMu    sync.Mutex
	errFirst []string // the first 10
	errLast  []string // the 10 most recent after those
	errTotal int64
}

func newApp(cfg config, specs []proxySpec, ev *events) *app {
	a := &app{cfg: cfg, ev: ev, conns: map[int]*grpc.ClientConn{}}
	a.ctx, a.cancel = rootContext()
	a.proxies = make([]*proxy, len(specs))
	for i := range specs {
		a.proxies[i] = newProxy(i, &specs[i])
	}
	return a
}

func (a *app) noteLast(t int64) {
	for {
		cur := a.lastResp.Load()
		if t <= cur || a.lastResp.CompareAndSwap(cur, t) {
			return
		}
	}
}

func (a *app) addError(s string) {
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen] + "..."
	}
	a.errMu.Lock()
	defer a.errMu.Unlock()
	a.errTotal++
	if len(a.errFirst) < 10 {
		a.errFirst = append(a.errFirst, s)
		return
	}
	if len(a.errLast) == 10 {
		copy(a.errLast, a.errLast[1:])
		a.errLast = a.errLast[:9]
	}
	a.errLast = append(a.errLast, s)
}

func (a *app) decodeError(s string) {
	a.decodeErr.Add(1)
	a.addError("decode: " + s)
}

type command struct {
	Cmd     string `json:"cmd"`
	From    *int   `json:"from"`
	To      *int   `json:"to"`
	Proxies []int  `json:"proxies"`
	Path    string `json:"path"`
}

type reply map[string]any

func errReply(format string, args ...any) reply {
	return reply{"ok": false, "error": fmt.Sprintf(format, args...)}
}

// handle runs one command line; exit is true after "close".
func (a *app) handle(line []byte) (r reply, exit bool) {
	var c command
	if err := json.Unmarshal(line, &c); err != nil {
		return errReply("bad JSON: %v", err), false
	}
	switch c.Cmd {
	case "connect":
		return a.connect(c), false
	case "status":
		return a.status(), false
	case "mark":
		return reply{"ok": true, "mark": a.mark.Add(1)}, false
	case "dump":
		return a.dump(c), false
	case "held":
		return a.held(c), false
	case "flush":
		if err := a.ev.Flush(); err != nil {
			return errReply("flush events: %v", err), false
		}
		return reply{"ok": true}, false
	case "close":
		if err := a.shutdown(10 * time.Second); err != nil {
			return errReply("close: %v", err), true
		}
		return reply{"ok": true}, true
	case "":
		return errReply("no \"cmd\""), false
	default:
		return errReply("unknown command %q", c.Cmd), false
	}
}

func (a *app) conn(i int) (*grpc.ClientConn, error) {
	k := i / a.cfg.streamsPerConn
	if cc := a.conns[k]; cc != nil {
		return cc, nil
	}
	target := a.cfg.addr
	if !strings.Contains(target, "://") {
		target = "passthrough:///" + target
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(a.cfg.maxRecvBytes)),
		grpc.WithSharedWriteBuffer(true),
	}
	if a.cfg.initialWindow > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(int32(a.cfg.initialWindow)))
	}
	if a.cfg.initialConnWindow > 0 {
		opts = append(opts, grpc.WithInitialConnWindowSize(int32(a.cfg.initialConnWindow)))
	}
	cc, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	a.conns[k] = cc
	return cc, nil
}

func (a *app) connect(c command) reply {
	if c.From == nil || c.To == nil {
		return errReply("connect needs \"from\" and \"to\"")
	}
	from, to := *c.From, *c.To
	if from < 0 || to > len(a.proxies) || from > to {
		return errReply("connect: range [%d, %d) is not within [0, %d)", from, to, len(a.proxies))
	}
	if a.closed {
		return errReply("connect: closed")
	}
	started := 0
	for i := from; i < to; i++ {
		p := a.proxies[i]
		p.mu.Lock()
		idle := p.state == stateIdle
		if idle {
			p.state = stateRunning
		}
		p.mu.Unlock()
		if !idle {
			continue
		}
		cc, err := a.conn(i)
		if err != nil {
			p.setState(stateIdle)
			return errReply("connect: proxy %d: %v (after opening %d)", i, err, started)
		}
		a.opened.Add(1)
		a.open.Add(1)
		a.wg.Add(1)
		go a.runStream(a.ctx, p, cc)
		started++
	}
	return reply{"ok": true, "connected": a.open.Load(), "opened": started}
}

func (a *app) status() reply {
	synced := 0
	for _, p := range a.proxies {
		p.mu.Lock()
		if p.syncedLocked() {
			synced++
		}
		p.mu.Unlock()
	}
	a.errMu.Lock()
	errs := make([]string, 0, len(a.errFirst)+len(a.errLast))
	errs = append(errs, a.errFirst...)
	errs = append(errs, a.errLast...)
	total := a.errTotal
	a.errMu.Unlock()
	return reply{
		"ok":               true,
		"connected":        a.open.Load(),
		"synced":           synced,
		"responses":        a.responses.Load(),
		"bytes":            a.bytes.Load(),
		"last_response_ns": a.lastResp.Load(),
		"errors":           errs,
		"errors_total":     total,
		"decode_errors":    a.decodeErr.Load(),
		"streams_failed":   a.failed.Load(),
		"retries":          a.retries.Load(),
		"opened":           a.opened.Load(),
		"proxies":          len(a.proxies),
		"mark":             a.mark.Load(),
	}
}

// held writes {"<index>": {"<type_url>": [resources, bytes, "digest"]}} for every proxy;
// digest (16 hex digits) changes when any resource's name or bytes do (resourceHash).
func (a *app) held(c command) reply {
	if c.Path == "" {
		return errReply("held needs \"path\"")
	}
	err := writeFileAtomic(c.Path, func(w *bufio.Writer) error {
		w.WriteByte('{')
		for i, p := range a.proxies {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(`"` + strconv.Itoa(i) + `":{`)
			p.mu.Lock()
			first := true
			for url, ts := range p.types {
				if !first {
					w.WriteByte(',')
				}
				first = false
				w.Write(appendJSONString(nil, url))
				fmt.Fprintf(w, `:[%d,%d,"%016x"]`, len(ts.res), ts.bytes, ts.digest)
			}
			p.mu.Unlock()
			w.WriteByte('}')
		}
		w.WriteByte('}')
		return nil
	})
	if err != nil {
		return errReply("held: %v", err)
	}
	return reply{"ok": true}
}

// dump writes {"<index>": {"<type_url>": {"<name>": "<base64 of the resource>"}}} for the
// given proxies; proxies without "keep" hold no bodies and are written as {}.
func (a *app) dump(c command) reply {
	if c.Path == "" {
		return errReply("dump needs \"path\"")
	}
	for _, i := range c.Proxies {
		if i < 0 || i >= len(a.proxies) {
			return errReply("dump: proxy index %d is not within [0, %d)", i, len(a.proxies))
		}
	}
	notKept := []int{}
	err := writeFileAtomic(c.Path, func(w *bufio.Writer) error {
		w.WriteByte('{')
		for n, i := range c.Proxies {
			if n > 0 {
				w.WriteByte(',')
			}
			p := a.proxies[i]
			out := map[string]map[string][]byte{}
			if !p.spec.Keep {
				notKept = append(notKept, i)
			}
			p.mu.Lock()
			for url, ts := range p.types {
				if ts.bodies == nil {
					continue
				}
				m := make(map[string][]byte, len(ts.bodies))
				for h, b := range ts.bodies { // bodies are never modified, only replaced
					m[h.Value()] = b
				}
				out[url] = m
			}
			p.mu.Unlock()
			b, err := json.Marshal(out) // []byte values are written as base64
			if err != nil {
				return err
			}
			w.WriteString(`"` + strconv.Itoa(i) + `":`)
			w.Write(b)
		}
		w.WriteByte('}')
		return nil
	})
	if err != nil {
		return errReply("dump: %v", err)
	}
	return reply{"ok": true, "not_kept": notKept}
}

func writeFileAtomic(path string, fill func(w *bufio.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mb-xdsload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := fill(w); err != nil {
		tmp.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// shutdown closes every stream (waiting up to grace for their goroutines), the
// connections and the events file.
func (a *app) shutdown(grace time.Duration) error {
	if a.closed {
		return nil
	}
	a.closed = true
	a.cancel()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "mb-xdsload: %d streams still ending after %v\n", a.open.Load(), grace)
	}
	for _, cc := range a.conns {
		cc.Close()
	}
	return a.ev.Close()
}
