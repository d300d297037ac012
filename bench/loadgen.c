/* loadgen: a wrk-like HTTP/1.1 load generator for the benchmarks (bench/wrk.py builds
 * and runs it).
 *
 * Why C: the outside harness the benchmark must agree with is wrk, which answers
 * 20,000+ requests/s against a raw ASGI server on this kind of machine; a Python client
 * tops out near that and would cap the baseline, inflating every ratio. This is the same
 * model as wrk: N keep-alive connections, each sending its next request as soon as the
 * previous answer is in (closed loop per connection), one thread, epoll.
 *
 * Requests are prepared (and SigV4-signed) by the caller: FILE holds records of a
 * 4-byte little-endian length and the raw request bytes (head and body). Each request
 * picks a record uniformly at random (xorshift, --seed), or with --once takes them in
 * order, each once (populating keys).
 *
 * Usage: loadgen --port P --conns N --requests FILE [--host 127.0.0.1] [--duration S]
 *   [--warmup S] [--max-ops N] [--once] [--expect-status 200] [--expect-body BYTES]
 *   [--seed N]
 * Prints one JSON object: ops (answers counted), errors (status != expected, or
 * a reset), bad_length (body length != expected), seconds, ops_per_s, p50/p90/p99/max
 * latency in ms, the client's CPU share (client_cpu, 1.0 = one core busy: the figure
 * is then the client's ceiling), the first unexpected statuses.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *data;
    uint32_t len;
} req_t;

enum { S_HEAD, S_BODY, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END, S_TRAILER };

typedef struct {
    int fd;
    int state;
    const req_t *req;
    uint32_t sent;
    double t_start;
    char *buf;
    size_t len, cap;
    long remaining;
    long body_len;
    int status;
    int idle; /* 1: not sending (time or count ran out) */
} conn_t;

static req_t *reqs;
static size_t nreqs, next_once;
static uint64_t rng_state = 88172645463325252ULL;
static const char *host = "127.0.0.1";
static int port, nconns = 16, once, expect_status = 200;
static long expect_body = -1;
static double duration = 3.0, warmup = 0.0;
static long max_ops = 1000000;
static double t_measure, t_end;
static long issued, ops, errors, bad_length, lat_n;
static uint32_t *lat_us;
static int samples[5], nsamples;
static int epfd;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void load_requests(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    size_t cap = 1024;
    reqs = malloc(cap * sizeof(req_t));
    unsigned char lenb[4];
    while (fread(lenb, 1, 4, f) == 4) {
        uint32_t n = lenb[0] | lenb[1] << 8 | lenb[2] << 16 | (uint32_t)lenb[3] << 24;
        if (nreqs == cap) reqs = realloc(reqs, (cap *= 2) * sizeof(req_t));
        reqs[nreqs].data = malloc(n);
        reqs[nreqs].len = n;
        if (fread(reqs[nreqs].data, 1, n, f) != n) {
            fprintf(stderr, "loadgen: %s: truncated record\n", path);
            exit(2);
        }
        nreqs++;
    }
    fclose(f);
    if (nreqs == 0) {
        fprintf(stderr, "loadgen: %s: no requests\n", path);
        exit(2);
    }
}

static void conn_open(conn_t *c) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("address");
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    c->state = S_HEAD;
    c->len = 0;
}

static void want_write(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_req(conn_t *c) {
    while (c->sent < c->req->len) {
        ssize_t n = write(c->fd, c->req->data + c->sent, c->req->len - c->sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                want_write(c, 1);
                return;
            }
            return; /* the read side sees the reset */
        }
        c->sent += n;
    }
    want_write(c, 0);
}

/* Start the connection's next request, or go idle when time or count ran out. */
static void next_request(conn_t *c) {
    double t = now();
    if (t >= t_end || (t >= t_measure && issued >= max_ops)) {
        c->idle = 1;
        return;
    }
    if (once) {
        if (next_once >= nreqs) {
            c->idle = 1;
            return;
        }
        c->req = &reqs[next_once++];
    } else {
        c->req = &reqs[xorshift() % nreqs];
    }
    if (t >= t_measure) issued++;
    c->t_start = t;
    c->sent = 0;
    c->status = 0;
    c->body_len = 0;
    flush_req(c);
}

static void complete(conn_t *c) {
    double t = now();
    if (c->t_start >= t_measure && t <= t_end) {
        ops++;
        if (c->status != expect_status) {
            errors++;
            if (nsamples < 5) samples[nsamples++] = c->status;
        } else if (expect_body >= 0 && c->body_len != expect_body) {
            bad_length++;
        }
        if (lat_n < max_ops) lat_us[lat_n++] = (uint32_t)((t - c->t_start) * 1e6);
    }
    c->state = S_HEAD;
    next_request(c);
}

/* Parse what is buffered, completing every whole answer in it. */
static void parse(conn_t *c) {
    char *p = c->buf, *end = c->buf + c->len;
    for (;;) {
        if (c->state == S_HEAD) {
            char *h = memmem(p, end - p, "\r\n\r\n", 4);
            if (!h) break;
            c->status = (end - p > 12) ? atoi(p + 9) : 0;
            c->remaining = 0;
            int chunked = 0;
            for (char *line = memchr(p, '\n', h - p); line && line < h;
                 line = memchr(line + 1, '\n', h - line)) {
                char *l = line + 1;
                if (strncasecmp(l, "content-length:", 15) == 0) c->remaining = atol(l + 15);
                else if (strncasecmp(l, "transfer-encoding:", 18) == 0 &&
                         memmem(l, h - l > 40 ? 40 : h - l, "chunked", 7))
                    chunked = 1;
            }
            p = h + 4;
            if (c->status >= 100 && c->status < 200) continue;
            c->state = chunked ? S_CHUNK_SIZE : S_BODY;
            if (c->state == S_BODY && c->remaining == 0) {
                complete(c);
                continue;
            }
        } else if (c->state == S_BODY || c->state == S_CHUNK_DATA) {
            long take = end - p < c->remaining ? end - p : c->remaining;
            p += take;
            c->remaining -= take;
            c->body_len += take;
            if (c->remaining) break;
            if (c->state == S_BODY) complete(c);
            else c->state = S_CHUNK_END;
        } else if (c->state == S_CHUNK_END) {
            if (end - p < 2) break;
            p += 2;
            c->state = S_CHUNK_SIZE;
        } else if (c->state == S_CHUNK_SIZE) {
            char *nl = memmem(p, end - p, "\r\n", 2);
            if (!nl) break;
            c->remaining = strtol(p, NULL, 16);
            p = nl + 2;
            c->state = c->remaining ? S_CHUNK_DATA : S_TRAILER;
        } else { /* S_TRAILER: lines up to an empty one end the message */
            char *nl = memmem(p, end - p, "\r\n", 2);
            if (!nl) break;
            int empty = nl == p;
            p = nl + 2;
            if (empty) complete(c);
        }
    }
    size_t left = end - p;
    memmove(c->buf, p, left);
    c->len = left;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n > 0) {
            c->len += n;
            parse(c);
            continue;
        }
        if (n < 0 && errno == EAGAIN) return;
        /* closed or reset: count it, reconnect, carry on */
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        if (!c->idle) {
            if (c->t_start >= t_measure) {
                ops++;
                errors++;
                if (nsamples < 5) samples[nsamples++] = -1;
            }
            conn_open(c);
            next_request(c);
        } else {
            c->fd = -1;
        }
        return;
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct(double q) {
    if (lat_n == 0) return -1;
    long rank = (long)(q / 100.0 * lat_n + 0.5) - 1;
    if (rank < 0) rank = 0;
    if (rank >= lat_n) rank = lat_n - 1;
    return lat_us[rank] / 1e3;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--once")) { once = 1; continue; }
        if (!v) { fprintf(stderr, "loadgen: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--conns")) nconns = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--max-ops")) max_ops = atol(v);
        else if (!strcmp(a, "--requests")) path = v;
        else if (!strcmp(a, "--expect-status")) expect_status = atoi(v);
        else if (!strcmp(a, "--expect-body")) expect_body = atol(v);
        else if (!strcmp(a, "--seed")) rng_state ^= (uint64_t)atoll(v) * 0x9E3779B97F4A7C15ULL;
        else { fprintf(stderr, "loadgen: unknown option %s\n", a); return 2; }
    }
    if (!path || port <= 0 || nconns <= 0 || max_ops <= 0) {
        fprintf(stderr, "usage: loadgen --port P --conns N --requests FILE [options]\n");
        return 2;
    }
    if (rng_state == 0) rng_state = 1;
    load_requests(path);
    lat_us = malloc(max_ops * sizeof(uint32_t));
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    conn_t *conns = calloc(nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) conn_open(&conns[i]);
    double t0 = now();
    if (once) warmup = 0;
    t_measure = t0 + warmup;
    t_end = t_measure + duration;
    double cpu0 = 0;
    int measuring = warmup <= 0;
    if (measuring) cpu0 = cpu_seconds();
    for (int i = 0; i < nconns; i++) next_request(&conns[i]);
    struct epoll_event evs[256];
    double t_last = t0;
    for (;;) {
        int active = 0;
        for (int i = 0; i < nconns; i++) active += !conns[i].idle;
        if (!active) break;
        double t = now();
        if (t > t_end + 5.0) break; /* answers that never come */
        if (!measuring && t >= t_measure) {
            measuring = 1;
            cpu0 = cpu_seconds();
        }
        int n = epoll_wait(epfd, evs, 256, 50);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) flush_req(c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
        t_last = now();
        /* requests still in flight at the end are not counted, as wrk */
        if (!once && t_last >= t_end) break;
    }
    double end = once ? t_last : (t_last < t_end ? t_last : t_end);
    double secs = end - t_measure;
    double cpu = cpu_seconds() - cpu0;
    qsort(lat_us, lat_n, sizeof(uint32_t), cmp_u32);
    long ok = ops - errors;
    printf("{\"ops\": %ld, \"ok\": %ld, \"errors\": %ld, \"bad_length\": %ld, "
           "\"requests\": %zu, \"conns\": %d, \"seconds\": %.6f, \"ops_per_s\": %.3f, "
           "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f, "
           "\"client_cpu\": %.4f, \"error_statuses\": [",
           ops, ok, errors, bad_length, once ? next_once : nreqs, nconns, secs,
           secs > 0 ? ok / secs : 0.0, pct(50), pct(90), pct(99), pct(100),
           secs > 0 ? cpu / secs : 0.0);
    for (int i = 0; i < nsamples; i++) printf("%s%d", i ? ", " : "", samples[i]);
    printf("]}\n");
    return 0;
}
