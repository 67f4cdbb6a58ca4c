/*
 * sse_floor: the least a streaming client can do, as a CPU reference for bench/resources.
 *
 * One thread, epoll, C concurrent HTTP/1.1 keep-alive connections, each sending
 * POST /v1/completions with "stream": true back to back until N responses have ended. Every
 * read is timestamped (clock_gettime); each `data: {` event in it counts as a token arriving
 * then (TTFT from the send, then the gaps between tokens, 0 for tokens sharing a read); a
 * response ends at the chunked body's terminator after "data: [DONE]". No JSON parsing and no
 * histograms (the gaps are kept in an array and sorted at the end): whatever a real client
 * spends beyond this is its own overhead, and whatever error it shows beyond this the machine
 * cannot avoid.
 *
 *   cc -O2 -o sse_floor sse_floor.c
 *   ./sse_floor HOST PORT CONCURRENCY REQUESTS PROMPT_WORDS MAX_TOKENS
 *
 * Prints one JSON line: completed requests, events, reads, seconds, TTFT and ITL p50/p99 (ms),
 * and the mean number of requests in flight.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    int in_body;       /* response head seen */
    int done_seen;     /* "data: [DONE]" seen */
    char tail[16];     /* last bytes of the previous read, for patterns split across reads */
    size_t tail_len;
    double sent;       /* when the request was written */
    double last_token; /* when the previous token arrived (0: none yet) */
};

static double *ttfts, *gaps;
static long n_ttft, n_gaps, cap_gaps;
static double busy; /* request-seconds in flight */

static void add_gap(double g) {
    if (n_gaps == cap_gaps) {
        cap_gaps = cap_gaps ? 2 * cap_gaps : 1 << 20;
        gaps = realloc(gaps, sizeof *gaps * (size_t)cap_gaps);
    }
    gaps[n_gaps++] = g;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, long n, double q) {
    return n ? v[(long)(q * (double)(n - 1))] * 1e3 : 0.0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_conn(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Count occurrences of `pat` in tail+data (the tail was already searched on its own). */
static size_t count_in(const char *tail, size_t tl, const char *data, size_t n, const char *pat,
                       int *found) {
    size_t pl = strlen(pat), count = 0;
    char joint[64];
    /* Matches that straddle the previous read and this one. */
    size_t head = n < pl - 1 ? n : pl - 1;
    memcpy(joint, tail, tl);
    memcpy(joint + tl, data, head);
    for (size_t i = 0; i + pl <= tl + head; i++)
        if (i < tl && i + pl > tl && memcmp(joint + i, pat, pl) == 0)
            count++;
    const char *p = data, *end = data + n;
    while ((p = memmem(p, (size_t)(end - p), pat, pl)) != NULL) {
        count++;
        p += pl;
    }
    if (count)
        *found = 1;
    return count;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT CONCURRENCY REQUESTS PROMPT_WORDS MAX_TOKENS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), conc = atoi(argv[3]);
    long total = atol(argv[4]);
    int words = atoi(argv[5]), max_tokens = atoi(argv[6]);

    char body[8192], req[9000];
    int bl = snprintf(body, sizeof body, "{\"model\":\"sim\",\"prompt\":\"");
    for (int i = 0; i < words; i++)
        bl += snprintf(body + bl, sizeof body - bl, i ? " w%d" : "w%d", i);
    bl += snprintf(body + bl, sizeof body - bl,
                   "\",\"max_tokens\":%d,\"stream\":true,\"ignore_eos\":true}", max_tokens);
    int rl = snprintf(req, sizeof req,
                      "POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
                      host, port, bl, body);

    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)conc, sizeof *cs);
    ttfts = malloc(sizeof *ttfts * (size_t)total);
    long sent = 0, completed = 0, events = 0, reads = 0;
    double t0 = now_s();
    for (int i = 0; i < conc && sent < total; i++) {
        cs[i].fd = open_conn(host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        cs[i].sent = now_s();
        send_all(cs[i].fd, req, (size_t)rl);
        sent++;
    }
    static char buf[BUF];
    struct epoll_event evs[512];
    while (completed < total) {
        int n = epoll_wait(ep, evs, 512, 10000);
        if (n <= 0) {
            fprintf(stderr, "no progress for 10 s (%ld of %ld done)\n", completed, total);
            return 1;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            ssize_t r = read(c->fd, buf, BUF);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                fprintf(stderr, "connection closed\n");
                return 1;
            }
            reads++;
            double t = now_s();
            int found = 0;
            if (!c->in_body) {
                if (memmem(buf, (size_t)r, "\r\n\r\n", 4))
                    c->in_body = 1;
            }
            long tokens = (long)count_in(c->tail, c->tail_len, buf, (size_t)r, "data: {", &found);
            events += tokens;
            for (long k = 0; k < tokens; k++) {
                if (c->last_token == 0.0)
                    ttfts[n_ttft++] = t - c->sent;
                else
                    add_gap(t - c->last_token);
                c->last_token = t;
            }
            found = 0;
            count_in(c->tail, c->tail_len, buf, (size_t)r, "[DONE]", &found);
            if (found)
                c->done_seen = 1;
            int ended = 0;
            if (c->done_seen) {
                found = 0;
                count_in(c->tail, c->tail_len, buf, (size_t)r, "\r\n0\r\n\r\n", &found);
                ended = found;
            }
            size_t keep = (size_t)r < 15 ? (size_t)r : 15;
            if (c->tail_len + keep > 15) {
                size_t drop = c->tail_len + keep - 15;
                if (drop > c->tail_len)
                    drop = c->tail_len;
                memmove(c->tail, c->tail + drop, c->tail_len - drop);
                c->tail_len -= drop;
            }
            memcpy(c->tail + c->tail_len, buf + r - keep, keep);
            c->tail_len += keep;
            if (ended) {
                completed++;
                busy += t - c->sent;
                c->in_body = c->done_seen = 0;
                c->tail_len = 0;
                c->last_token = 0.0;
                if (sent < total) {
                    c->sent = now_s();
                    send_all(c->fd, req, (size_t)rl);
                    sent++;
                }
            }
        }
    }
    double el = now_s() - t0;
    qsort(ttfts, (size_t)n_ttft, sizeof *ttfts, cmpd);
    qsort(gaps, (size_t)n_gaps, sizeof *gaps, cmpd);
    printf("{\"completed\": %ld, \"events\": %ld, \"reads\": %ld, \"seconds\": %.3f, "
           "\"ttft_p50_ms\": %.3f, \"ttft_p99_ms\": %.3f, \"itl_p50_ms\": %.3f, \"itl_p99_ms\": %.3f, "
           "\"mean_concurrency\": %.1f}\n",
           completed, events, reads, el, pct(ttfts, n_ttft, 0.5), pct(ttfts, n_ttft, 0.99),
           pct(gaps, n_gaps, 0.5), pct(gaps, n_gaps, 0.99), busy / el);
    return 0;
}
