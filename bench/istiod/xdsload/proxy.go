package main

// One simulated proxy: its delta-ADS stream (one goroutine), what it subscribes to, and
// what it holds.
//
// Sidecars and waypoints behave as Envoy over delta ADS: wildcard CDS and LDS; EDS for the
// EDS clusters CDS brought (eds_cluster_config.service_name, or the cluster name), RDS for
// the route_config_name of every HTTP connection manager that uses RDS; names no longer
// referenced are unsubscribed (and dropped from what the proxy holds, as Envoy does).
// Ztunnels subscribe wildcard to istio.workload.Address and istio.security.Authorization.
// Every response is ACKed (type_url + response_nonce, never error_detail); subscription
// changes go in their own requests without a nonce, before the ACK of the response that
// caused them, as Envoy sends them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"
	"unique"
	"unsafe"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	typeCDS      = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeLDS      = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRDS      = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeEDS      = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeAddress  = "type.googleapis.com/istio.workload.Address"
	typeAuthzWDS = "type.googleapis.com/istio.security.Authorization"
)

// shortType is the events file's name of a type URL.
func shortType(url string) string {
	switch url {
	case typeCDS:
		return "cds"
	case typeEDS:
		return "eds"
	case typeLDS:
		return "lds"
	case typeRDS:
		return "rds"
	case typeAddress:
		return "wds_address"
	case typeAuthzWDS:
		return "wds_authorization"
	}
	return url
}

const deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

var deltaDesc = grpc.StreamDesc{StreamName: "DeltaAggregatedResources", ServerStreams: true, ClientStreams: true}

// proxySpec is one element of proxies.json.
type proxySpec struct {
	ID       string          `json:"id"`
	Role     string          `json:"role"`
	Cluster  string          `json:"cluster"`
	Metadata json.RawMessage `json:"metadata"`
	Keep     bool            `json:"keep"`
}

func loadProxies(path string) ([]proxySpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("proxies file: %w", err)
	}
	var specs []proxySpec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("proxies file %s: %w", path, err)
	}
	for i := range specs {
		s := &specs[i]
		if s.ID == "" {
			return nil, fmt.Errorf("proxies file %s: proxy %d has no id", path, i)
		}
		switch s.Role {
		case "sidecar", "waypoint", "ztunnel":
		default:
			return nil, fmt.Errorf("proxies file %s: proxy %d (%s): role %q is not sidecar, waypoint or ztunnel",
				path, i, s.ID, s.Role)
		}
		if _, err := s.metadata(); err != nil {
			return nil, fmt.Errorf("proxies file %s: proxy %d (%s): metadata: %w", path, i, s.ID, err)
		}
	}
	return specs, nil
}

func (s *proxySpec) metadata() (*structpb.Struct, error) {
	md := &structpb.Struct{}
	if len(s.Metadata) == 0 || string(s.Metadata) == "null" {
		return md, nil
	}
	if err := protojson.Unmarshal(s.Metadata, md); err != nil {
		return nil, err
	}
	return md, nil
}

func (s *proxySpec) node() *core.Node {
	md, _ := s.metadata() // checked at load
	return &core.Node{Id: s.ID, Cluster: s.Cluster, Metadata: md}
}

type handle = unique.Handle[string]

// intern returns the handle of b's string; b may alias a buffer that is reused later
// (unique.Make copies a string the first time it sees it).
func intern(b []byte) handle {
	return unique.Make(unsafe.String(unsafe.SliceData(b), len(b)))
}

type resEntry struct {
	size    uint32 // bytes of the resource (the Any's value)
	version handle
	hash    uint64 // of its name and bytes (resourceHash)
}

// hashSeed is fixed for the process: digests compare within one run only.
var hashSeed = maphash.MakeSeed()

// resourceHash is a hash of a resource's name and bytes (not its version). A type's
// digest is the sum of its resources' hashes: independent of order, kept up to date as
// resources come and go, equal whenever the proxy holds the same resources.
func resourceHash(name, value []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.Write(name)
	h.WriteByte(0)
	h.Write(value)
	return h.Sum64()
}

// typeState is one type URL of one proxy.
type typeState struct {
	url         string
	requested   bool // a subscription request of this type was sent
	wildcard    bool
	gotResponse bool
	names       map[handle]struct{} // explicit subscriptions (EDS, RDS)
	pending     map[handle]struct{} // subscribed, not yet in a response
	res         map[handle]resEntry // what the proxy holds
	bytes       int64               // sum of res sizes
	digest      uint64              // sum of res hashes
	bodies      map[handle][]byte   // "keep" proxies only
}

type streamState int32

const (
	stateIdle streamState = iota
	stateRunning
	stateFailed
	stateClosed
)

type proxy struct {
	idx  int
	spec *proxySpec
	ztun bool

	mu    sync.Mutex
	state streamState
	types map[string]*typeState
	// sidecar / waypoint: what CDS and LDS made it follow, with reference counts
	clusterEDS  map[handle]handle
	edsRefs     map[handle]int32
	listenerRDS map[handle][]handle
	rdsRefs     map[handle]int32
	touched     []handle // EDS or RDS names whose count went to or from 0, this response
	ldsStarted  bool
	node        *core.Node // while some type's first request is still to be sent
	firsts      int        // first requests sent
}

// firstRequest marks ts requested and returns the Node for its first request (built
// once, dropped once every type the role can subscribe has had its first request).
func (p *proxy) firstRequest(ts *typeState) *core.Node {
	ts.requested = true
	if p.node == nil {
		p.node = p.spec.node()
	}
	n := p.node
	p.firsts++
	if (p.ztun && p.firsts >= 2) || p.firsts >= 4 {
		p.node = nil
	}
	return n
}

func newProxy(idx int, spec *proxySpec) *proxy {
	p := &proxy{idx: idx, spec: spec, ztun: spec.Role == "ztunnel", types: map[string]*typeState{}}
	if !p.ztun {
		p.clusterEDS = map[handle]handle{}
		p.edsRefs = map[handle]int32{}
		p.listenerRDS = map[handle][]handle{}
		p.rdsRefs = map[handle]int32{}
	}
	return p
}

func (p *proxy) typeState(url string) *typeState {
	ts := p.types[url]
	if ts == nil {
		ts = &typeState{url: url, res: map[handle]resEntry{}}
		if p.spec.Keep {
			ts.bodies = map[handle][]byte{}
		}
		p.types[url] = ts
	}
	return ts
}

// wildcardRequest is the first request of a wildcard type; under p.mu.
func (p *proxy) wildcardRequest(url string) *discovery.DeltaDiscoveryRequest {
	ts := p.typeState(url)
	ts.wildcard = true
	return &discovery.DeltaDiscoveryRequest{TypeUrl: url, Node: p.firstRequest(ts)}
}

// initialRequests are the requests sent when the stream opens.
func (p *proxy) initialRequests(ldsAfterCDS bool) []*discovery.DeltaDiscoveryRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ztun {
		return []*discovery.DeltaDiscoveryRequest{p.wildcardRequest(typeAddress), p.wildcardRequest(typeAuthzWDS)}
	}
	reqs := []*discovery.DeltaDiscoveryRequest{p.wildcardRequest(typeCDS)}
	if !ldsAfterCDS {
		reqs = append(reqs, p.wildcardRequest(typeLDS))
		p.ldsStarted = true
	}
	return reqs
}

// synced: the stream runs, every type subscribed has been answered and no subscribed
// name waits for its first response. Under p.mu.
func (p *proxy) syncedLocked() bool {
	if p.state != stateRunning {
		return false
	}
	if !p.ztun && !p.ldsStarted {
		return false
	}
	// a ztunnel's two wildcard requests may not be registered yet when its stream runs
	if p.ztun && p.firsts < 2 {
		return false
	}
	for _, ts := range p.types {
		if !ts.requested {
			continue
		}
		if ts.wildcard && !ts.gotResponse {
			return false
		}
		if len(ts.pending) > 0 {
			return false
		}
	}
	return true
}

func (p *proxy) setState(s streamState) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
}

// ---- the stream -----------------------------------------------------------------------

// run is the goroutine of one proxy's stream, from open to end. It is not retried.
func (a *app) runStream(ctx context.Context, p *proxy, cc *grpc.ClientConn) {
	defer a.wg.Done()
	var err error
	for attempt := 0; ; attempt++ {
		err = a.stream(ctx, p, cc)
		if ctx.Err() != nil {
			break
		}
		// istiod refuses a stream it cannot take now (its request rate limit:
		// ResourceExhausted; not ready: Unavailable) and expects the client to retry with
		// backoff, as Envoy does; a stream that already had a response is not retried.
		if attempt >= maxRetries || !retryable(err) || !p.resetIfUnanswered() {
			break
		}
		a.retries.Add(1)
		a.ev.streamEnd(time.Now().UnixNano(), p.idx, "retry", describeStreamErr(err))
		select {
		case <-ctx.Done():
		case <-time.After(backoff(attempt)):
		}
	}
	now := time.Now().UnixNano()
	a.open.Add(-1)
	if ctx.Err() != nil {
		p.setState(stateClosed)
		a.ev.streamEnd(now, p.idx, "close", "closed by mb-xdsload")
		return
	}
	p.setState(stateFailed)
	a.failed.Add(1)
	detail := describeStreamErr(err)
	a.ev.streamEnd(now, p.idx, "error", detail)
	a.addError(fmt.Sprintf("proxy %d (%s): stream: %s", p.idx, p.spec.ID, detail))
}

// maxRetries bounds the retries of one stream refused before its first response: Envoy
// retries for ever; at 30 s apart this is days, so the harness's own deadline ends it.
const maxRetries = 10000

func retryable(err error) bool {
	s, ok := status.FromError(err)
	return ok && (s.Code() == codes.ResourceExhausted || s.Code() == codes.Unavailable)
}

// backoff is Envoy's xDS retry: exponential from 500 ms, at most 30 s, fully jittered
// (half the interval fixed, half random) so that refused proxies do not return together.
func backoff(attempt int) time.Duration {
	d := 500 * time.Millisecond << attempt
	if d > 30*time.Second || d <= 0 {
		d = 30 * time.Second
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// resetIfUnanswered forgets what the refused stream asked for, so that the next stream
// starts as a new one (first requests carry the Node again); false when the proxy had
// already received a response (then it is not retried).
func (p *proxy) resetIfUnanswered() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ts := range p.types {
		if ts.gotResponse || len(ts.res) > 0 {
			return false
		}
	}
	fresh := newProxy(p.idx, p.spec)
	p.types, p.clusterEDS, p.edsRefs = fresh.types, fresh.clusterEDS, fresh.edsRefs
	p.listenerRDS, p.rdsRefs, p.touched = fresh.listenerRDS, fresh.rdsRefs, nil
	p.ldsStarted, p.node, p.firsts = false, nil, 0
	return true
}

func describeStreamErr(err error) string {
	if err == nil {
		return "stream ended"
	}
	if errors.Is(err, io.EOF) {
		return "stream ended by the server (EOF, status OK)"
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

func (a *app) stream(ctx context.Context, p *proxy, cc *grpc.ClientConn) error {
	st, err := cc.NewStream(ctx, &deltaDesc, deltaMethod, grpc.ForceCodecV2(rawCodec{}),
		grpc.MaxCallRecvMsgSize(a.cfg.maxRecvBytes))
	if err != nil {
		return err
	}
	for _, r := range p.initialRequests(a.cfg.ldsAfterCDS) {
		if err := send(st, r); err != nil {
			return err
		}
	}
	var msg rawMessage
	for {
		if err := st.RecvMsg(&msg); err != nil {
			msg.free()
			return err
		}
		t := time.Now().UnixNano()
		reqs := a.onResponse(p, msg.bytes(), t)
		msg.free()
		for _, r := range reqs {
			if err := send(st, r); err != nil {
				return err
			}
		}
	}
}

func send(st grpc.ClientStream, r *discovery.DeltaDiscoveryRequest) error {
	err := st.SendMsg(r)
	if errors.Is(err, io.EOF) {
		// the stream has ended: its status comes from RecvMsg
		var m rawMessage
		rerr := st.RecvMsg(&m)
		m.free()
		if rerr != nil {
			return rerr
		}
	}
	return err
}

// onResponse records one response and returns the requests it calls for: subscription
// changes of the types it led to, then its ACK (and LDS's first request, with
// --lds-after-cds, once CDS and its EDS are answered).
func (a *app) onResponse(p *proxy, raw []byte, t int64) []*discovery.DeltaDiscoveryRequest {
	a.responses.Add(1)
	a.bytes.Add(int64(len(raw)))
	a.noteLast(t)
	h, herr := scanResponseHeader(raw)
	url := string(h.typeURL)
	a.ev.response(t, p.idx, shortType(url), len(raw), h.resources, h.removed, a.mark.Load(), h.nonce)
	if herr != nil {
		a.decodeError(fmt.Sprintf("proxy %d: response of %d bytes (type %q): %v", p.idx, len(raw), url, herr))
		if len(h.nonce) == 0 {
			return nil // nothing to ACK
		}
		return []*discovery.DeltaDiscoveryRequest{{TypeUrl: url, ResponseNonce: string(h.nonce)}}
	}

	var reqs []*discovery.DeltaDiscoveryRequest
	var errs []string
	p.mu.Lock()
	ts := p.typeState(url)
	ts.gotResponse = true
	p.presizeLocked(ts, h.resources)
	err := forEachRemoved(raw, func(name []byte) {
		p.removeLocked(ts, intern(name))
	})
	if err == nil {
		err = forEachResource(raw, func(rb []byte) {
			if e := p.putLocked(ts, rb); e != nil && len(errs) < 5 {
				errs = append(errs, e.Error())
			}
		})
	}
	if err != nil {
		errs = append(errs, err.Error())
	}
	switch url {
	case typeCDS:
		if r := p.followLocked(typeEDS, p.edsRefs); r != nil {
			reqs = append(reqs, r)
		}
	case typeLDS:
		if r := p.followLocked(typeRDS, p.rdsRefs); r != nil {
			reqs = append(reqs, r)
		}
	}
	reqs = append(reqs, &discovery.DeltaDiscoveryRequest{TypeUrl: url, ResponseNonce: string(h.nonce)})
	if !p.ztun && !p.ldsStarted && (url == typeCDS || url == typeEDS) {
		eds := p.types[typeEDS]
		if eds == nil || len(eds.pending) == 0 {
			reqs = append(reqs, p.wildcardRequest(typeLDS))
			p.ldsStarted = true
		}
	}
	p.mu.Unlock()
	for _, e := range errs {
		a.decodeError(fmt.Sprintf("proxy %d %s: %s", p.idx, shortType(url), e))
	}
	return reqs
}

// presizeLocked makes the maps that n resources of ts's type will fill at their size at
// once, when they are empty (the first response): growing them step by step costs more
// CPU than the rest of the processing.
func (p *proxy) presizeLocked(ts *typeState, n int) {
	if n < 8 || len(ts.res) > 0 {
		return
	}
	ts.res = make(map[handle]resEntry, n)
	if ts.bodies != nil {
		ts.bodies = make(map[handle][]byte, n)
	}
	switch {
	case p.ztun:
	case ts.url == typeCDS && len(p.clusterEDS) == 0:
		p.clusterEDS = make(map[handle]handle, n)
		p.edsRefs = make(map[handle]int32, n)
		p.touched = make([]handle, 0, n)
	case ts.url == typeLDS && len(p.listenerRDS) == 0:
		p.listenerRDS = make(map[handle][]handle, n)
	}
}

func (p *proxy) dropLocked(ts *typeState, key handle) {
	if old, ok := ts.res[key]; ok {
		ts.bytes -= int64(old.size)
		ts.digest -= old.hash
		delete(ts.res, key)
	}
	if ts.bodies != nil {
		delete(ts.bodies, key)
	}
}

// removeLocked handles one removed resource name.
func (p *proxy) removeLocked(ts *typeState, key handle) {
	p.dropLocked(ts, key)
	delete(ts.pending, key) // answered: it does not exist
	switch ts.url {
	case typeCDS:
		if eds, ok := p.clusterEDS[key]; ok {
			delete(p.clusterEDS, key)
			p.unref(p.edsRefs, eds)
		}
	case typeLDS:
		if routes, ok := p.listenerRDS[key]; ok {
			delete(p.listenerRDS, key)
			for _, r := range routes {
				p.unref(p.rdsRefs, r)
			}
		}
	}
}

// putLocked stores one added or updated resource, and for clusters and listeners what
// they reference. A resource that cannot be decoded is still held (its bytes were
// received) but keeps what its previous version referenced, as Envoy keeps the previous
// version of a resource it rejects; the error is returned to be counted. Never a NACK.
func (p *proxy) putLocked(ts *typeState, rb []byte) error {
	r, err := scanResource(rb)
	if err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	name := r.name
	var cluster clusterInfo
	var clusterErr error
	var routes []handle
	var listenerErr error
	switch {
	case ts.url == typeCDS && !p.ztun:
		cluster, clusterErr = scanCluster(r.value)
		if len(name) == 0 {
			name = cluster.name
		}
	case ts.url == typeLDS && !p.ztun:
		var lname []byte
		var ferr error
		lname, ferr, listenerErr = scanListener(r.value, func(rn []byte) {
			h := intern(rn)
			for _, x := range routes {
				if x == h {
					return
				}
			}
			routes = append(routes, h)
		})
		if listenerErr == nil {
			listenerErr = ferr
		}
		if len(name) == 0 {
			name = lname
		}
	}
	key := intern(name)
	if old, ok := ts.res[key]; ok {
		ts.bytes -= int64(old.size)
		ts.digest -= old.hash
	}
	e := resEntry{size: uint32(len(r.value)), version: intern(r.version), hash: resourceHash(name, r.value)}
	ts.res[key] = e
	ts.bytes += int64(e.size)
	ts.digest += e.hash
	delete(ts.pending, key)
	if ts.bodies != nil {
		ts.bodies[key] = bytes.Clone(r.value)
	}

	switch {
	case ts.url == typeCDS && !p.ztun:
		if clusterErr != nil {
			return fmt.Errorf("cluster %q: %w", name, clusterErr)
		}
		old, had := p.clusterEDS[key]
		if cluster.eds {
			eds := intern(cluster.edsName)
			if !had || old != eds {
				p.ref(p.edsRefs, eds)
				if had {
					p.unref(p.edsRefs, old)
				}
				p.clusterEDS[key] = eds
			}
		} else if had {
			delete(p.clusterEDS, key)
			p.unref(p.edsRefs, old)
		}
	case ts.url == typeLDS && !p.ztun:
		if listenerErr != nil {
			return fmt.Errorf("listener %q: %w", name, listenerErr)
		}
		old := p.listenerRDS[key]
		for _, r := range routes {
			p.ref(p.rdsRefs, r)
		}
		for _, r := range old {
			p.unref(p.rdsRefs, r)
		}
		if len(routes) > 0 {
			p.listenerRDS[key] = routes
		} else {
			delete(p.listenerRDS, key)
		}
	}
	return nil
}

func (p *proxy) ref(refs map[handle]int32, h handle) {
	refs[h]++
	if refs[h] == 1 {
		p.touched = append(p.touched, h)
	}
}

func (p *proxy) unref(refs map[handle]int32, h handle) {
	n := refs[h] - 1
	if n <= 0 {
		delete(refs, h)
		p.touched = append(p.touched, h)
		return
	}
	refs[h] = n
}

// followLocked turns the names whose reference count went to or from 0 into one
// subscription change of type url (nil if nothing changed). The first request of a type
// carries the Node. Unsubscribed names are dropped from what the proxy holds.
func (p *proxy) followLocked(url string, refs map[handle]int32) *discovery.DeltaDiscoveryRequest {
	if len(p.touched) == 0 {
		return nil
	}
	ts := p.typeState(url)
	if ts.names == nil {
		ts.names = make(map[handle]struct{}, len(p.touched))
		ts.pending = make(map[handle]struct{}, len(p.touched))
		if len(ts.res) == 0 && len(p.touched) >= 8 {
			ts.res = make(map[handle]resEntry, len(p.touched))
		}
	}
	var sub, unsub []string
	for _, h := range p.touched {
		want := refs[h] > 0
		_, have := ts.names[h]
		switch {
		case want && !have:
			ts.names[h] = struct{}{}
			ts.pending[h] = struct{}{}
			sub = append(sub, h.Value())
		case !want && have:
			delete(ts.names, h)
			delete(ts.pending, h)
			p.dropLocked(ts, h)
			unsub = append(unsub, h.Value())
		}
	}
	p.touched = p.touched[:0]
	if len(sub) == 0 && len(unsub) == 0 {
		return nil
	}
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: url, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}
	if !ts.requested {
		req.Node = p.firstRequest(ts)
	}
	return req
}
