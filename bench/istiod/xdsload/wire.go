package main

// Partial protobuf decoding straight from the wire bytes of a DeltaDiscoveryResponse.
//
// A proxy simulator only needs a handful of fields: the response's type_url, nonce,
// resources (name, version, Any value) and removals; a cluster's name, discovery type and
// EDS service name; a listener's HTTP connection managers' RDS route_config_name. Fully
// unmarshalling 10,000 proxies' configs (typed Clusters and Listeners with all their nested
// messages) would cost this process more CPU than the rest together, on a machine whose
// cores istiod needs, so these fields are read with protowire and everything else is
// skipped without being decoded. Typed Any values other than the HTTP connection manager
// are never resolved, so an unknown extension type cannot fail anything.
// wire_test.go checks every scanner against the generated go-control-plane types.

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers, from the go-control-plane generated code (see wire_test.go).
const (
	// envoy.service.discovery.v3.DeltaDiscoveryResponse
	respResources            = 2
	respTypeURL              = 4
	respNonce                = 5
	respRemovedResources     = 6
	respRemovedResourceNames = 8
	// envoy.service.discovery.v3.Resource
	resVersion      = 1
	resResource     = 2
	resName         = 3
	resResourceName = 8
	// envoy.service.discovery.v3.ResourceName
	resourceNameName = 1
	// google.protobuf.Any
	anyTypeURL = 1
	anyValue   = 2
	// envoy.config.cluster.v3.Cluster
	clusterName             = 1
	clusterType             = 2
	clusterEdsClusterConfig = 3
	clusterClusterType      = 38
	edsServiceName          = 2
	clusterDiscoveryTypeEDS = 3
	// envoy.config.listener.v3.Listener, FilterChain, Filter
	listenerName               = 1
	listenerFilterChains       = 3
	listenerDefaultFilterChain = 25
	filterChainFilters         = 3
	filterTypedConfig          = 4
	// envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, Rds
	hcmRds             = 3
	rdsRouteConfigName = 2
)

const hcmTypeURL = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

var errMalformed = errors.New("malformed protobuf")

// field is one decoded field: its number, wire type, and for length-delimited fields the
// bytes (aliasing the input), for varints the value.
type field struct {
	num protowire.Number
	typ protowire.Type
	b   []byte
	v   uint64
}

// fields iterates over the top-level fields of one message's bytes.
type fields struct {
	b   []byte
	f   field
	err error
}

func (it *fields) next() bool {
	if it.err != nil || len(it.b) == 0 {
		return false
	}
	num, typ, n := protowire.ConsumeTag(it.b)
	if n < 0 {
		it.err = fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		return false
	}
	it.b = it.b[n:]
	it.f = field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		v, m := protowire.ConsumeVarint(it.b)
		if m < 0 {
			it.err = fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(m))
			return false
		}
		it.f.v = v
		n = m
	case protowire.BytesType:
		v, m := protowire.ConsumeBytes(it.b)
		if m < 0 {
			it.err = fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(m))
			return false
		}
		it.f.b = v
		n = m
	default:
		n = protowire.ConsumeFieldValue(num, typ, it.b)
		if n < 0 {
			it.err = fmt.Errorf("%w: field %d: %v", errMalformed, num, protowire.ParseError(n))
			return false
		}
	}
	it.b = it.b[n:]
	return true
}

// isBytes reports whether f is field num of wire type bytes.
func (f *field) isBytes(num protowire.Number) bool {
	return f.num == num && f.typ == protowire.BytesType
}

// respHeader is what a first pass over a DeltaDiscoveryResponse finds.
type respHeader struct {
	typeURL   []byte
	nonce     []byte
	resources int
	removed   int
}

func scanResponseHeader(b []byte) (respHeader, error) {
	var h respHeader
	it := fields{b: b}
	for it.next() {
		f := &it.f
		switch {
		case f.isBytes(respResources):
			h.resources++
		case f.isBytes(respTypeURL):
			h.typeURL = f.b
		case f.isBytes(respNonce):
			h.nonce = f.b
		case f.isBytes(respRemovedResources), f.isBytes(respRemovedResourceNames):
			h.removed++
		}
	}
	return h, it.err
}

// wireResource is one envoy.service.discovery.v3.Resource; slices alias the response.
type wireResource struct {
	name    []byte
	version []byte
	typeURL []byte // of the Any
	value   []byte // the Any's value: the resource's own serialized bytes
}

func scanResource(b []byte) (wireResource, error) {
	var r wireResource
	var altName []byte
	it := fields{b: b}
	for it.next() {
		f := &it.f
		switch {
		case f.isBytes(resName):
			r.name = f.b
		case f.isBytes(resVersion):
			r.version = f.b
		case f.isBytes(resResourceName):
			n, err := scanResourceName(f.b)
			if err != nil {
				return r, err
			}
			altName = n
		case f.isBytes(resResource):
			ai := fields{b: f.b}
			for ai.next() {
				switch {
				case ai.f.isBytes(anyTypeURL):
					r.typeURL = ai.f.b
				case ai.f.isBytes(anyValue):
					r.value = ai.f.b
				}
			}
			if ai.err != nil {
				return r, fmt.Errorf("resource Any: %w", ai.err)
			}
		}
	}
	if len(r.name) == 0 {
		r.name = altName
	}
	return r, it.err
}

func scanResourceName(b []byte) ([]byte, error) {
	var name []byte
	it := fields{b: b}
	for it.next() {
		if it.f.isBytes(resourceNameName) {
			name = it.f.b
		}
	}
	return name, it.err
}

// forEachRemoved calls fn with each removed resource name (removed_resources and
// removed_resource_names) of a DeltaDiscoveryResponse.
func forEachRemoved(b []byte, fn func(name []byte)) error {
	it := fields{b: b}
	for it.next() {
		f := &it.f
		switch {
		case f.isBytes(respRemovedResources):
			fn(f.b)
		case f.isBytes(respRemovedResourceNames):
			n, err := scanResourceName(f.b)
			if err != nil {
				return err
			}
			fn(n)
		}
	}
	return it.err
}

// forEachResource calls fn with the bytes of each Resource of a DeltaDiscoveryResponse.
func forEachResource(b []byte, fn func(res []byte)) error {
	it := fields{b: b}
	for it.next() {
		if it.f.isBytes(respResources) {
			fn(it.f.b)
		}
	}
	return it.err
}

// clusterInfo is what a proxy needs of an envoy.config.cluster.v3.Cluster.
type clusterInfo struct {
	name []byte
	eds  bool
	// edsName is eds_cluster_config.service_name, or the cluster's name when empty
	edsName []byte
}

func scanCluster(b []byte) (clusterInfo, error) {
	var c clusterInfo
	var service []byte
	it := fields{b: b}
	for it.next() {
		f := &it.f
		switch {
		case f.isBytes(clusterName):
			c.name = f.b
		case f.num == clusterType && f.typ == protowire.VarintType:
			c.eds = f.v == clusterDiscoveryTypeEDS
		case f.isBytes(clusterClusterType): // the other member of the oneof
			c.eds = false
		case f.isBytes(clusterEdsClusterConfig):
			ei := fields{b: f.b}
			for ei.next() {
				if ei.f.isBytes(edsServiceName) {
					service = ei.f.b
				}
			}
			if ei.err != nil {
				return c, fmt.Errorf("eds_cluster_config: %w", ei.err)
			}
		}
	}
	if it.err != nil {
		return c, it.err
	}
	if c.eds {
		c.edsName = service
		if len(c.edsName) == 0 {
			c.edsName = c.name
		}
	}
	return c, nil
}

// scanListener returns a listener's name and calls route with the route_config_name of
// every HTTP connection manager (of any filter chain, and the default one) that uses RDS.
// A filter whose HCM config cannot be decoded is skipped and reported in filterErr (the
// first such error); the rest of the listener is still read. err is a listener whose own
// bytes are malformed.
func scanListener(b []byte, route func(name []byte)) (name []byte, filterErr error, err error) {
	it := fields{b: b}
	for it.next() {
		f := &it.f
		switch {
		case f.isBytes(listenerName):
			name = f.b
		case f.isBytes(listenerFilterChains), f.isBytes(listenerDefaultFilterChain):
			fe, e := scanFilterChain(f.b, route)
			if e != nil {
				return name, filterErr, fmt.Errorf("filter chain: %w", e)
			}
			if filterErr == nil {
				filterErr = fe
			}
		}
	}
	return name, filterErr, it.err
}

func scanFilterChain(b []byte, route func(name []byte)) (filterErr error, err error) {
	it := fields{b: b}
	for it.next() {
		if !it.f.isBytes(filterChainFilters) {
			continue
		}
		fi := fields{b: it.f.b}
		for fi.next() {
			if !fi.f.isBytes(filterTypedConfig) {
				continue
			}
			var typeURL, value []byte
			ai := fields{b: fi.f.b}
			for ai.next() {
				switch {
				case ai.f.isBytes(anyTypeURL):
					typeURL = ai.f.b
				case ai.f.isBytes(anyValue):
					value = ai.f.b
				}
			}
			if ai.err != nil {
				return filterErr, fmt.Errorf("filter typed_config: %w", ai.err)
			}
			if string(typeURL) != hcmTypeURL {
				continue // never resolved: an unknown type is fine
			}
			if e := scanHCM(value, route); e != nil && filterErr == nil {
				filterErr = fmt.Errorf("http_connection_manager: %w", e)
			}
		}
		if fi.err != nil {
			return filterErr, fmt.Errorf("filter: %w", fi.err)
		}
	}
	return filterErr, it.err
}

func scanHCM(b []byte, route func(name []byte)) error {
	var name []byte
	it := fields{b: b}
	for it.next() {
		if !it.f.isBytes(hcmRds) {
			continue
		}
		ri := fields{b: it.f.b}
		for ri.next() {
			if ri.f.isBytes(rdsRouteConfigName) {
				name = ri.f.b
			}
		}
		if ri.err != nil {
			return fmt.Errorf("rds: %w", ri.err)
		}
	}
	if it.err != nil {
		return it.err
	}
	if len(name) > 0 {
		route(name)
	}
	return nil
}
