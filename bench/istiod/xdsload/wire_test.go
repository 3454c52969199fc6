package main

import (
	"bytes"
	"slices"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The field numbers of wire.go, checked against the generated descriptors.
func TestFieldNumbers(t *testing.T) {
	check := func(m proto.Message, field string, want protowireNumber) {
		t.Helper()
		fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(field))
		if fd == nil {
			t.Fatalf("%s has no field %s", m.ProtoReflect().Descriptor().FullName(), field)
		}
		if protowireNumber(fd.Number()) != want {
			t.Errorf("%s.%s is %d, wire.go says %d", m.ProtoReflect().Descriptor().FullName(), field, fd.Number(), want)
		}
	}
	check(&discovery.DeltaDiscoveryResponse{}, "resources", respResources)
	check(&discovery.DeltaDiscoveryResponse{}, "type_url", respTypeURL)
	check(&discovery.DeltaDiscoveryResponse{}, "nonce", respNonce)
	check(&discovery.DeltaDiscoveryResponse{}, "removed_resources", respRemovedResources)
	check(&discovery.DeltaDiscoveryResponse{}, "removed_resource_names", respRemovedResourceNames)
	check(&discovery.Resource{}, "version", resVersion)
	check(&discovery.Resource{}, "resource", resResource)
	check(&discovery.Resource{}, "name", resName)
	check(&discovery.Resource{}, "resource_name", resResourceName)
	check(&discovery.ResourceName{}, "name", resourceNameName)
	check(&anypb.Any{}, "type_url", anyTypeURL)
	check(&anypb.Any{}, "value", anyValue)
	check(&cluster.Cluster{}, "name", clusterName)
	check(&cluster.Cluster{}, "type", clusterType)
	check(&cluster.Cluster{}, "eds_cluster_config", clusterEdsClusterConfig)
	check(&cluster.Cluster{}, "cluster_type", clusterClusterType)
	check(&cluster.Cluster_EdsClusterConfig{}, "service_name", edsServiceName)
	check(&listener.Listener{}, "name", listenerName)
	check(&listener.Listener{}, "filter_chains", listenerFilterChains)
	check(&listener.Listener{}, "default_filter_chain", listenerDefaultFilterChain)
	check(&listener.FilterChain{}, "filters", filterChainFilters)
	check(&listener.Filter{}, "typed_config", filterTypedConfig)
	check(&hcm.HttpConnectionManager{}, "rds", hcmRds)
	check(&hcm.Rds{}, "route_config_name", rdsRouteConfigName)
	if int32(cluster.Cluster_EDS) != clusterDiscoveryTypeEDS {
		t.Errorf("Cluster_EDS is %d", cluster.Cluster_EDS)
	}
	if got := string((&hcm.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName()); "type.googleapis.com/"+got != hcmTypeURL {
		t.Errorf("hcm type URL %s", got)
	}
}

type protowireNumber = int32

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func edsCluster(name, service string) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{
			ServiceName: service,
			EdsConfig:   &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}},
		},
	}
}

func TestScanCluster(t *testing.T) {
	cases := []struct {
		c       *cluster.Cluster
		eds     bool
		edsName string
	}{
		{edsCluster("outbound|80||a.ns.svc.cluster.local", "outbound|80||a.ns.svc.cluster.local"), true, "outbound|80||a.ns.svc.cluster.local"},
		{edsCluster("outbound|80|v1|b", "svc-b"), true, "svc-b"},
		{edsCluster("c-no-service", ""), true, "c-no-service"},
		{&cluster.Cluster{Name: "BlackHoleCluster", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}}, false, ""},
		{&cluster.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}}, false, ""},
		{&cluster.Cluster{Name: "custom", ClusterDiscoveryType: &cluster.Cluster_ClusterType{
			ClusterType: &cluster.Cluster_CustomClusterType{Name: "envoy.clusters.aggregate"}}}, false, ""},
	}
	for _, tc := range cases {
		got, err := scanCluster(mustMarshal(t, tc.c))
		if err != nil {
			t.Fatalf("%s: %v", tc.c.Name, err)
		}
		if string(got.name) != tc.c.Name || got.eds != tc.eds || string(got.edsName) != tc.edsName {
			t.Errorf("%s: got name=%q eds=%v edsName=%q", tc.c.Name, got.name, got.eds, got.edsName)
		}
	}
	if _, err := scanCluster([]byte{0x0a, 0x50, 'x'}); err == nil {
		t.Error("truncated cluster: no error")
	}
}

func hcmRdsFilter(t testing.TB, routeName string) *listener.Filter {
	return &listener.Filter{
		Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(t, &hcm.HttpConnectionManager{
			StatPrefix: "x",
			RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
				RouteConfigName: routeName,
				ConfigSource:    &core.ConfigSource{ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}},
			}},
			HttpFilters: []*hcm.HttpFilter{{Name: "some.unknown.filter", ConfigType: &hcm.HttpFilter_TypedConfig{
				TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/not.a.Known", Value: []byte{0xff, 0xff}}}}},
		})},
	}
}

func unknownFilter() *listener.Filter {
	return &listener.Filter{Name: "istio.stats", ConfigType: &listener.Filter_TypedConfig{TypedConfig: &anypb.Any{
		TypeUrl: "type.googleapis.com/some.unknown.Type", Value: []byte{0xff, 0xfe, 0x01}}}}
}

func brokenHCMFilter() *listener.Filter {
	return &listener.Filter{Name: "broken", ConfigType: &listener.Filter_TypedConfig{TypedConfig: &anypb.Any{
		TypeUrl: hcmTypeURL, Value: []byte{0x1a, 0x40, 0x12}}}} // rds, length 64, 1 byte: truncated
}

func inlineRouteFilter(t testing.TB) *listener.Filter {
	return &listener.Filter{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(t, &hcm.HttpConnectionManager{
			RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{Name: "inline"}},
		})}}
}

func TestScanListener(t *testing.T) {
	l := &listener.Listener{
		Name: "0.0.0.0_80",
		FilterChains: []*listener.FilterChain{
			{Filters: []*listener.Filter{unknownFilter(), hcmRdsFilter(t, "80")}},
			{Filters: []*listener.Filter{inlineRouteFilter(t)}},
			{Filters: []*listener.Filter{hcmRdsFilter(t, "8080")}},
		},
		DefaultFilterChain: &listener.FilterChain{Filters: []*listener.Filter{hcmRdsFilter(t, "default-route")}},
	}
	var routes []string
	name, ferr, err := scanListener(mustMarshal(t, l), func(n []byte) { routes = append(routes, string(n)) })
	if err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	if string(name) != "0.0.0.0_80" {
		t.Errorf("name %q", name)
	}
	slices.Sort(routes)
	if want := []string{"80", "8080", "default-route"}; !slices.Equal(routes, want) {
		t.Errorf("routes %v, want %v", routes, want)
	}

	// an HCM that cannot be decoded: reported, the other filters still read
	l.FilterChains = append(l.FilterChains, &listener.FilterChain{Filters: []*listener.Filter{brokenHCMFilter()}})
	routes = nil
	_, ferr, err = scanListener(mustMarshal(t, l), func(n []byte) { routes = append(routes, string(n)) })
	if err != nil || ferr == nil {
		t.Fatalf("broken HCM: err=%v filterErr=%v", err, ferr)
	}
	if len(routes) != 3 {
		t.Errorf("routes %v", routes)
	}
}

func TestScanResponse(t *testing.T) {
	c := edsCluster("a", "")
	resp := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           typeCDS,
		Nonce:             "n-1",
		SystemVersionInfo: "v1",
		Resources: []*discovery.Resource{
			{Name: "a", Version: "v-a", Resource: mustAny(t, c)},
			{ResourceName: &discovery.ResourceName{Name: "b"}, Resource: mustAny(t, edsCluster("b", "sb"))},
		},
		RemovedResources:     []string{"x", "y"},
		RemovedResourceNames: []*discovery.ResourceName{{Name: "z"}},
	}
	raw := mustMarshal(t, resp)
	h, err := scanResponseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(h.typeURL) != typeCDS || string(h.nonce) != "n-1" || h.resources != 2 || h.removed != 3 {
		t.Errorf("header %+v", h)
	}
	var removed []string
	if err := forEachRemoved(raw, func(n []byte) { removed = append(removed, string(n)) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"x", "y", "z"}) {
		t.Errorf("removed %v", removed)
	}
	var got []wireResource
	if err := forEachResource(raw, func(b []byte) {
		r, err := scanResource(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].name) != "a" || string(got[0].version) != "v-a" || string(got[1].name) != "b" {
		t.Fatalf("resources %+v", got)
	}
	if string(got[0].typeURL) != typeCDS || !bytes.Equal(got[0].value, mustAny(t, c).Value) {
		t.Errorf("resource a's Any: %q", got[0].typeURL)
	}
	if _, err := scanResponseHeader(raw[:len(raw)-3]); err == nil {
		t.Error("truncated response: no error")
	}
}

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         `"plain"`,
		"q\"b\\":        `"q\"b\\"`,
		"nl\n\x01":      `"nl\n\u0001"`,
		"é":             `"é"`,
		"bad\xffutf8":   `"bad\ufffdutf8"`,
		"":              `""`,
		"tab\tcr\r end": `"tab\tcr\r end"`,
	} {
		if got := string(appendJSONString(nil, in)); got != want {
			t.Errorf("%q: got %s want %s", in, got, want)
		}
	}
}
