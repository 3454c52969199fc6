// Per-hop residence time of proxies, from tracepoints only (no kprobes on our kernels).
//
// This is a template: bench/probes/hops.py fills every placeholder (an upper-case name between
// double underscores) from the run: target PIDs, their listener/upstream ports, map sizes, the
// histogram layout, the byte offsets of the ports in struct sock_common (from the kernel's
// BTF), and loads it with BCC. `python -m bench.probes.hops --print-bpf ...` prints the
// filled text without loading it. Only histograms and counters live here: nothing is sent to
// user space per event.
//
// A hop, for one proxy process (tgid) and one direction:
//   request:  bytes arrive in a DOWNSTREAM socket of the proxy -> the proxy sends them on an
//             UPSTREAM socket
//   response: bytes arrive in that UPSTREAM socket -> the proxy sends them on that DOWNSTREAM
// Start = sock:sk_data_ready on the proxy's socket (the bytes are queued for it; falls back to
// the end of the proxy's read when that was not seen). End = the send entering TCP
// (tcp:tcp_sendmsg_locked, before anything is transmitted), so the kernel's transmit path is
// left to the "network and kernel" remainder of the end-to-end overhead. No syscall
// tracepoint is used: enabling one sends every syscall of every process through the slow path.
//
// Sockets are classified from their ports, read from struct sock_common (local port skc_num,
// remote port skc_dport): a local port in the proxy's downstream list marks an accepted
// downstream socket, a remote port in its upstream list an upstream socket; anything else is
// counted as unclassified, never guessed. The offsets come from BTF and are cross-checked
// against sock:inet_sock_set_state's own port fields (selfcheck map).
//
// Matching by pair confirmation, per worker thread (Envoy keeps a downstream connection and
// its upstream requests on one thread; state is keyed by tid, targets filtered by tgid):
//  - arrivals wait in per-thread lists: req (downstream sockets with a request not answered
//    yet) and resp (upstream sockets with response bytes not forwarded yet);
//  - a send on an upstream socket u opens a "flight" on u: the downstream arrivals it may
//    carry (those not yet in any flight; usually exactly one), with their arrival times and
//    the send time. Arrivals read together and sent on several sockets form a group: each of
//    those flights holds the whole group;
//  - a send on a downstream socket d is a response: among the waiting upstream arrivals, the
//    one whose flight holds d is where it came from, and d's entry is its request. Exactly
//    one: both hops are recorded (request: flight send - arrival on d; response: now -
//    arrival on u), and d leaves its group peers' flights. None: more bytes of a response
//    already matched, or a reply the proxy made itself (ignored). Two or more: ambiguous,
//    counted as unmatched.
//  A request is only measured once its response came back through the same two sockets, so
//  concurrent requests on one thread never borrow each other's times; the price is that a
//  request whose response never returns is not measured at all.
// HTTP/1 upstream connections carry one request at a time: a flight stays "open" (further
// sends are the same request) until response bytes arrive on it. HTTP/2 (HBONE) sockets carry
// streams: their pending arrival is the latest one, they stay pending after a match (one read
// may carry responses for several downstreams), one read of an HTTP/2 downstream may feed
// several upstream connections, and two requests of one HTTP/2 downstream in flight at once
// on one HTTP/2 upstream (the waypoint) cannot be told apart: counted as unmatched (dup).
// A send on a non-multiplexed socket with unforwarded arrivals of its own ends them: the
// request is answered, or the bytes were a protocol exchange (TLS handshake). The first
// request on a brand-new upstream TLS connection may end at its ClientHello (nothing here
// reads payload bytes); keep-alive connections make that one sample per connection.

// Cost (benchmarks/bench_hops_overhead.py, BPF run-time statistics): on these VMs a map
// look-up by hash and bpf_ktime_get_ns cost ~110 ns each and a probe read ~65 ns, over a
// ~75 ns floor per program run; with cold caches in a real run, ~2.5x that. So the clock is
// read only where no earlier stamp serves (an arrival stamped by sk_data_ready, a send
// stamped by tcp_sendmsg_locked), and a map value found once is not looked up again.

#define NT __MAX_TARGETS__
#define NB __NBUCKETS__
#define LINEAR_US __LINEAR_US__
#define LINEAR_BITS __LINEAR_BITS__
#define SUB_BITS __SUB_BITS__
#define MAX_EXP __MAX_EXP__
#define K __PENDING__
#define F __FLIGHT__
#define NC __NCOUNTERS__
#define MAX_AGE_NS __MAX_AGE_NS__
#define SKC_DPORT_OFF __SKC_DPORT_OFF__
#define SKC_NUM_OFF __SKC_NUM_OFF__

#define PROTO_TCP 6
#define FAM_INET 2
#define FAM_INET6 10
#define CLS_UNKNOWN 0
#define CLS_DOWN 1
#define CLS_UP 2
#define DIR_REQ 0
#define DIR_RESP 1
#define DIR_ENTITY 2
#define MSG_PEEK_FLAG 2
#define TCP_ESTABLISHED_STATE 1
#define TCP_CLOSE_STATE 7

// counter slots, per (target, direction); keep in step with COUNTERS in hops.py
#define C_MATCHED 0
#define C_UNMATCHED 1
#define C_AMBIGUOUS 2
#define C_CONTROL 3
#define C_SUM_NS 4
#define C_UNCLASSIFIED 5
#define C_EVICTED 6
#define C_NO_ARRIVAL 7

struct plist {
    u64 sk[K];
    u64 t[K];
    u32 n;
    u32 mux;  // bit i: sk[i] is a multiplexed (HTTP/2) socket
    u32 fwd;  // bit i: sk[i]'s arrival has gone into a flight already (req list only)
    u32 gseq;       // req list: last group number given out
    u32 group;      // req list: group whose members left in one send and may still go out
    u32 group_left; //   ... on other sockets: how many sends of it are still expected
    u8 grp[K];      // req list: group number of entry i (low 8 bits)
};

struct tstate {
    struct plist req;   // downstream sockets: request arrived, not answered yet
    struct plist resp;  // upstream sockets: response arrived, not forwarded yet
};

// requests sent on one upstream socket, waiting for their response to confirm them
struct flight {
    u64 d[F];      // downstream socket the request may have come from
    u64 t_in[F];   // its arrival there
    u64 t_out[F];  // the send on the upstream socket
    u32 dup[F];    // more requests of the same (HTTP/2) downstream overlapping this one
    u32 n;
    u32 open;      // HTTP/1: request sent, no response bytes yet (more sends = same request)
};

#include "sendstamp.h"

BPF_ARRAY(hist, u64, NT * 2 * NB);
BPF_ARRAY(counts, u64, NT * 3 * NC);
BPF_ARRAY(selfcheck, u64, 2);              // [ports compared, ports mismatched]
BPF_ARRAY(zero, struct tstate, 1);
BPF_ARRAY(zero_flight, struct flight, 1);
BPF_HASH(tstates, u32, struct tstate, __MAX_THREADS__);
// plain (preallocated) hashes: cheaper than LRU; entries go when their socket closes
BPF_HASH(arrivals, u64, u64, __MAX_SOCKS__);
BPF_HASH(flights, u64, struct flight, __MAX_SOCKS__);

// ---- generated from the targets -------------------------------------------------------------

static __always_inline int target_idx(u32 tgid) {
    switch (tgid) {
__TARGET_CASES__
    }
    return -1;
}

// CLS_DOWN / CLS_UP / CLS_UNKNOWN for a socket of target idx; *mux = 1 for HTTP/2 sockets
static __always_inline int classify(int idx, u16 lport, u16 rport, u32 *mux) {
    *mux = 0;
    switch (idx) {
__CLASSIFY_CASES__
    }
    return CLS_UNKNOWN;
}

// a socket some target may own (arrival times are recorded only for these)
static __always_inline int watched(u16 lport, u16 rport) {
    return __WATCHED_EXPR__;
}

// ---- helpers on values (map pointers are never arguments: BCC refuses them) -----------------

// An index masked so that the verifier sees it in bounds; the empty asm keeps clang from
// dropping a mask it can prove redundant (the verifier cannot follow that proof).
#define OPAQUE(v) asm volatile("" : "=r"(v) : "0"(v))

static __always_inline u32 kidx(u32 v) {
    OPAQUE(v);
    return v & (K - 1);
}

static __always_inline u32 fidx(u32 v) {
    OPAQUE(v);
    return v & (F - 1);
}

// a TCP socket over IPv4 or IPv6 (a tracepoint's args)
#define TCP_INET(a) \
    ((a)->protocol == PROTO_TCP && ((a)->family == FAM_INET || (a)->family == FAM_INET6))

static __always_inline void sk_ports(u64 sk, u16 *lport, u16 *rport) {
#if SKC_NUM_OFF == SKC_DPORT_OFF + 2
    u16 p[2] = {};  // skc_dport (network order), skc_num: one read
    bpf_probe_read_kernel(p, sizeof(p), (void *)(sk + SKC_DPORT_OFF));
    *rport = __builtin_bswap16(p[0]);
    *lport = p[1];
#else
    u16 dport = 0, num = 0;
    bpf_probe_read_kernel(&dport, sizeof(dport), (void *)(sk + SKC_DPORT_OFF));
    bpf_probe_read_kernel(&num, sizeof(num), (void *)(sk + SKC_NUM_OFF));
    *rport = __builtin_bswap16(dport);
    *lport = num;
#endif
}

static __always_inline u32 log2_u64(u64 v) {
    u32 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { r += 1; }
    return r;
}

// log-linear: 1 us buckets below LINEAR_US, then 2^SUB_BITS buckets per power of two,
// then one overflow bucket (NB - 1)
static __always_inline u32 bucket_of(u64 us) {
    if (us < LINEAR_US)
        return (u32)us;
    u32 k = log2_u64(us);
    if (k >= MAX_EXP)
        return NB - 1;
    u32 sub = (u32)(us >> (k - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    return LINEAR_US + ((k - LINEAR_BITS) << SUB_BITS) + sub;
}

// bit `to` of word takes the value of bit `from`; bit `from` is cleared
static __always_inline u32 move_bit(u32 word, u32 from, u32 to) {
    u32 bit = (word >> from) & 1;
    word = (word & ~(1u << to)) | (bit << to);
    return word & ~(1u << from);
}

static __always_inline int plist_find(struct plist *l, u64 sk) {
#pragma unroll
    for (int i = 0; i < K; i++) {
        if (i < l->n && l->sk[i] == sk)
            return i;
    }
    return -1;
}

// remove entry i (order is irrelevant: swap with the last); indexes are masked for the verifier
static __always_inline void plist_remove(struct plist *l, int i) {
    u32 n = l->n;
    if (n == 0 || n > K || i < 0 || (u32)i >= n)
        return;
    u32 last = kidx(n - 1);
    u32 ii = kidx((u32)i);
    l->sk[ii] = l->sk[last];
    l->t[ii] = l->t[last];
    l->mux = move_bit(l->mux, last, ii);
    l->fwd = move_bit(l->fwd, last, ii);
    l->grp[ii] = l->grp[last];
    l->n = n - 1;
}

// the entry of socket sk, if any, leaves the list
static __always_inline void plist_drop(struct plist *l, u64 sk) {
    int i = plist_find(l, sk);
    if (i >= 0)
        plist_remove(l, i);
}

static __always_inline int flight_find(struct flight *f, u64 d) {
#pragma unroll
    for (int j = 0; j < F; j++) {
        if (j < f->n && f->d[j] == d)
            return j;
    }
    return -1;
}

static __always_inline void flight_remove(struct flight *f, int j) {
    u32 n = f->n;
    if (n == 0 || n > F || j < 0 || (u32)j >= n)
        return;
    u32 last = fidx(n - 1);
    u32 jj = fidx((u32)j);
    f->d[jj] = f->d[last];
    f->t_in[jj] = f->t_in[last];
    f->t_out[jj] = f->t_out[last];
    f->dup[jj] = f->dup[last];
    f->n = n - 1;
}

// slot j holds one request of downstream d: arrived at t_in, sent at t_out
static __always_inline void flight_set(struct flight *f, u32 j, u64 d, u64 t_in, u64 t_out) {
    f->d[fidx(j)] = d;
    f->t_in[fidx(j)] = t_in;
    f->t_out[fidx(j)] = t_out;
    f->dup[fidx(j)] = 0;
}

// the slot of the request sent first
static __always_inline u32 flight_oldest(struct flight *f) {
    u32 old = 0;
    u64 oldest = f->t_out[0];
#pragma unroll
    for (int k = 1; k < F; k++) {
        if (f->t_out[k] < oldest) {
            oldest = f->t_out[k];
            old = k;
        }
    }
    return old;
}

// ---- helpers on the maps (inlined: each names its map itself) ---------------------------------

static __always_inline void count_add(int idx, int dir, int c, u64 v) {
    u32 i = ((u32)idx * 3 + dir) * NC + c;
    u64 *cv = counts.lookup(&i);
    if (cv)
        __sync_fetch_and_add(cv, v);
}

// one measured hop: its histogram bucket, the sum of its times, the matched count
static __always_inline void record_hop(int idx, int dir, u64 delta) {
    u32 hi = ((u32)idx * 2 + dir) * NB + bucket_of(delta / 1000);
    u64 *hv = hist.lookup(&hi);
    if (hv)
        __sync_fetch_and_add(hv, 1);
    count_add(idx, dir, C_SUM_NS, delta);
    count_add(idx, dir, C_MATCHED, 1);
}

// The thread's state, created from the zero element (it is too big for the BPF stack).
// flight_of below is the same pattern on other maps: BCC takes neither a map as an argument
// nor a map call inside a macro ("cannot use map function inside a macro"), so it is spelled
// out once per map.
static __always_inline struct tstate *thread_state(u32 tid) {
    struct tstate *st = tstates.lookup(&tid);
    if (st)
        return st;
    int z = 0;
    struct tstate *zv = zero.lookup(&z);
    if (!zv)
        return NULL;
    tstates.update(&tid, zv);
    return tstates.lookup(&tid);
}

// the flight of upstream socket sk, created empty
static __always_inline struct flight *flight_of(u64 sk) {
    struct flight *f = flights.lookup(&sk);
    if (f)
        return f;
    int z = 0;
    struct flight *zf = zero_flight.lookup(&z);
    if (!zf)
        return NULL;
    flights.update(&sk, zf);
    return flights.lookup(&sk);
}

// response bytes on HTTP/1 upstream sk: its request is complete
static __always_inline void flight_close(u64 sk) {
    struct flight *f = flights.lookup(&sk);
    if (f)
        f->open = 0;
}

// downstream d leaves the flights of the first n upstream sockets of r, except entry skip's
static __always_inline void flights_forget(struct plist *r, u32 n, u64 d, int skip) {
#pragma unroll
    for (int i = 0; i < K; i++) {
        if (i < n && i != skip) {
            u64 key = r->sk[i];
            struct flight *f = flights.lookup(&key);
            if (f) {
                int j = flight_find(f, d);
                if (j >= 0)
                    flight_remove(f, j);
            }
        }
    }
}

// socket sk is gone: addresses are reused, a new socket starts afresh
static __always_inline void socket_gone(u64 sk) {
    arrivals.delete(&sk);
    flights.delete(&sk);
}

// ---- arrivals --------------------------------------------------------------------------------

TRACEPOINT_PROBE(sock, sk_data_ready) {
    if (!TCP_INET(args))
        return 0;
    u64 sk = (u64)args->skaddr;
    u16 lport, rport;
    sk_ports(sk, &lport, &rport);
    if (!watched(lport, rport))
        return 0;
    // one entry per socket, 0 when consumed: updated in place (no insert/delete per message)
    u64 *a = arrivals.lookup(&sk);
    if (a) {
        if (*a == 0)
            *a = bpf_ktime_get_ns();  // keeps the earliest unread arrival
    } else {
        u64 t = bpf_ktime_get_ns();
        arrivals.insert(&sk, &t);
    }
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length) {
    u64 id = bpf_get_current_pid_tgid();
    int idx = target_idx(id >> 32);
    if (idx < 0)
        return 0;
    if (!TCP_INET(args) || (args->flags & MSG_PEEK_FLAG))
        return 0;
    int ret = args->ret;
    if (ret < 0)
        return 0;  // EAGAIN (-11) and errors: nothing was read
    u64 sk = (u64)args->sk;
    struct tstate *st = thread_state((u32)id);
    if (!st)
        return 0;
    if (ret == 0) {
        // end of stream: nothing more will be forwarded or answered on this socket
        plist_drop(&st->req, sk);
        plist_drop(&st->resp, sk);
        socket_gone(sk);
        return 0;
    }
    u16 lport, rport;
    u32 mux = 0;
    sk_ports(sk, &lport, &rport);
    int cls = classify(idx, lport, rport, &mux);
    if (cls == CLS_UNKNOWN) {
        count_add(idx, DIR_ENTITY, C_UNCLASSIFIED, 1);
        return 0;
    }
    int dir = cls == CLS_DOWN ? DIR_REQ : DIR_RESP;
    u64 t = 0;
    int fresh = 0;
    u64 *a = arrivals.lookup(&sk);
    if (a) {
        t = *a;  // stamped by sk_data_ready before this read: no clock read needed then
        fresh = t != 0;
        *a = 0;  // consumed; the entry stays until the socket closes
    }
    if (!fresh)
        t = bpf_ktime_get_ns();  // the clock costs as much as a map look-up: only when needed
    struct plist *l = dir == DIR_REQ ? &st->req : &st->resp;
    int i = plist_find(l, sk);
    if (i >= 0) {
        // more bytes on a socket already waiting: the same message (keep its first arrival),
        // except on HTTP/2 sockets, where new bytes are a new frame, likely another stream's
        if (mux && fresh) {
            l->t[kidx(i)] = t;
            l->fwd &= ~(1u << kidx(i));
        }
        if (dir == DIR_RESP && !mux)
            flight_close(sk);
        return 0;
    }
    if (!fresh)
        count_add(idx, dir, C_NO_ARRIVAL, 1);
    u32 n = l->n;
    if (n >= K) {
        count_add(idx, dir, C_UNMATCHED, 1);
        return 0;
    }
    u32 m = kidx(n);
    l->sk[m] = sk;
    l->t[m] = t;
    if (mux)
        l->mux |= 1u << m;
    else
        l->mux &= ~(1u << m);
    l->fwd &= ~(1u << m);
    l->n = n + 1;
    if (dir == DIR_RESP && !mux)
        flight_close(sk);
    return 0;
}

// ---- departures ------------------------------------------------------------------------------

// A request leaves on HTTP/1 (or plain TCP) upstream socket sk, flight f: one request at a
// time on this connection. `waiting`: the req list's arrivals not yet in any flight.
static __always_inline void send_up_h1(struct plist *l, u32 n, u32 waiting, struct flight *f,
                                       u64 t_end) {
    if (f->open && f->n > 0)
        return;  // more bytes of the request in flight
    // a new request: it is one of the waiting arrivals; if none is waiting, one of the last
    // group that was read together and went out on several sockets
    u32 take = waiting;
    if (take) {
        u32 g = (l->gseq + 1) & 0xff;
        if (g == 0)
            g = 1;
        l->gseq = g;
        u32 cnt = 0;
#pragma unroll
        for (int i = 0; i < K; i++) {
            if ((take >> i) & 1) {
                l->grp[i] = g;
                cnt += 1;
            }
        }
        l->group = cnt > 1 ? g : 0;
        l->group_left = cnt > 1 ? cnt - 1 : 0;
    } else {
        if (l->group && l->group_left) {
#pragma unroll
            for (int i = 0; i < K; i++) {
                if (i < n && l->grp[i] == l->group)
                    take |= 1u << i;
            }
            l->group_left -= 1;
        }
        // one read of an HTTP/2 downstream can carry requests of several streams, each going
        // out on its own upstream connection
        take |= l->mux & (u32)((1ull << n) - 1);
    }
    if (!take)
        return;  // nothing this request could have come from
    u32 m = 0;
#pragma unroll
    for (int i = 0; i < K; i++) {
        if ((take >> i) & 1) {
            if (m < F) {
                f->d[fidx(m)] = l->sk[i];
                f->t_in[fidx(m)] = l->t[i];
                f->t_out[fidx(m)] = t_end;
                m += 1;
            }
        }
    }
    f->n = m;
    f->open = 1;
    l->fwd |= take;
}

// Requests leave on HTTP/2 upstream socket sk, flight f: one entry per downstream socket,
// for arrivals not yet sent.
static __always_inline void send_up_h2(int idx, struct plist *l, u32 waiting, struct flight *f,
                                       u64 t_end) {
    if (!waiting)
        return;  // HTTP/2 control frames, more bytes of streams already sent
#pragma unroll
    for (int i = 0; i < K; i++) {
        if ((waiting >> i) & 1) {
            u64 d = l->sk[i];
            u64 tin = l->t[i];
            int j = flight_find(f, d);
            if (j >= 0) {
                if ((l->mux >> i) & 1) {
                    // an HTTP/2 downstream with a request of another stream still in flight
                    // on this HTTP/2 upstream: their answers cannot be told apart
                    f->dup[fidx(j)] += 1;
                } else {
                    // an HTTP/1 or TCP downstream has one request in flight: this one
                    flight_set(f, j, d, tin, t_end);
                }
            } else if (f->n < F) {
                u32 m = f->n;
                flight_set(f, m, d, tin, t_end);
                f->n = m + 1;
            } else {
                // full: the oldest request still unconfirmed gives way
                flight_set(f, flight_oldest(f), d, tin, t_end);
                count_add(idx, DIR_REQ, C_EVICTED, 1);
                count_add(idx, DIR_REQ, C_UNMATCHED, 1);
            }
        }
    }
    l->fwd |= waiting;
}

// a request leaves on upstream socket sk
static __always_inline void send_upstream(int idx, struct tstate *st, u64 sk, u32 mux,
                                          u64 t_end) {
    if (!mux) {
        // unforwarded bytes that arrived on it were a protocol exchange (TLS handshake)
        int oi = plist_find(&st->resp, sk);
        if (oi >= 0) {
            plist_remove(&st->resp, oi);
            count_add(idx, DIR_RESP, C_CONTROL, 1);
        }
    }
    struct plist *l = &st->req;
    u32 n = l->n;
    if (n == 0 || n > K)
        return;  // nothing waiting: HTTP/2 control, CONNECT, a request of the proxy's own
    struct flight *f = flight_of(sk);
    if (!f)
        return;
    u32 waiting = 0;  // arrivals not yet in any flight: what this send may carry
#pragma unroll
    for (int i = 0; i < K; i++) {
        if (i < n && !((l->fwd >> i) & 1))
            waiting |= 1u << i;
    }
    if (mux)
        send_up_h2(idx, l, waiting, f, t_end);
    else
        send_up_h1(l, n, waiting, f, t_end);
}

// a response leaves on downstream socket sk: confirm the request it answers, record both hops
static __always_inline void send_downstream(int idx, struct tstate *st, u64 sk, u32 mux,
                                            u64 t_end) {
    if (!mux)
        plist_drop(&st->req, sk);  // HTTP/1: its request is answered (or was a TLS handshake)
    struct plist *r = &st->resp;
    u32 n = r->n;
    if (n == 0 || n > K)
        return;
    // which waiting upstream arrival has a flight holding this downstream socket?
    int cands = 0, ci = -1, cj = -1;
    struct flight *cf = NULL;  // the first candidate's flight: kept, not looked up again
#pragma unroll
    for (int i = 0; i < K; i++) {
        if (i < n) {
            u64 key = r->sk[i];
            struct flight *f = flights.lookup(&key);
            if (f) {
                int j = flight_find(f, sk);
                if (j >= 0) {
                    cands += 1 + f->dup[fidx(j)];
                    if (ci < 0) {
                        ci = i;
                        cj = j;
                        cf = f;
                    }
                }
            }
        }
    }
    if (cands == 0)
        return;  // more bytes of a response already matched, or the proxy's own reply
    if (cands > 1) {
        // two answered requests this downstream might have made: not attributable. An HTTP/1
        // downstream sends one response now (the others are counted at their own sends); an
        // HTTP/2 one may carry all of them, and all are dropped here
        u64 lost = mux ? cands : 1;
        count_add(idx, DIR_REQ, C_UNMATCHED, lost);
        count_add(idx, DIR_RESP, C_UNMATCHED, lost);
        count_add(idx, DIR_RESP, C_AMBIGUOUS, lost);
        flights_forget(r, r->n, sk, -1);
        return;
    }
    if (ci < 0 || cj < 0 || !cf)
        return;
    u64 t_arr = r->t[kidx(ci)];
    u32 umux = (r->mux >> kidx(ci)) & 1;
    u64 t_in = cf->t_in[fidx(cj)];
    u64 t_out = cf->t_out[fidx(cj)];
    flight_remove(cf, cj);
    if (!mux)
        flights_forget(r, n, sk, ci);  // the other upstreams did not carry its (HTTP/1) request
    if (!umux)
        plist_remove(r, ci);
    if (t_out < t_in || t_end < t_arr || t_out - t_in > MAX_AGE_NS || t_end - t_arr > MAX_AGE_NS) {
        count_add(idx, DIR_REQ, C_UNMATCHED, 1);
        count_add(idx, DIR_RESP, C_UNMATCHED, 1);
        return;
    }
    // both hops of one request, confirmed by the same pair of sockets
    record_hop(idx, DIR_REQ, t_out - t_in);
    record_hop(idx, DIR_RESP, t_end - t_arr);
}

// The end of a hop: the first time the send enters TCP (before anything is transmitted; TLS
// encryption is done in user space before it), from sendstamp.h.
TRACEPOINT_PROBE(tcp, tcp_sendmsg_locked) {
    u64 id = bpf_get_current_pid_tgid();
    if (target_idx(id >> 32) >= 0) {
        int z = 0;
        sendstamp_mark(sendctx.lookup(&z), (u32)id);
    }
    return 0;
}

TRACEPOINT_PROBE(sock, sock_send_length) {
    u64 id = bpf_get_current_pid_tgid();
    int idx = target_idx(id >> 32);
    if (idx < 0)
        return 0;
    u32 tid = (u32)id;
    int z = 0;
    u64 t_end = sendstamp_take(sendctx.lookup(&z), tid);
    if (!TCP_INET(args) || args->ret <= 0)
        return 0;
    u64 sk = (u64)args->sk;
    u16 lport, rport;
    u32 mux = 0;
    sk_ports(sk, &lport, &rport);
    int cls = classify(idx, lport, rport, &mux);
    if (cls == CLS_UNKNOWN) {
        count_add(idx, DIR_ENTITY, C_UNCLASSIFIED, 1);
        return 0;
    }
    struct tstate *st = thread_state(tid);
    if (!st)
        return 0;
    if (!t_end)
        t_end = bpf_ktime_get_ns();  // tcp_sendmsg_locked not seen for this send
    if (cls == CLS_UP)
        send_upstream(idx, st, sk, mux, t_end);
    else
        send_downstream(idx, st, sk, mux, t_end);
    return 0;
}

// ---- socket life: forget closed sockets (their addresses are reused), check the offsets ----

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != PROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == TCP_ESTABLISHED_STATE) {
        u16 lport, rport;
        sk_ports(sk, &lport, &rport);
        if (watched(lport, rport) || watched(args->sport, args->dport)) {
            int k0 = 0, k1 = 1;
            u64 *n = selfcheck.lookup(&k0);
            if (n)
                __sync_fetch_and_add(n, 1);
            if (lport != args->sport || rport != args->dport) {
                u64 *m = selfcheck.lookup(&k1);
                if (m)
                    __sync_fetch_and_add(m, 1);
            }
        }
        return 0;
    }
    if (args->newstate != TCP_CLOSE_STATE)
        return 0;
    socket_gone(sk);
    u64 id = bpf_get_current_pid_tgid();
    if (target_idx(id >> 32) < 0)
        return 0;
    u32 tid = (u32)id;
    struct tstate *st = tstates.lookup(&tid);
    if (!st)
        return 0;
    plist_drop(&st->req, sk);
    plist_drop(&st->resp, sk);
    return 0;
}
