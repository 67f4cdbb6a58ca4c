/*
 * wake_probe: how late this machine wakes a sleeping thread, as a reference for bench/open-loop.
 *
 * Sleeps until absolute deadlines INTERVAL_US apart (clock_nanosleep, CLOCK_MONOTONIC, timer
 * slack 1 ns) for SECONDS and reports how late each wake-up was. A load generator whose sender
 * sleeps between requests cannot, at a given percentile, send earlier than this; run it during
 * the measurement so that both see the same machine.
 *
 *   cc -O2 -o wake_probe wake_probe.c
 *   ./wake_probe SECONDS INTERVAL_US
 *
 * Prints one JSON line with lateness percentiles in microseconds.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static long long ns(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SECONDS INTERVAL_US\n", argv[0]);
        return 2;
    }
    double secs = atof(argv[1]);
    long interval_ns = atol(argv[2]) * 1000L;
    long n = (long)(secs * 1e9 / interval_ns);
    long long *late = malloc(sizeof *late * (size_t)n);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long long t0 = ns(start);
    for (long i = 0; i < n; i++) {
        long long due = t0 + (i + 1) * (long long)interval_ns;
        struct timespec d = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL) != 0) {
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        late[i] = ns(now) - due;
    }
    qsort(late, (size_t)n, sizeof *late, cmp);
#define Q(q) (late[(long)((q) * (n - 1))] / 1000.0)
    printf("{\"wakeups\": %ld, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f}\n",
           n, Q(0.5), Q(0.9), Q(0.99), Q(0.999), late[n - 1] / 1000.0);
    return 0;
}
