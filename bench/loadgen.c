/*
 * bench/loadgen.c — load generator of the Handle and DNS benchmarks (python -m bench handle-*).
 *
 * Compiled at run time by bench/handle.py with the system C compiler into bench/.build/ (rebuilt
 * when this file changes); Linux only.  Single-threaded: one epoll loop, batched UDP I/O with
 * recvmmsg/sendmmsg, so one core drives a native server harder than the server can answer.
 *
 *   loadgen run --proto handle|dns --transport udp|tcp --target HOST:PORT --requests FILE
 *               [--window K] [--conns C --depth D] [--duration S] [--warmup S] [--rate R]
 *               [--timeout-ms T] [--sockets N]
 *   loadgen reflect --proto handle|dns [--host H] [--port P]
 *
 * run: sends the pre-built requests of FILE (each a 4-byte little-endian length then one
 * complete UDP datagram or TCP frame) in round-robin, keeping requests outstanding in slots.
 * Closed window (no --rate): every slot is re-issued as soon as its answer arrives — UDP keeps K
 * slots busy, TCP C connections with D requests each (D > 1 is pipelining) — so the figure is the
 * server's saturated throughput.  Open loop (--rate R): requests are due at fixed times t0 + n/R
 * whatever the answers do, and latency is counted from the time a request was due, so a server
 * that falls behind cannot hide it by slowing the generator (no coordinated omission); the
 * slots only cap how many may be outstanding.  Answers are matched to slots by the request id
 * (Handle envelope bytes 8..11, DNS id), which the generator rewrites per send; an answer whose
 * id is not a busy slot's current one (late, after its timeout) is counted as stale and dropped.
 * A request unanswered after --timeout-ms is counted lost and its slot re-issued, so lost UDP
 * datagrams never stall the window (on TCP the connection is opened afresh: a new request would
 * queue behind the missing answer).  An answer is bad unless Handle ResponseCode (message bytes
 * 4..7) is 1 (RC_SUCCESS), or DNS QR=1, TC=0, RCODE NOERROR and ANCOUNT >= 1.
 * Prints one JSON line: q/s, latency percentiles in µs (1 µs buckets below 100 ms, 1 ms above),
 * counts, own CPU use.  SIGTERM or SIGINT ends the run early, reported like a run of that length
 * (the import benchmark measures resolution for exactly as long as an import lasts).
 *
 * reflect: the trivial server the generator is checked against — answers every Handle request
 * with itself marked RC_SUCCESS, every DNS query with itself marked a one-answer response, on
 * UDP and TCP of one port; prints "reflect: HOST:PORT" when listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define RXBUF 4096          /* UDP answers: Handle packets are <= 512 bytes, DNS without EDNS too */
#define TCP_INBUF (256 * 1024)

enum { P_HANDLE, P_DNS };
enum { T_UDP, T_TCP };

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }

static int parse_proto(const char *s) {
    return !strcmp(s, "handle") ? P_HANDLE : !strcmp(s, "dns") ? P_DNS : -2;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
         + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void parse_target(const char *text, struct sockaddr_storage *ss, socklen_t *sl) {
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) fail("--target must be HOST:PORT");
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    char *h = host;
    if (h[0] == '[') { h++; h[strlen(h) - 1] = 0; }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST}, *ai;
    int port = atoi(colon + 1);
    if (port < 1 || port > 65535) fail("--target: the port must be 1..65535");
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0) fail("--target: not a numeric HOST:PORT");
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
}

/* ------------------------------------------------------------------------------------------ */
/* run                                                                                          */

struct req { uint8_t *data; uint32_t len; };

struct slot {
    uint64_t due_ns;    /* latency counts from here: when sent (closed window) or due (open loop) */
    uint64_t sent_ns;   /* when actually queued for sending: timeouts count from here */
    uint32_t id;        /* request id on the wire now */
    uint32_t gen;
    uint32_t got;       /* Handle UDP answers split into packets: message bytes so far */
    uint8_t busy, bad, rc_seen;
};

struct conn {
    int fd;
    uint8_t *out; size_t out_len, out_cap;
    uint8_t *in; size_t in_len;
    int want_out;
};

static struct {
    int proto, transport;
    struct sockaddr_storage addr; socklen_t addrlen;
    struct req *reqs; uint32_t nreqs, maxlen, next_req;
    struct slot *slots; uint32_t nslots; uint8_t *slotbuf;
    uint32_t id_gens;              /* ids are 1 + slot + nslots * gen, gen < id_gens */
    /* Free slots, first in first out: an open loop then spreads its requests over every TCP
     * connection in turn rather than piling them on the few slots freed last. */
    uint32_t *free_ring; uint32_t free_head, nfree;
    int *socks; int nsocks;        /* UDP */
    struct conn *conns; int nconns, depth;  /* TCP */
    int ep;
    int measuring;
    uint64_t *hist; uint64_t max_us;
    uint64_t sent, answered, bad, lost, stale, reconnects, window_full, lat_sum_us;
    uint64_t timeout_ns;
    /* UDP send batches, one per socket */
    struct mmsghdr *tx; struct iovec *txiov; int *txn;
} G;

/* Latency histogram: 1 µs buckets below 100 ms, then 1 ms buckets up to 2 minutes (an open
 * loop counts from when a request was due, so a stalled server can exceed the timeout). */
#define HIST_FINE 100000u
#define HIST_LEN (HIST_FINE + 120000u)

static void hist_add(uint64_t ns) {
    uint64_t us = ns / 1000, i = us < HIST_FINE ? us : HIST_FINE + (us - HIST_FINE) / 1000;
    G.hist[i < HIST_LEN ? i : HIST_LEN - 1]++;
    G.lat_sum_us += us;
    if (us > G.max_us) G.max_us = us;
}

static uint32_t hist_value(uint32_t i) {
    return i < HIST_FINE ? i : HIST_FINE + (i - HIST_FINE) * 1000;
}

static uint32_t hist_pct(uint64_t total, double q) {
    if (!total) return 0;
    uint64_t need = (uint64_t)(q * (double)total);
    if (need < 1) need = 1;
    if (need > total) need = total;
    uint64_t acc = 0;
    for (uint32_t i = 0; i < HIST_LEN; i++) {
        acc += G.hist[i];
        if (acc >= need) return hist_value(i);
    }
    return hist_value(HIST_LEN - 1);
}

static void flush_udp(int k) {
    int off = 0;
    while (off < G.txn[k]) {
        int n = sendmmsg(G.socks[k], G.tx + k * BATCH + off, G.txn[k] - off, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            /* ECONNREFUSED: an earlier datagram met no listener; the slots time out. */
            if (errno == ECONNREFUSED || errno == ENOBUFS || errno == EAGAIN) { off++; continue; }
            die("sendmmsg");
        }
        off += n;
    }
    G.txn[k] = 0;
}

static void conn_open(int c);

static void flush_tcp(int c) {
    struct conn *k = &G.conns[c];
    size_t off = 0;
    while (off < k->out_len) {
        ssize_t n = send(k->fd, k->out + off, k->out_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return; /* the read side sees the error and reconnects */
        }
        off += n;
    }
    memmove(k->out, k->out + off, k->out_len - off);
    k->out_len -= off;
    int want = k->out_len > 0;
    if (want != k->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = c};
        epoll_ctl(G.ep, EPOLL_CTL_MOD, k->fd, &ev);
        k->want_out = want;
    }
}

static void flush_all(void) {
    if (G.transport == T_UDP) {
        for (int k = 0; k < G.nsocks; k++) if (G.txn[k]) flush_udp(k);
    } else {
        for (int c = 0; c < G.nconns; c++) if (G.conns[c].out_len) flush_tcp(c);
    }
}

static void issue(uint32_t s, uint64_t due, uint64_t now) {
    struct slot *sl = &G.slots[s];
    struct req *r = &G.reqs[G.next_req];
    if (++G.next_req == G.nreqs) G.next_req = 0;
    sl->gen = (sl->gen + 1) % G.id_gens;
    sl->id = 1 + s + G.nslots * sl->gen;
    sl->busy = 1; sl->bad = 0; sl->got = 0; sl->rc_seen = 0;
    sl->due_ns = due;
    sl->sent_ns = now;
    uint8_t *buf;
    if (G.transport == T_UDP) {
        int k = s % G.nsocks;
        buf = G.slotbuf + (size_t)s * G.maxlen;
        memcpy(buf, r->data, r->len);
        struct iovec *iov = &G.txiov[k * BATCH + G.txn[k]];
        iov->iov_base = buf; iov->iov_len = r->len;
        struct mmsghdr *m = &G.tx[k * BATCH + G.txn[k]];
        memset(m, 0, sizeof *m);
        m->msg_hdr.msg_iov = iov; m->msg_hdr.msg_iovlen = 1;
        G.txn[k]++;
    } else {
        struct conn *k = &G.conns[s / G.depth];
        if (k->out_len + r->len > k->out_cap) {
            k->out_cap = 2 * (k->out_len + r->len);
            k->out = realloc(k->out, k->out_cap);
            if (!k->out) die("realloc");
        }
        buf = k->out + k->out_len;
        memcpy(buf, r->data, r->len);
        k->out_len += r->len;
    }
    if (G.proto == P_HANDLE) put32(buf + 8, sl->id);
    else put16(buf + (G.transport == T_TCP ? 2 : 0), (uint16_t)sl->id);
    if (G.measuring) G.sent++;
    if (G.transport == T_UDP && G.txn[s % G.nsocks] == BATCH) flush_udp(s % G.nsocks);
}

static void release(uint32_t s) {
    G.slots[s].busy = 0;
    G.free_ring[(G.free_head + G.nfree++) % G.nslots] = s;
}

static uint32_t take_free(void) {
    uint32_t s = G.free_ring[G.free_head];
    G.free_head = (G.free_head + 1) % G.nslots;
    G.nfree--;
    return s;
}

/* One UDP datagram or one TCP frame (without the DNS length prefix) from the server. */
static void on_answer(const uint8_t *m, size_t len, uint64_t now) {
    uint32_t id;
    if (G.proto == P_HANDLE) {
        if (len < 20) { if (G.measuring) G.stale++; return; }
        id = be32(m + 8);
    } else {
        if (len < 12) { if (G.measuring) G.stale++; return; }
        id = be16(m);
    }
    if (id == 0 || id > G.nslots * G.id_gens) { if (G.measuring) G.stale++; return; }
    uint32_t s = (id - 1) % G.nslots;
    struct slot *sl = &G.slots[s];
    if (!sl->busy || sl->id != id) { if (G.measuring) G.stale++; return; }
    if (G.proto == P_HANDLE) {
        uint32_t msglen = be32(m + 16), seq = be32(m + 12);
        if (seq == 0) {
            sl->rc_seen = 1;
            if (len < 28 || be32(m + 24) != 1) sl->bad = 1;
        }
        if (G.transport == T_UDP && (m[2] & 0x20)) {  /* TC: one of several packets */
            sl->got += len - 20;
            if (sl->got < msglen) return;
        }
        if (!sl->rc_seen) sl->bad = 1;
    } else {
        if (!(m[2] & 0x80) || (m[2] & 0x02) || (m[3] & 0x0f) || be16(m + 6) < 1) sl->bad = 1;
    }
    if (G.measuring) {
        hist_add(now > sl->due_ns ? now - sl->due_ns : 0);
        G.answered++;
        G.bad += sl->bad;
    }
    release(s);
}

static void read_udp(int k) {
    static uint8_t bufs[BATCH][RXBUF];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iovs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iovs[i].iov_base = bufs[i]; iovs[i].iov_len = RXBUF;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iovs[i]; msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(G.socks[k], msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == ECONNREFUSED) return;
            die("recvmmsg");
        }
        uint64_t t = now_ns();
        for (int i = 0; i < n; i++) on_answer(bufs[i], msgs[i].msg_len, t);
        if (n < BATCH) return;
    }
}

static void conn_lost(int c) {
    struct conn *k = &G.conns[c];
    epoll_ctl(G.ep, EPOLL_CTL_DEL, k->fd, NULL);
    close(k->fd);
    if (G.measuring) G.reconnects++;
    /* Whatever was outstanding on it is lost; the slots go back to the pool. */
    for (int d = 0; d < G.depth; d++) {
        uint32_t s = c * G.depth + d;
        if (G.slots[s].busy) { if (G.measuring) G.lost++; release(s); }
    }
    conn_open(c);
}

static void read_tcp(int c) {
    struct conn *k = &G.conns[c];
    for (;;) {
        ssize_t n = recv(k->fd, k->in + k->in_len, TCP_INBUF - k->in_len, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            conn_lost(c);
            return;
        }
        if (n == 0) { conn_lost(c); return; }
        k->in_len += n;
        uint64_t t = now_ns();
        size_t off = 0;
        for (;;) {
            size_t avail = k->in_len - off, frame, head;
            const uint8_t *p = k->in + off;
            if (G.proto == P_HANDLE) {
                if (avail < 20) break;
                head = 0; frame = 20 + (size_t)be32(p + 16);
            } else {
                if (avail < 2) break;
                head = 2; frame = 2 + (size_t)be16(p);
            }
            if (frame > TCP_INBUF) {
                fprintf(stderr, "loadgen: TCP frame of %zu bytes\n", frame);
                conn_lost(c);
                return;
            }
            if (avail < frame) break;
            on_answer(p + head, frame - head, t);
            off += frame;
        }
        memmove(k->in, k->in + off, k->in_len - off);
        k->in_len -= off;
        if ((size_t)n < TCP_INBUF / 2) return;
    }
}

static void conn_open(int c) {
    struct conn *k = &G.conns[c];
    int fd = socket(G.addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) < 0) die("connect");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    k->fd = fd; k->out_len = 0; k->in_len = 0; k->want_out = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = c};
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void load_requests(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *all = malloc(size > 0 ? size : 1);
    if (!all || fread(all, 1, size, f) != (size_t)size) die("reading the request file");
    fclose(f);
    uint32_t cap = 1024;
    G.reqs = malloc(cap * sizeof *G.reqs);
    for (long off = 0; off < size;) {
        if (off + 4 > size) fail("request file: truncated length");
        uint32_t len = all[off] | all[off + 1] << 8 | all[off + 2] << 16
                     | (uint32_t)all[off + 3] << 24;
        off += 4;
        if (len < 12 || off + len > size) fail("request file: bad record length");
        if (G.nreqs == cap) { cap *= 2; G.reqs = realloc(G.reqs, cap * sizeof *G.reqs); }
        G.reqs[G.nreqs++] = (struct req){all + off, len};
        if (len > G.maxlen) G.maxlen = len;
        off += len;
    }
    if (!G.nreqs) fail("request file: no requests");
}

static volatile sig_atomic_t stop_now;
static void on_stop(int sig) { (void)sig; stop_now = 1; }

static void wait_until(uint64_t deadline_ns, struct epoll_event *evs, int *nev) {
    uint64_t now = now_ns();
    if (deadline_ns <= now + 2000) {          /* too close to sleep accurately: poll */
        *nev = epoll_wait(G.ep, evs, BATCH, 0);
        return;
    }
#ifdef SYS_epoll_pwait2
    struct timespec ts = {.tv_sec = (deadline_ns - now) / 1000000000ull,
                          .tv_nsec = (deadline_ns - now) % 1000000000ull};
    *nev = syscall(SYS_epoll_pwait2, G.ep, evs, BATCH, &ts, NULL, 0);
    if (*nev >= 0 || errno != ENOSYS) return;
#endif
    *nev = epoll_wait(G.ep, evs, BATCH, (int)((deadline_ns - now + 999999) / 1000000));
}

static int cmd_run(int argc, char **argv) {
    const char *target = NULL, *reqfile = NULL;
    int window = 64, conns = 16, depth = 1, nsocks = 1;
    double duration = 10, warmup = 0, rate = 0, timeout_ms = 100;
    G.proto = -1; G.transport = -1;
    static struct option opts[] = {
        {"proto", 1, 0, 'p'}, {"transport", 1, 0, 't'}, {"target", 1, 0, 'a'},
        {"requests", 1, 0, 'r'}, {"window", 1, 0, 'k'}, {"conns", 1, 0, 'c'},
        {"depth", 1, 0, 'D'}, {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'},
        {"rate", 1, 0, 'R'}, {"timeout-ms", 1, 0, 'T'}, {"sockets", 1, 0, 's'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': G.proto = parse_proto(optarg); break;
        case 't': G.transport = !strcmp(optarg, "udp") ? T_UDP
                              : !strcmp(optarg, "tcp") ? T_TCP : -2; break;
        case 'a': target = optarg; break;
        case 'r': reqfile = optarg; break;
        case 'k': window = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'D': depth = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'R': rate = atof(optarg); break;
        case 'T': timeout_ms = atof(optarg); break;
        case 's': nsocks = atoi(optarg); break;
        default: fail("run: unknown option");
        }
    }
    if (G.proto < 0 || G.transport < 0 || !target || !reqfile)
        fail("run needs --proto, --transport, --target, --requests");
    if (window < 1 || conns < 1 || depth < 1 || nsocks < 1 || duration <= 0 || warmup < 0
        || rate < 0 || timeout_ms < 1)
        fail("run: bad numbers");
    parse_target(target, &G.addr, &G.addrlen);
    load_requests(reqfile);
    G.timeout_ns = (uint64_t)(timeout_ms * 1e6);
    G.hist = calloc(HIST_LEN, sizeof *G.hist);
    G.nslots = G.transport == T_UDP ? (uint32_t)window : (uint32_t)(conns * depth);
    uint32_t idspace = G.proto == P_HANDLE ? 0x7fffffffu : 0xffffu;
    if (G.nslots > idspace / 4) fail("run: too many outstanding requests for the id space");
    G.id_gens = idspace / G.nslots;
    G.slots = calloc(G.nslots, sizeof *G.slots);
    G.free_ring = malloc(G.nslots * sizeof *G.free_ring);
    uint32_t per = G.transport == T_TCP ? (uint32_t)depth : G.nslots, groups = G.nslots / per;
    for (uint32_t d = 0; d < per; d++)       /* slot c * depth + d: connection c, place d */
        for (uint32_t c = 0; c < groups; c++) G.free_ring[G.nfree++] = c * per + d;
    /* Lowest timer slack: open-loop sends are due every few µs. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    G.ep = epoll_create1(0);
    if (G.ep < 0) die("epoll_create1");
    if (G.transport == T_UDP) {
        G.nsocks = nsocks;
        G.socks = calloc(nsocks, sizeof *G.socks);
        G.slotbuf = malloc((size_t)G.nslots * G.maxlen);
        G.tx = calloc((size_t)nsocks * BATCH, sizeof *G.tx);
        G.txiov = calloc((size_t)nsocks * BATCH, sizeof *G.txiov);
        G.txn = calloc(nsocks, sizeof *G.txn);
        for (int k = 0; k < nsocks; k++) {
            int fd = socket(G.addr.ss_family, SOCK_DGRAM, 0);
            if (fd < 0) die("socket");
            int sz = 4 << 20;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
            if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) < 0) die("connect");
            G.socks[k] = fd;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k};
            if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        }
    } else {
        G.nconns = conns; G.depth = depth;
        G.conns = calloc(conns, sizeof *G.conns);
        for (int c = 0; c < conns; c++) {
            G.conns[c].out_cap = (size_t)depth * G.maxlen * 2;
            G.conns[c].out = malloc(G.conns[c].out_cap);
            G.conns[c].in = malloc(TCP_INBUF);
            conn_open(c);
        }
    }

    struct epoll_event evs[BATCH];
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    uint64_t next_check = t0 + 10000000ull;  /* timeouts are looked for every 10 ms */
    double cpu0 = cpu_seconds();
    G.measuring = warmup == 0;
    uint64_t issued = 0;                       /* open loop: requests due so far */
    double interval = rate > 0 ? 1e9 / rate : 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!G.measuring && now >= t_measure) { G.measuring = 1; cpu0 = cpu_seconds(); }
        if (now >= t_end || stop_now) break;
        if (rate > 0) {
            uint64_t due = (uint64_t)((double)(now - t0) / interval) + 1;
            while (issued < due) {
                if (!G.nfree) { G.window_full++; break; }
                issue(take_free(), t0 + (uint64_t)(issued * interval), now);
                issued++;
            }
        } else {
            while (G.nfree) issue(take_free(), now, now);
        }
        flush_all();
        if (now >= next_check) {
            next_check = now + 10000000ull;
            for (uint32_t s = 0; s < G.nslots; s++) {
                if (!G.slots[s].busy || now - G.slots[s].sent_ns <= G.timeout_ns) continue;
                if (G.transport == T_UDP) {
                    if (G.measuring) G.lost++;
                    release(s);
                } else {
                    /* A TCP answer this late means a stuck connection: a new request on it
                     * would queue behind the missing answer, so start the connection afresh. */
                    conn_lost(s / G.depth);
                }
            }
            continue;  /* re-issue at once (closed window) */
        }
        uint64_t wake = next_check < t_end ? next_check : t_end;
        if (!G.measuring && t_measure < wake) wake = t_measure;
        if (rate > 0) {
            uint64_t next_due = t0 + (uint64_t)(issued * interval);
            if (G.nfree && next_due < wake) wake = next_due;
        }
        int nev;
        wait_until(wake, evs, &nev);
        if (nev < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < nev; i++) {
            uint32_t k = evs[i].data.u32;
            if (G.transport == T_UDP) read_udp(k);
            else {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_tcp(k);
                if (evs[i].events & EPOLLOUT) flush_tcp(k);
            }
        }
    }
    uint64_t t_stop = now_ns();
    double cpu = cpu_seconds() - cpu0;
    double secs = (double)(t_stop - (warmup > 0 ? t_measure : t0)) / 1e9;
    uint64_t good = G.answered;
    printf("{\"proto\":\"%s\",\"transport\":\"%s\",\"target\":\"%s\",\"slots\":%u,\"conns\":%d,"
           "\"depth\":%d,\"rate\":%.0f,\"duration_s\":%.3f,\"qps\":%.1f,\"sent\":%llu,"
           "\"answered\":%llu,\"bad\":%llu,\"lost\":%llu,\"stale\":%llu,\"reconnects\":%llu,"
           "\"window_full\":%llu,\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,"
           "\"max_us\":%u,\"mean_us\":%.1f,\"cpu\":%.3f,\"requests\":%u}\n",
           G.proto == P_HANDLE ? "handle" : "dns", G.transport == T_UDP ? "udp" : "tcp", target,
           G.nslots, G.transport == T_TCP ? G.nconns : 0, G.transport == T_TCP ? G.depth : 0, rate,
           secs, good / secs, (unsigned long long)G.sent, (unsigned long long)good,
           (unsigned long long)G.bad, (unsigned long long)G.lost, (unsigned long long)G.stale,
           (unsigned long long)G.reconnects, (unsigned long long)G.window_full,
           hist_pct(good, 0.50), hist_pct(good, 0.90), hist_pct(good, 0.99), hist_pct(good, 0.999),
           (uint32_t)G.max_us, good ? (double)G.lat_sum_us / good : 0.0, cpu / secs, G.nreqs);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* reflect                                                                                      */

static int R_proto;

static void reflect_patch(uint8_t *m, size_t len) {
    if (R_proto == P_HANDLE) {
        if (len >= 28) { m[2] &= (uint8_t)~0x20; put32(m + 24, 1); }
    } else if (len >= 12) {
        m[2] |= 0x80; m[3] &= 0xf0; put16(m + 6, 1);
    }
}

struct rconn { uint8_t *in; size_t in_len; };

static __attribute__((noreturn)) void cmd_reflect(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    R_proto = -1;
    static struct option opts[] = {
        {"proto", 1, 0, 'p'}, {"host", 1, 0, 'h'}, {"port", 1, 0, 'P'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': R_proto = parse_proto(optarg); break;
        case 'h': host = optarg; break;
        case 'P': port = atoi(optarg); break;
        default: fail("reflect: unknown option");
        }
    }
    if (R_proto < 0) fail("reflect needs --proto handle|dns");
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        fail("reflect: --host must be an IPv4 address");
    int udp = -1, lst = -1;
    for (int attempt = 0; attempt < 50 && lst < 0; attempt++) {
        udp = socket(AF_INET, SOCK_DGRAM, 0);
        int sz = 4 << 20;
        setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(udp, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        if (bind(udp, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind udp");
        struct sockaddr_in got; socklen_t gl = sizeof got;
        getsockname(udp, (struct sockaddr *)&got, &gl);
        lst = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lst, (struct sockaddr *)&got, sizeof got) < 0) {  /* port taken for TCP: retry */
            if (port) die("bind tcp");
            close(lst); close(udp); lst = -1;
            continue;
        }
        sa = got;
    }
    if (lst < 0 || listen(lst, 1024) < 0) die("listen");
    fcntl(lst, F_SETFL, fcntl(lst, F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev);
    ev.data.u32 = 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, lst, &ev);
    int maxfd = 65536;
    struct rconn *rc = calloc(maxfd, sizeof *rc);
    printf("reflect: %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    static uint8_t bufs[BATCH][RXBUF];
    static struct mmsghdr msgs[BATCH];
    static struct iovec iovs[BATCH];
    static struct sockaddr_storage peers[BATCH];
    struct epoll_event evs[BATCH];
    for (;;) {
        int nev = epoll_wait(ep, evs, BATCH, -1);
        if (nev < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int e = 0; e < nev; e++) {
            uint32_t tag = evs[e].data.u32;
            if (tag == 0) {
                for (;;) {
                    for (int i = 0; i < BATCH; i++) {
                        iovs[i].iov_base = bufs[i]; iovs[i].iov_len = RXBUF;
                        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                        msgs[i].msg_hdr.msg_iov = &iovs[i]; msgs[i].msg_hdr.msg_iovlen = 1;
                        msgs[i].msg_hdr.msg_name = &peers[i];
                        msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
                    }
                    int n = recvmmsg(udp, msgs, BATCH, MSG_DONTWAIT, NULL);
                    if (n <= 0) break;
                    for (int i = 0; i < n; i++) {
                        reflect_patch(bufs[i], msgs[i].msg_len);
                        iovs[i].iov_len = msgs[i].msg_len;
                    }
                    for (int off = 0; off < n;) {
                        int m = sendmmsg(udp, msgs + off, n - off, 0);
                        if (m <= 0) break;
                        off += m;
                    }
                    if (n < BATCH) break;
                }
            } else if (tag == 1) {
                for (;;) {
                    int fd = accept4(lst, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    if (fd >= maxfd) { close(fd); continue; }
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    rc[fd].in = malloc(TCP_INBUF); rc[fd].in_len = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (uint32_t)fd + 2};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
            } else {
                int fd = tag - 2;
                struct rconn *k = &rc[fd];
                ssize_t n = recv(fd, k->in + k->in_len, TCP_INBUF - k->in_len, 0);
                if (n <= 0) {
                    if (n < 0 && errno == EAGAIN) continue;
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd); free(k->in); k->in = NULL;
                    continue;
                }
                k->in_len += n;
                size_t off = 0;
                for (;;) {
                    size_t avail = k->in_len - off, frame, head;
                    uint8_t *p = k->in + off;
                    if (R_proto == P_HANDLE) {
                        if (avail < 20) break;
                        head = 0; frame = 20 + (size_t)be32(p + 16);
                    } else {
                        if (avail < 2) break;
                        head = 2; frame = 2 + (size_t)be16(p);
                    }
                    if (frame > TCP_INBUF || avail < frame) break;
                    reflect_patch(p + head, frame - head);
                    off += frame;
                }
                /* Frames answered in place, then sent back in one write; blocking is fine for a
                 * reflector whose clients keep a bounded number of requests outstanding. */
                for (size_t w = 0; w < off;) {
                    ssize_t m = send(fd, k->in + w, off - w, MSG_NOSIGNAL);
                    if (m < 0) { if (errno == EAGAIN || errno == EINTR) continue; break; }
                    w += m;
                }
                memmove(k->in, k->in + off, k->in_len - off);
                k->in_len -= off;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen run|reflect [options]  (see the top of loadgen.c)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "reflect")) cmd_reflect(argc - 1, argv + 1);
    fprintf(stderr, "loadgen: unknown command %s\n", argv[1]);
    return 2;
}
