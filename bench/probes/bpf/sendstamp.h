// When a send entered TCP: shared by hops.c and client_latency.c (BCC compiles them with
// -I bench/probes/bpf). tcp:tcp_sendmsg_locked fires at the top of every segment-filling
// round of tcp_sendmsg; the first one of a send stamps it (one slot per CPU; tid says whose
// it is), and sock:sock_send_length of that send, which names the socket, takes the stamp.
//
// BCC rewrites map calls (sendctx.lookup) in the program's own text only, not in included
// files: here is the logic on the slot; the programs look it up:
//     int z = 0;
//     sendstamp_mark(sendctx.lookup(&z), tid);          // in tcp_sendmsg_locked
//     u64 t = sendstamp_take(sendctx.lookup(&z), tid);  // in sock_send_length

struct sendctx {
    u64 t;
    u32 tid;
    u32 pad;
};

BPF_PERCPU_ARRAY(sendctx, struct sendctx, 1);

// the first round of a send of thread tid stamps it
static __always_inline void sendstamp_mark(struct sendctx *c, u32 tid) {
    if (c && c->tid != tid) {
        c->tid = tid;
        c->t = bpf_ktime_get_ns();
    }
}

// the stamp of thread tid's send, 0 when tcp_sendmsg_locked was not seen for it; the slot is
// cleared, so that the next send starts afresh
static __always_inline u64 sendstamp_take(struct sendctx *sc, u32 tid) {
    u64 t = 0;
    if (sc) {
        if (sc->tid == tid)
            t = sc->t;
        sc->tid = 0;
    }
    return t;
}
