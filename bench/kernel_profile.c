/*
 * Where the kernel's time goes: the run F(0..N-1) in packed BCD, no Python.
 *
 *     cc -O3 -o var/kernel_profile bench/kernel_profile.c && var/kernel_profile [N] [rounds]
 *
 * (`make profile` does this.) Uses fibod/_fastfib_core.h as the extension
 * does, with the same flags as setup.py (-O3, no -march). For each loop
 * path, portable then AVX2 where the CPU has it, alternating round by
 * round, it times:
 *   - the additions alone: the run from F(0), as FibRun._advance steps it;
 *   - the additions and the rendering of every number into text, as
 *     FibRun.render_into does it (into a reused 4 MiB buffer);
 * and prints the medians; rendering is the difference of the two. The
 * digit count of F(N-1) is checked against log10(phi) so that a broken
 * build cannot report a fast time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../fibod/_fastfib_core.h"

#define OUT_BYTES (4u << 20)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One run of F(0..n-1); renders each number if out is not NULL. Returns
 * the digit count of F(n-1), and the bytes of text written in *text. */
static size_t run(long n, uint8_t *out, size_t *text) {
    size_t max_digits = (size_t)((double)n * 0.20898764024997873) + 2;
    size_t cap = ((max_digits + 1) / 2 + 31) / 32 * 32 + FF_PAD_BYTES;
    uint8_t *bufs[3];
    for (int i = 0; i < 3; i++) {
        bufs[i] = calloc(cap, 1);
        if (!bufs[i]) {
            perror("calloc");
            exit(1);
        }
    }
    int cur = 0;
    size_t cur_digits = 1, nxt_digits = 1, written = 0, pos = 0, last = 0;
    bufs[1][cap - 1] = 1; /* F(0) = 0, F(1) = 1 */
    for (long i = 0; i < n; i++) {
        if (out) {
            if (pos + cur_digits + 1 > OUT_BYTES) {
                written += pos;
                pos = 0;
            }
            uint8_t *end = ff_render(bufs[cur] + cap - (cur_digits + 1) / 2, cur_digits, out + pos);
            *end = ' ';
            pos = (size_t)(end + 1 - out);
        }
        last = cur_digits;
        int a = cur, b = (cur + 1) % 3, c = (cur + 2) % 3;
        size_t words = (nxt_digits + 15) / 16;
        uint8_t *c_end = bufs[c] + cap;
        if (ff_bcd_add(bufs[a] + cap, bufs[b] + cap, c_end, words))
            ff_store_be(c_end - 8 * (words + 1), 1);
        size_t new_digits = nxt_digits;
        if (ff_digit_at(c_end, new_digits) != 0)
            new_digits++;
        cur = b;
        cur_digits = nxt_digits;
        nxt_digits = new_digits;
    }
    *text = written + pos;
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    return last;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int rounds = argc > 2 ? atoi(argv[2]) : 9;
    if (n < 2 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "usage: %s [N >= 2] [rounds 1..99]\n", argv[0]);
        return 2;
    }
    uint8_t *out = malloc(OUT_BYTES);
    if (!out) {
        perror("malloc");
        return 1;
    }
    /* digits of F(n-1): floor((n-1) log10 phi - log10 sqrt 5) + 1 */
    size_t want = (size_t)floor((double)(n - 1) * 0.20898764024997873 - 0.3494850021680094) + 1;
    int paths = ff_avx2_available() ? 2 : 1;
    double add[2][99], both[2][99];
    size_t text = 0;
    for (int r = 0; r < rounds; r++) {
        for (int p = 0; p < paths; p++) {
            ff_select(p);
            double t0 = now_s();
            size_t digits = run(n, NULL, &text);
            double t1 = now_s();
            run(n, out, &text);
            double t2 = now_s();
            if (digits != want) {
                fprintf(stderr, "F(%ld) has %zu digits here, %zu expected\n", n - 1, digits, want);
                return 1;
            }
            add[p][r] = t1 - t0;
            both[p][r] = t2 - t1;
        }
    }
    const char *names[2] = {"portable C", "AVX2"};
    printf("F(0..%ld), %zu bytes of text, medians of %d rounds (paths alternating)\n", n - 1,
           text, rounds);
    printf("| path | BCD additions | additions and rendering | rendering (difference) |\n");
    printf("|---|---|---|---|\n");
    for (int p = 0; p < paths; p++) {
        double a = median(add[p], rounds), b = median(both[p], rounds);
        printf("| %s | %.3f s | %.3f s | %.3f s (%.1f GB/s of text) |\n", names[p], a, b, b - a,
               (double)text / (b - a) / 1e9);
    }
    free(out);
    return 0;
}
