// End-to-end latency timed in the kernel at the load generator's own sockets.
//
// Template filled by bench/probes/client_latency.py (placeholders: upper-case names between
// double underscores). Tracepoints only (no kprobes on our kernels, no syscall tracepoints).
//
// For each TCP socket of the load generator whose remote port is the service's:
//   start = the request's send entering TCP (tcp:tcp_sendmsg_locked, read back in
//           sock:sock_send_length, which names the socket)
//   end   = the LAST sock:sk_data_ready on that socket before its next request goes out
//           (response bytes queued for the load generator; a response in several segments
//           ends at its last one)
// HTTP/1.1 keep-alive: one request in flight per connection, so a socket's send and the
// data that arrives on it before its next send belong to one request: no matching is needed
// and none is guessed. What the load generator's user space does between the arrival and its
// read (gevent scheduling other users, Python parsing) is outside the figure.
// One event per request goes to user space through a ring buffer (a few thousand per second
// at most), so that percentiles there are exact, not bucketed.
// The load generator's processes: user space puts the leader's pid in `tgids` right after it
// starts (before Python has even imported Locust); processes it forks (Locust --processes
// workers) are added here on sched_process_fork.

#define SKC_DPORT_OFF __SKC_DPORT_OFF__
#define SERVICE_PORT __SERVICE_PORT__
#define PROTO_TCP 6
#define FAM_INET 2
#define FAM_INET6 10
#define TCP_CLOSE_STATE 7

// counter slots; keep in step with COUNTERS in client_latency.py
#define C_EMITTED 0
#define C_LOST 1        // ring buffer full: the request is not in the figures
#define C_CONTINUED 2   // a send with no response since the previous one: same request
#define C_OTHER_PORT 3  // sends of the load generator to other ports (e.g. Locust's master)

struct conn {
    u64 t_send;
    u64 t_ready;
    u32 segments;
};

struct event {
    u64 t_send;
    u64 t_done;
    u64 sk;
    u32 tgid;
    u32 segments;
};

#include "sendstamp.h"

BPF_HASH(tgids, u32, u8, 4096);
BPF_HASH(conns, u64, struct conn, 16384);
BPF_ARRAY(counters, u64, 4);
BPF_RINGBUF_OUTPUT(events, __RINGBUF_PAGES__);

static __always_inline int is_ours(u32 tgid) {
    return tgids.lookup(&tgid) != NULL;
}

static __always_inline void count(int slot) {
    u64 *c = counters.lookup(&slot);
    if (c)
        __sync_fetch_and_add(c, 1);
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!is_ours(tgid))
        return 0;
    u32 child = args->child_pid;
    u8 one = 1;
    tgids.update(&child, &one);
    return 0;
}

// the first segment-filling round of a send: when the request enters TCP (sendstamp.h)
TRACEPOINT_PROBE(tcp, tcp_sendmsg_locked) {
    u64 id = bpf_get_current_pid_tgid();
    if (is_ours(id >> 32)) {
        int z = 0;
        sendstamp_mark(sendctx.lookup(&z), (u32)id);
    }
    return 0;
}

TRACEPOINT_PROBE(sock, sock_send_length) {
    u64 id = bpf_get_current_pid_tgid();
    if (!is_ours(id >> 32))
        return 0;
    u64 now = bpf_ktime_get_ns();
    int z = 0;
    u64 t_send = sendstamp_take(sendctx.lookup(&z), (u32)id);  // 0: not stamped
    if (t_send == 0 || t_send > now)
        t_send = now;
    if (args->protocol != PROTO_TCP || (args->family != FAM_INET && args->family != FAM_INET6)
        || args->ret <= 0)
        return 0;
    u64 sk = (u64)args->sk;
    u16 dport = 0;
    bpf_probe_read_kernel(&dport, sizeof(dport), (void *)(sk + SKC_DPORT_OFF));
    if (__builtin_bswap16(dport) != SERVICE_PORT) {
        count(C_OTHER_PORT);
        return 0;
    }
    struct conn *c = conns.lookup(&sk);
    if (!c) {
        struct conn fresh = {.t_send = t_send};
        conns.update(&sk, &fresh);
        return 0;
    }
    if (c->t_ready == 0) {  // no response since the last send: more bytes of one request
        if (c->t_send == 0)
            c->t_send = t_send;
        else
            count(C_CONTINUED);
        return 0;
    }
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (e) {
        e->t_send = c->t_send;
        e->t_done = c->t_ready;
        e->sk = sk;
        e->tgid = id >> 32;
        e->segments = c->segments;
        events.ringbuf_submit(e, 0);
        count(C_EMITTED);
    } else {
        count(C_LOST);
    }
    c->t_send = t_send;
    c->t_ready = 0;
    c->segments = 0;
    return 0;
}

TRACEPOINT_PROBE(sock, sk_data_ready) {
    if (args->protocol != PROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    struct conn *c = conns.lookup(&sk);
    if (c && c->t_send) {
        c->t_ready = bpf_ktime_get_ns();
        c->segments += 1;
    }
    return 0;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol == PROTO_TCP && args->newstate == TCP_CLOSE_STATE) {
        u64 sk = (u64)args->skaddr;
        conns.delete(&sk);  // addresses are reused: a new socket starts afresh
    }
    return 0;
}
