// mb-refclient: the harness's independent latency reference (`meshbench calibrate`).
//
// A paced HTTP/1.1 keep-alive GET client written to add as little of its own time as possible:
// one POSIX thread per connection doing blocking send/recv (the kernel wakes the thread when its
// response arrives: no event loop, interpreter or garbage collector stands between the socket
// and the clock), absolute-deadline pacing with clock_nanosleep(TIMER_ABSTIME) on
// CLOCK_MONOTONIC (no drift), connection schedules staggered evenly over the period (as wrk2
// and Fortio's -uniform do) or Poisson arrivals, and every request's times written out raw
// (no bucketing): the caller computes percentiles itself.
//
// usage: mb-refclient HOST PORT PATH RATE CONNS DURATION_S ARRIVALS SEED OUT
//   HOST        IPv4 address (the harness only targets addresses inside its own namespaces)
//   RATE        requests per second over all connections
//   ARRIVALS    uniform | poisson
//   OUT         binary file of little-endian int64 triples per completed request:
//               intended send, actual send, response complete (ns, CLOCK_REALTIME)
// Prints one line to stdout at the end: "requests=N errors=E late=L" (late: sends that
// started more than 1 ms after their intended time). Exit 0 on success, 2 on bad usage,
// 1 when no request completed.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define MAX_CONNS 256

struct rec { int64_t intended, sent, done; };

struct conn {
    int idx;
    int64_t first_ns;   // monotonic: first intended send
    int64_t end_ns;     // monotonic: no send is scheduled at or after this
    double period_ns;   // per-connection mean interval
    int poisson;
    uint64_t rng;
    struct rec *recs;
    size_t n, cap;
    long errors, late;
};

static struct sockaddr_in g_addr;
static char g_req[1024];
static size_t g_req_len;
static int64_t g_real_minus_mono;

static int64_t now_ns(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double uniform01(uint64_t *s) {  // xorshift64*
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return ((*s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0) { close(fd); return -1; }
    return fd;
}

static int send_all(int fd, const char *p, size_t len) {
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; len -= (size_t)w;
    }
    return 0;
}

// Reads one whole response (Content-Length or chunked). Returns 0 on success.
static int read_response(int fd, char *buf) {
    size_t have = 0;
    char *body = NULL;
    for (;;) {  // headers
        ssize_t r = recv(fd, buf + have, BUF - 1 - have, 0);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; return -1; }
        have += (size_t)r;
        buf[have] = 0;
        if ((body = strstr(buf, "\r\n\r\n")) != NULL) break;
        if (have >= BUF - 1) return -1;
    }
    body += 4;
    size_t head_len = (size_t)(body - buf), got = have - head_len;
    if (strncmp(buf, "HTTP/1.1 2", 10) != 0 && strncmp(buf, "HTTP/1.0 2", 10) != 0) return -1;
    long clen = -1;
    int chunked = 0;
    for (char *line = strstr(buf, "\r\n"); line && line < body; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0) clen = strtol(line + 17, NULL, 10);
        if (strncasecmp(line + 2, "transfer-encoding:", 18) == 0 && strstr(line, "chunked")) chunked = 1;
    }
    if (!chunked) {
        if (clen < 0) return -1;
        while ((long)got < clen) {
            ssize_t r = recv(fd, buf, BUF, 0);
            if (r <= 0) { if (r < 0 && errno == EINTR) continue; return -1; }
            got += (size_t)r;
        }
        return 0;
    }
    // chunked: keep the unread body at the start of buf and walk the chunks
    memmove(buf, body, got);
    size_t pos = 0;
    for (;;) {
        char *eol;
        while ((buf[got] = 0, eol = strstr(buf + pos, "\r\n")) == NULL) {
            ssize_t r = recv(fd, buf + got, BUF - 1 - got, 0);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        long size = strtol(buf + pos, NULL, 16);
        size_t need = (size_t)(eol - buf) + 2 + (size_t)size + 2;
        while (got < need) {
            if (need >= BUF) {  // a large chunk: drain it without keeping it
                ssize_t r = recv(fd, buf, BUF - 1, 0);
                if (r <= 0) return -1;
                need -= (size_t)r; got = 0; pos = 0;
                continue;
            }
            ssize_t r = recv(fd, buf + got, BUF - 1 - got, 0);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        if (size == 0) return 0;
        pos = need;
    }
}

static void *run_conn(void *arg) {
    struct conn *c = arg;
    char *buf = malloc(BUF);
    int fd = dial();
    double next = (double)c->first_ns;
    while (buf && (int64_t)next < c->end_ns) {
        int64_t due = (int64_t)next;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        if (fd < 0) fd = dial();
        int64_t sent = now_ns(CLOCK_MONOTONIC);
        if (fd < 0 || send_all(fd, g_req, g_req_len) < 0 || read_response(fd, buf) < 0) {
            c->errors++;
            if (fd >= 0) close(fd);
            fd = -1;
        } else {
            int64_t done = now_ns(CLOCK_MONOTONIC);
            if (sent - due > 1000000) c->late++;
            if (c->n == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 4096;
                c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
            }
            c->recs[c->n++] = (struct rec){due + g_real_minus_mono, sent + g_real_minus_mono,
                                           done + g_real_minus_mono};
        }
        // the schedule never waits for a late response (no coordinated omission)
        next += c->poisson ? -log(1.0 - uniform01(&c->rng)) * c->period_ns : c->period_ns;
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: %s HOST PORT PATH RATE CONNS DURATION_S uniform|poisson SEED OUT\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[4]), duration = atof(argv[6]);
    int conns = atoi(argv[5]), port = atoi(argv[2]);
    int poisson = strcmp(argv[7], "poisson") == 0;
    if (!poisson && strcmp(argv[7], "uniform") != 0) { fprintf(stderr, "arrivals: uniform or poisson\n"); return 2; }
    if (rate <= 0 || duration <= 0 || conns < 1 || conns > MAX_CONNS || port < 1 || port > 65535) {
        fprintf(stderr, "bad RATE, CONNS (1..%d), PORT or DURATION_S\n", MAX_CONNS);
        return 2;
    }
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, argv[1], &g_addr.sin_addr) != 1) { fprintf(stderr, "HOST must be an IPv4 address\n"); return 2; }
    g_req_len = (size_t)snprintf(g_req, sizeof g_req,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: mb-refclient\r\n\r\n", argv[3], argv[1], port);
    g_real_minus_mono = now_ns(CLOCK_REALTIME) - now_ns(CLOCK_MONOTONIC);

    struct conn cs[MAX_CONNS];
    pthread_t th[MAX_CONNS];
    double period = 1e9 * conns / rate;
    int64_t start = now_ns(CLOCK_MONOTONIC) + 100000000LL;  // 100 ms to connect everything
    uint64_t seed = strtoull(argv[8], NULL, 10);
    for (int i = 0; i < conns; i++) {
        cs[i] = (struct conn){.idx = i, .period_ns = period, .poisson = poisson,
                              .end_ns = start + (int64_t)(duration * 1e9),
                              .rng = (seed + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 0xBF58476D1CE4E5B9ULL + 1};
        // uniform: connection i starts i/N of a period later (evenly spread schedules);
        // poisson: each connection is a Poisson process of rate RATE/CONNS, so together RATE
        cs[i].first_ns = start + (poisson ? (int64_t)(-log(1.0 - uniform01(&cs[i].rng)) * period)
                                          : (int64_t)(period * i / conns));
        pthread_create(&th[i], NULL, run_conn, &cs[i]);
    }
    long total = 0, errors = 0, late = 0;
    FILE *out = fopen(argv[9], "wb");
    if (!out) { perror(argv[9]); return 2; }
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        fwrite(cs[i].recs, sizeof(struct rec), cs[i].n, out);
        total += (long)cs[i].n; errors += cs[i].errors; late += cs[i].late;
        free(cs[i].recs);
    }
    fclose(out);
    printf("requests=%ld errors=%ld late=%ld\n", total, errors, late);
    return total > 0 ? 0 : 1;
}
