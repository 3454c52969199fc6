package main

// A small hand-written delta ADS server (as istiod answers): a request without a nonce
// that subscribes (or is a type's first) is answered with the resources of that type,
// all of them for a wildcard type, the newly subscribed ones otherwise; a request with a
// nonce is an ACK (or a NACK with error_detail) and is not answered; an unsubscribe alone
// is not answered. The test can push a type's full state to a node at any time.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

type fakeADS struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	t *testing.T

	mu        sync.Mutex
	resources map[string]map[string]*anypb.Any // type -> name -> resource (all nodes alike)
	reqs      map[string][]*discovery.DeltaDiscoveryRequest
	sent      map[string][]string // node -> nonces sent
	acked     map[string]map[string]bool
	nacks     int
	nodes     map[string]*discovery.DeltaDiscoveryRequest // first request of each node
	push      map[string]chan string                      // node -> types to push
	nonce     int
	badACKs   []string
	refuse    int // stream opens still to refuse as istiod's rate limit does
}

func newFakeADS(t *testing.T) *fakeADS {
	return &fakeADS{t: t, resources: map[string]map[string]*anypb.Any{}, reqs: map[string][]*discovery.DeltaDiscoveryRequest{},
		sent: map[string][]string{}, acked: map[string]map[string]bool{}, nodes: map[string]*discovery.DeltaDiscoveryRequest{},
		push: map[string]chan string{}}
}

func (s *fakeADS) set(typeURL string, msgs map[string]proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]*anypb.Any{}
	for name, msg := range msgs {
		m[name] = mustAny(s.t, msg)
	}
	s.resources[typeURL] = m
}

func (s *fakeADS) setRaw(typeURL string, m map[string]*anypb.Any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resources[typeURL] = m
}

func wildcardType(u string) bool {
	return u == typeCDS || u == typeLDS || u == typeAddress || u == typeAuthzWDS
}

func (s *fakeADS) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	s.mu.Lock()
	refused := s.refuse > 0
	if refused {
		s.refuse--
	}
	s.mu.Unlock()
	if refused {
		return status.Error(codes.ResourceExhausted, "request rate limit exceeded")
	}
	first, err := st.Recv()
	if err != nil {
		return err
	}
	id := first.GetNode().GetId()
	pushCh := make(chan string, 16)
	s.mu.Lock()
	s.nodes[id] = first
	s.push[id] = pushCh
	s.acked[id] = map[string]bool{}
	s.mu.Unlock()
	reqCh := make(chan *discovery.DeltaDiscoveryRequest, 16)
	go func() {
		defer close(reqCh)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			reqCh <- r
		}
	}()
	// per type: subscribed names (nil map: wildcard), last state sent
	subs := map[string]map[string]bool{}
	sentNames := map[string]map[string]bool{}
	respond := func(typeURL string, names []string, full bool) error {
		s.mu.Lock()
		all := s.resources[typeURL]
		resp := &discovery.DeltaDiscoveryResponse{TypeUrl: typeURL}
		if sentNames[typeURL] == nil {
			sentNames[typeURL] = map[string]bool{}
		}
		seen := map[string]bool{}
		add := func(n string) {
			if a, ok := all[n]; ok {
				resp.Resources = append(resp.Resources, &discovery.Resource{Name: n, Version: "v1", Resource: a})
				sentNames[typeURL][n] = true
				seen[n] = true
			} else if typeURL == typeEDS || typeURL == typeRDS {
				// istiod answers every requested name; an unknown one gets an empty resource
				var m proto.Message = &endpoint.ClusterLoadAssignment{ClusterName: n}
				if typeURL == typeRDS {
					m = &route.RouteConfiguration{Name: n}
				}
				resp.Resources = append(resp.Resources, &discovery.Resource{Name: n, Resource: mustAny(s.t, m)})
				seen[n] = true
			}
		}
		if names == nil {
			keys := make([]string, 0, len(all))
			for n := range all {
				keys = append(keys, n)
			}
			slices.Sort(keys)
			for _, n := range keys {
				add(n)
			}
		} else {
			for _, n := range names {
				add(n)
			}
		}
		if full && wildcardType(typeURL) {
			for n := range sentNames[typeURL] {
				if !seen[n] {
					resp.RemovedResources = append(resp.RemovedResources, n)
					delete(sentNames[typeURL], n)
				}
			}
		}
		s.nonce++
		resp.Nonce = fmt.Sprintf("nonce-%d", s.nonce)
		s.sent[id] = append(s.sent[id], resp.Nonce)
		s.mu.Unlock()
		return st.Send(resp)
	}
	handle := func(r *discovery.DeltaDiscoveryRequest) error {
		s.mu.Lock()
		s.reqs[id] = append(s.reqs[id], r)
		if r.ResponseNonce != "" {
			if r.ErrorDetail != nil {
				s.nacks++
			}
			if !slices.Contains(s.sent[id], r.ResponseNonce) {
				s.badACKs = append(s.badACKs, r.ResponseNonce)
			}
			s.acked[id][r.ResponseNonce] = true
			if len(r.ResourceNamesSubscribe) > 0 || len(r.ResourceNamesUnsubscribe) > 0 {
				s.badACKs = append(s.badACKs, "ACK with subscription change: "+r.ResponseNonce)
			}
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		u := r.TypeUrl
		_, known := subs[u]
		if !known {
			if len(r.ResourceNamesSubscribe) == 0 {
				subs[u] = nil
			} else {
				subs[u] = map[string]bool{}
			}
		}
		var newNames []string
		if subs[u] != nil {
			for _, n := range r.ResourceNamesSubscribe {
				if !subs[u][n] {
					subs[u][n] = true
					newNames = append(newNames, n)
				}
			}
			for _, n := range r.ResourceNamesUnsubscribe {
				delete(subs[u], n)
			}
			if len(newNames) == 0 {
				return nil // unsubscribe only: istiod does not answer
			}
			return respond(u, newNames, false)
		}
		return respond(u, nil, true)
	}
	if err := handle(first); err != nil {
		return err
	}
	for {
		select {
		case r, ok := <-reqCh:
			if !ok {
				return nil
			}
			if err := handle(r); err != nil {
				return err
			}
		case u := <-pushCh:
			if _, ok := subs[u]; !ok {
				continue
			}
			var names []string
			if subs[u] != nil {
				names = slices.Sorted(func(yield func(string) bool) {
					for n := range subs[u] {
						if !yield(n) {
							return
						}
					}
				})
			}
			if err := respond(u, names, true); err != nil {
				return err
			}
		}
	}
}

func (s *fakeADS) pushTo(id, typeURL string) {
	s.mu.Lock()
	ch := s.push[id]
	s.mu.Unlock()
	ch <- typeURL
}

func (s *fakeADS) requests(id string) []*discovery.DeltaDiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs[id])
}

func (s *fakeADS) allACKed(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.sent[id] {
		if !s.acked[id][n] {
			return false
		}
	}
	return len(s.sent[id]) > 0
}

func startFake(t *testing.T) (*fakeADS, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := newFakeADS(t)
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return fake, lis.Addr().String()
}

func sidecarConfig(t *testing.T, fake *fakeADS) {
	fake.set(typeCDS, map[string]proto.Message{
		"outbound|80||a.ns.svc.cluster.local": edsCluster("outbound|80||a.ns.svc.cluster.local", "outbound|80||a.ns.svc.cluster.local"),
		"outbound|80||b.ns.svc.cluster.local": edsCluster("outbound|80||b.ns.svc.cluster.local", ""),
		"BlackHoleCluster":                    &cluster.Cluster{Name: "BlackHoleCluster"},
	})
	fake.set(typeLDS, map[string]proto.Message{
		"0.0.0.0_80": &listener.Listener{Name: "0.0.0.0_80", FilterChains: []*listener.FilterChain{
			{Filters: []*listener.Filter{unknownFilter(), hcmRdsFilter(t, "80")}}}},
		"virtualInbound": &listener.Listener{Name: "virtualInbound",
			DefaultFilterChain: &listener.FilterChain{Filters: []*listener.Filter{hcmRdsFilter(t, "inbound|8080||")}}},
		"weird":  &listener.Listener{Name: "weird", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{unknownFilter()}}}},
		"broken": &listener.Listener{Name: "broken", FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{brokenHCMFilter()}}}},
	})
	fake.set(typeEDS, map[string]proto.Message{
		"outbound|80||a.ns.svc.cluster.local": &endpoint.ClusterLoadAssignment{ClusterName: "outbound|80||a.ns.svc.cluster.local"},
	})
	fake.set(typeRDS, map[string]proto.Message{
		"80": &route.RouteConfiguration{Name: "80", VirtualHosts: []*route.VirtualHost{{Name: "a", Domains: []string{"*"}}}},
	})
	fake.setRaw(typeAddress, map[string]*anypb.Any{
		"Kubernetes//Pod/ns/a": {TypeUrl: typeAddress, Value: []byte("not decoded")},
		"ns/a.ns.svc":          {TypeUrl: typeAddress, Value: []byte("xx")},
	})
	fake.setRaw(typeAuthzWDS, map[string]*anypb.Any{
		"ns/allow": {TypeUrl: typeAuthzWDS, Value: []byte("p")},
	})
}

func newTestApp(t *testing.T, addr string, specs []proxySpec, ldsAfterCDS bool) (*app, string) {
	t.Helper()
	dir := t.TempDir()
	evPath := filepath.Join(dir, "events.jsonl")
	ev, err := openEvents(evPath)
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(config{addr: addr, streamsPerConn: 2, maxRecvBytes: 64 << 20, ldsAfterCDS: ldsAfterCDS}, specs, ev)
	t.Cleanup(func() { a.shutdown(5 * time.Second) })
	return a, evPath
}

func cmd(t *testing.T, a *app, line string) reply {
	t.Helper()
	r, _ := a.handle([]byte(line))
	// through JSON, as the caller sees it
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out reply
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testSpecs() []proxySpec {
	md := json.RawMessage(`{"NAMESPACE":"ns","ISTIO_VERSION":"1.31.0","LABELS":{"app":"a"}}`)
	return []proxySpec{
		{ID: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", Role: "sidecar", Cluster: "Kubernetes", Metadata: md, Keep: true},
		{ID: "sidecar~10.0.0.2~b.ns~ns.svc.cluster.local", Role: "sidecar", Cluster: "Kubernetes", Metadata: md},
		{ID: "ztunnel~10.0.0.3~ztunnel-x.istio-system~istio-system.svc.cluster.local", Role: "ztunnel", Cluster: "Kubernetes"},
		{ID: "waypoint~10.0.0.4~waypoint-x.ns~ns.svc.cluster.local", Role: "waypoint", Cluster: "Kubernetes", Metadata: md},
	}
}

func subscribed(reqs []*discovery.DeltaDiscoveryRequest, typeURL string) []string {
	set := map[string]bool{}
	for _, r := range reqs {
		if r.TypeUrl != typeURL {
			continue
		}
		for _, n := range r.ResourceNamesSubscribe {
			set[n] = true
		}
		for _, n := range r.ResourceNamesUnsubscribe {
			delete(set, n)
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func num(t *testing.T, r reply, key string) int64 {
	t.Helper()
	v, ok := r[key].(float64)
	if !ok {
		t.Fatalf("reply %v: %q is not a number", r, key)
	}
	return int64(v)
}

func TestSidecarsAndZtunnel(t *testing.T) {
	fake, addr := startFake(t)
	sidecarConfig(t, fake)
	specs := testSpecs()
	a, evPath := newTestApp(t, addr, specs, false)

	if r := cmd(t, a, `{"cmd":"connect","from":0,"to":4}`); r["ok"] != true || num(t, r, "connected") != 4 {
		t.Fatalf("connect: %v", r)
	}
	waitFor(t, "4 synced", func() bool { return num(t, cmd(t, a, `{"cmd":"status"}`), "synced") == 4 })
	for _, s := range specs {
		waitFor(t, s.ID+" ACKed everything", func() bool { return fake.allACKed(s.ID) })
	}

	sc := specs[0].ID
	reqs := fake.requests(sc)
	// CDS then LDS first, each with the Node, wildcard
	if reqs[0].TypeUrl != typeCDS || reqs[0].Node.GetId() != sc || len(reqs[0].ResourceNamesSubscribe) != 0 {
		t.Errorf("first request %v", reqs[0])
	}
	if reqs[0].Node.GetCluster() != "Kubernetes" || reqs[0].Node.GetMetadata().GetFields()["NAMESPACE"].GetStringValue() != "ns" {
		t.Errorf("node %v", reqs[0].Node)
	}
	if reqs[1].TypeUrl != typeLDS || reqs[1].Node.GetId() != sc {
		t.Errorf("second request %v", reqs[1])
	}
	if got, want := subscribed(reqs, typeEDS), []string{"outbound|80||a.ns.svc.cluster.local", "outbound|80||b.ns.svc.cluster.local"}; !slices.Equal(got, want) {
		t.Errorf("EDS %v, want %v", got, want)
	}
	if got, want := subscribed(reqs, typeRDS), []string{"80", "inbound|8080||"}; !slices.Equal(got, want) {
		t.Errorf("RDS %v, want %v", got, want)
	}
	for _, r := range reqs {
		if r.ErrorDetail != nil {
			t.Errorf("NACK: %v", r)
		}
	}
	// each type's first request carries the node, later ones not
	firstOf := map[string]bool{}
	for _, r := range reqs {
		if !firstOf[r.TypeUrl] {
			firstOf[r.TypeUrl] = true
			if r.Node.GetId() != sc {
				t.Errorf("first %s request without node", shortType(r.TypeUrl))
			}
		} else if r.Node != nil {
			t.Errorf("later %s request with node", shortType(r.TypeUrl))
		}
	}

	zt := specs[2].ID
	zreqs := fake.requests(zt)
	var ztypes []string
	for _, r := range zreqs {
		if r.ResponseNonce == "" {
			ztypes = append(ztypes, r.TypeUrl)
			if len(r.ResourceNamesSubscribe) != 0 || r.Node.GetId() != zt {
				t.Errorf("ztunnel request %v", r)
			}
		}
	}
	if !slices.Equal(ztypes, []string{typeAddress, typeAuthzWDS}) {
		t.Errorf("ztunnel subscriptions %v", ztypes)
	}

	fake.mu.Lock()
	if fake.nacks != 0 || len(fake.badACKs) != 0 {
		t.Errorf("nacks %d, bad ACKs %v", fake.nacks, fake.badACKs)
	}
	fake.mu.Unlock()

	st := cmd(t, a, `{"cmd":"status"}`)
	// the broken HCM, once per Envoy-like proxy
	if num(t, st, "decode_errors") != 3 || num(t, st, "streams_failed") != 0 || num(t, st, "connected") != 4 {
		t.Errorf("status %v", st)
	}
	if errs, _ := st["errors"].([]any); len(errs) != 3 || !strings.Contains(fmt.Sprint(errs[0]), "broken") {
		t.Errorf("errors %v", st["errors"])
	}
	if num(t, st, "responses") == 0 || num(t, st, "bytes") == 0 || num(t, st, "last_response_ns") < time.Now().Add(-time.Minute).UnixNano() {
		t.Errorf("status %v", st)
	}

	// held: every proxy, counts and bytes per type
	dir := t.TempDir()
	heldPath := filepath.Join(dir, "held.json")
	if r := cmd(t, a, fmt.Sprintf(`{"cmd":"held","path":%q}`, heldPath)); r["ok"] != true {
		t.Fatal(r)
	}
	held := readHeld(t, heldPath)
	want := map[string]int64{typeCDS: 3, typeLDS: 4, typeEDS: 2, typeRDS: 2}
	for _, i := range []string{"0", "1", "3"} {
		for u, n := range want {
			if held[i][u].N != n {
				t.Errorf("held[%s][%s] = %v, want %d resources", i, shortType(u), held[i][u], n)
			}
		}
	}
	if held["2"][typeAddress].N != 2 || held["2"][typeAuthzWDS].N != 1 || held["2"][typeAuthzWDS].B != 1 {
		t.Errorf("ztunnel held %v", held["2"])
	}
	var cdsBytes int64
	fake.mu.Lock()
	for _, a := range fake.resources[typeCDS] {
		cdsBytes += int64(len(a.Value))
	}
	fake.mu.Unlock()
	if held["0"][typeCDS].B != cdsBytes {
		t.Errorf("CDS bytes %d, want %d", held["0"][typeCDS].B, cdsBytes)
	}
	// the same config held, the same digests
	for u := range want {
		if held["0"][u].D != held["1"][u].D || held["0"][u].D == "0000000000000000" {
			t.Errorf("%s digests %s, %s", shortType(u), held["0"][u].D, held["1"][u].D)
		}
	}

	// dump: bodies of the kept proxy
	dumpPath := filepath.Join(dir, "dump.json")
	r := cmd(t, a, fmt.Sprintf(`{"cmd":"dump","proxies":[0,1],"path":%q}`, dumpPath))
	if r["ok"] != true || fmt.Sprint(r["not_kept"]) != "[1]" {
		t.Fatalf("dump: %v", r)
	}
	var dump map[string]map[string]map[string]string
	readJSON(t, dumpPath, &dump)
	if len(dump["1"]) != 0 || len(dump["0"][typeCDS]) != 3 || len(dump["0"][typeRDS]) != 2 {
		t.Fatalf("dump %v", dump)
	}
	body, err := base64.StdEncoding.DecodeString(dump["0"][typeCDS]["outbound|80||b.ns.svc.cluster.local"])
	if err != nil {
		t.Fatal(err)
	}
	var c cluster.Cluster
	if err := proto.Unmarshal(body, &c); err != nil || c.Name != "outbound|80||b.ns.svc.cluster.local" {
		t.Errorf("dumped cluster %v %v", &c, err)
	}
	if r := cmd(t, a, `{"cmd":"dump","proxies":[9],"path":"/nonexistent/x"}`); r["ok"] != false {
		t.Errorf("dump out of range: %v", r)
	}

	// a change after a mark: cluster b and the inbound listener go away
	if r := cmd(t, a, `{"cmd":"mark"}`); num(t, r, "mark") != 1 {
		t.Fatalf("mark %v", r)
	}
	fake.set(typeCDS, map[string]proto.Message{
		"outbound|80||a.ns.svc.cluster.local": edsCluster("outbound|80||a.ns.svc.cluster.local", "outbound|80||a.ns.svc.cluster.local"),
		"BlackHoleCluster":                    &cluster.Cluster{Name: "BlackHoleCluster"},
	})
	fake.set(typeLDS, map[string]proto.Message{
		"0.0.0.0_80": &listener.Listener{Name: "0.0.0.0_80", FilterChains: []*listener.FilterChain{
			{Filters: []*listener.Filter{hcmRdsFilter(t, "80")}}}},
	})
	before := len(fake.requests(sc))
	fake.pushTo(sc, typeCDS)
	fake.pushTo(sc, typeLDS)
	waitFor(t, "unsubscriptions", func() bool {
		reqs := fake.requests(sc)
		return len(subscribed(reqs, typeEDS)) == 1 && len(subscribed(reqs, typeRDS)) == 1
	})
	waitFor(t, "ACKs after the change", func() bool { return fake.allACKed(sc) })
	after := fake.requests(sc)[before:]
	for _, r := range after {
		if r.ResponseNonce == "" && len(r.ResourceNamesSubscribe) > 0 {
			t.Errorf("unexpected subscription %v", r)
		}
	}
	waitFor(t, "held after the change", func() bool {
		if r := cmd(t, a, fmt.Sprintf(`{"cmd":"held","path":%q}`, heldPath)); r["ok"] != true {
			t.Fatal(r)
		}
		h := readHeld(t, heldPath)["0"]
		return h[typeCDS].N == 2 && h[typeLDS].N == 1 && h[typeEDS].N == 1 && h[typeRDS].N == 1
	})
	changed := readHeld(t, heldPath)
	for u := range want {
		if changed["0"][u].D == held["0"][u].D {
			t.Errorf("%s digest unchanged after the change", shortType(u))
		}
		if changed["1"][u] != held["1"][u] {
			t.Errorf("proxy 1's %s changed: %v -> %v", shortType(u), held["1"][u], changed["1"][u])
		}
	}
	if changed["2"][typeAddress] != held["2"][typeAddress] {
		t.Errorf("ztunnel's held changed")
	}
	if n := num(t, cmd(t, a, `{"cmd":"status"}`), "synced"); n != 4 {
		t.Errorf("synced %d after the change", n)
	}

	// close: every stream ends with a "close" event; the events file is complete
	if r, exit := a.handle([]byte(`{"cmd":"close"}`)); r["ok"] != true || !exit {
		t.Fatalf("close: %v %v", r, exit)
	}
	lines := readEvents(t, evPath)
	var marked, closes, responses int
	types := map[string]bool{}
	for _, e := range lines {
		if ev, ok := e["event"]; ok {
			if ev != "close" {
				t.Errorf("event %v", e)
			}
			closes++
			continue
		}
		responses++
		types[e["type"].(string)] = true
		for _, k := range []string{"t", "p", "type", "bytes", "n", "rm", "mark", "nonce"} {
			if _, ok := e[k]; !ok {
				t.Errorf("event without %s: %v", k, e)
			}
		}
		if e["mark"].(float64) == 1 {
			marked++
			if e["p"].(float64) != 0 {
				t.Errorf("marked event of proxy %v", e["p"])
			}
		}
	}
	if closes != 4 || marked != 2 {
		t.Errorf("closes %d, marked responses %d", closes, marked)
	}
	for _, ty := range []string{"cds", "eds", "lds", "rds", "wds_address", "wds_authorization"} {
		if !types[ty] {
			t.Errorf("no %s event", ty)
		}
	}
	if st := cmd(t, a, `{"cmd":"status"}`); int64(responses) != num(t, st, "responses") {
		t.Errorf("%d response events, status says %v", responses, st["responses"])
	}
}

// --lds-after-cds: LDS only once CDS and its EDS are answered.
func TestLDSAfterCDS(t *testing.T) {
	fake, addr := startFake(t)
	sidecarConfig(t, fake)
	specs := testSpecs()[:1]
	a, _ := newTestApp(t, addr, specs, true)
	cmd(t, a, `{"cmd":"connect","from":0,"to":1}`)
	waitFor(t, "synced", func() bool { return num(t, cmd(t, a, `{"cmd":"status"}`), "synced") == 1 })
	var order []string
	for _, r := range fake.requests(specs[0].ID) {
		if r.ResponseNonce == "" {
			order = append(order, shortType(r.TypeUrl))
		}
	}
	if !slices.Equal(order, []string{"cds", "eds", "lds", "rds"}) {
		t.Errorf("subscription order %v", order)
	}
}

// A stream refused by istiod's rate limit before any response is retried with backoff,
// as Envoy does, and syncs on the next stream; the retry is counted.
func TestRateLimitedStreamIsRetried(t *testing.T) {
	fake, addr := startFake(t)
	fake.mu.Lock()
	fake.refuse = 1
	fake.mu.Unlock()
	a, evPath := newTestApp(t, addr, testSpecs(), false)
	cmd(t, a, `{"cmd":"connect","from":2,"to":3}`)
	waitFor(t, "synced after a retry", func() bool { return num(t, cmd(t, a, `{"cmd":"status"}`), "synced") == 1 })
	st := cmd(t, a, `{"cmd":"status"}`)
	if num(t, st, "retries") != 1 || num(t, st, "streams_failed") != 0 {
		t.Errorf("status %v", st)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.nodes) != 1 {
		t.Errorf("the retried stream's first request carries no Node: %v", fake.nodes)
	}
	cmd(t, a, `{"cmd":"flush"}`)
	if lines := readEvents(t, evPath); len(lines) == 0 || lines[0]["event"] != "retry" {
		t.Errorf("events %v", lines)
	}
}

// A stream that istiod refuses for good (not a rate limit) is recorded, not retried.
func TestStreamFailure(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer() // no ADS service: Unimplemented
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	a, evPath := newTestApp(t, lis.Addr().String(), testSpecs(), false)
	cmd(t, a, `{"cmd":"connect","from":1,"to":3}`)
	waitFor(t, "failures", func() bool { return num(t, cmd(t, a, `{"cmd":"status"}`), "streams_failed") == 2 })
	st := cmd(t, a, `{"cmd":"status"}`)
	if num(t, st, "connected") != 0 || num(t, st, "synced") != 0 || !strings.Contains(fmt.Sprint(st["errors"]), "Unimplemented") {
		t.Errorf("status %v", st)
	}
	if r := cmd(t, a, `{"cmd":"connect","from":1,"to":3}`); num(t, r, "opened") != 0 {
		t.Errorf("reconnected: %v", r)
	}
	cmd(t, a, `{"cmd":"flush"}`)
	lines := readEvents(t, evPath)
	if len(lines) != 2 || lines[0]["event"] != "error" {
		t.Errorf("events %v", lines)
	}
}

func TestCommandErrors(t *testing.T) {
	a, _ := newTestApp(t, "127.0.0.1:1", testSpecs(), false)
	for _, line := range []string{`not json`, `{"cmd":"nope"}`, `{}`, `{"cmd":"connect","from":3,"to":9}`,
		`{"cmd":"connect"}`, `{"cmd":"held"}`, `{"cmd":"dump","proxies":[0]}`} {
		r := cmd(t, a, line)
		if r["ok"] != false || r["error"] == "" {
			t.Errorf("%s: %v", line, r)
		}
	}
}

// The command loop as a process runs it: one reply line per command, EOF closes.
func TestRunLoop(t *testing.T) {
	fake, addr := startFake(t)
	sidecarConfig(t, fake)
	dir := t.TempDir()
	pp := filepath.Join(dir, "proxies.json")
	b, _ := json.Marshal(testSpecs())
	if err := os.WriteFile(pp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	evPath := filepath.Join(dir, "ev.jsonl")
	in := strings.Join([]string{`{"cmd":"connect","from":0,"to":4}`, `bad`, ``, `{"cmd":"mark"}`, `{"cmd":"status"}`,
		`{"cmd":"flush"}`}, "\n") + "\n"
	var out bytes.Buffer
	code := run([]string{"--addr", addr, "--proxies", pp, "--events", evPath}, strings.NewReader(in), &out)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	replies := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(replies) != 5 {
		t.Fatalf("replies %q", replies)
	}
	for i, want := range []string{`"ok":true`, `"ok":false`, `"mark":1`, `"ok":true`, `"ok":true`} {
		if !strings.Contains(replies[i], want) {
			t.Errorf("reply %d %s: want %s", i, replies[i], want)
		}
	}
	// EOF closed every stream, and the file got their close events
	closes := 0
	for _, e := range readEvents(t, evPath) {
		if e["event"] == "close" {
			closes++
		}
	}
	if closes != 4 {
		t.Errorf("%d close events", closes)
	}
	if code := run([]string{"--proxies", filepath.Join(dir, "missing.json"), "--events", evPath}, strings.NewReader(""), &out); code != 2 {
		t.Errorf("missing proxies file: exit %d", code)
	}
}

func TestLoadProxiesValidation(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{`{}`, `[{"id":"","role":"sidecar"}]`, `[{"id":"x","role":"gateway"}]`,
		`[{"id":"x","role":"sidecar","metadata":[1]}]`} {
		p := filepath.Join(dir, "p.json")
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := loadProxies(p); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// heldVal is one [count, bytes, "digest"] of held's file.
type heldVal struct {
	N, B int64
	D    string
}

func (h *heldVal) UnmarshalJSON(b []byte) error {
	var v [3]any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n, ok1 := v[0].(float64)
	bb, ok2 := v[1].(float64)
	d, ok3 := v[2].(string)
	if !ok1 || !ok2 || !ok3 || len(d) != 16 {
		return fmt.Errorf("held value %s", b)
	}
	h.N, h.B, h.D = int64(n), int64(bb), d
	return nil
}

func readHeld(t *testing.T, path string) map[string]map[string]heldVal {
	var h map[string]map[string]heldVal
	readJSON(t, path, &h)
	return h
}

func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
