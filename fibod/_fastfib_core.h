/*
 * Packed-BCD arithmetic and rendering for fibod's kernel.
 *
 * Numbers are kept in decimal so that printing them needs no division:
 * two digits per byte, most significant digit first, right-aligned at the
 * END of a zero-padded buffer (so the stored bytes are also the segment
 * bytes). Addition works on 16 digits per 64-bit word with the classic
 * "add 6 to every nibble" trick; rendering is a nibble unpack plus '0'.
 *
 * The default build is portable C. On x86-64 with GCC or Clang an AVX2
 * clone of the same loops is compiled too and chosen at run time.
 */
#ifndef FIBOD_FASTFIB_CORE_H
#define FIBOD_FASTFIB_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FF_SIX 0x6666666666666666ULL
#define FF_NIBBLE_LOW_BITS 0x1111111111111110ULL

static inline uint64_t ff_load_be(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#elif !defined(__BYTE_ORDER__)
#error "unknown byte order"
#endif
    return v;
}

static inline void ff_store_be(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/*
 * c = a + b for right-aligned packed-BCD numbers ending at a_end, b_end,
 * c_end, over `words` 64-bit words (16 digits each) counted from the end.
 * Returns the carry out of the top word (0 or 1); the caller stores it.
 */
static unsigned ff_bcd_add_portable(const uint8_t *a_end, const uint8_t *b_end,
                                  uint8_t *c_end, size_t words) {
    uint64_t carry = 0;
    for (size_t w = 1; w <= words; w++) {
        uint64_t a = ff_load_be(a_end - 8 * w);
        uint64_t b = ff_load_be(b_end - 8 * w);
        uint64_t t1 = a + FF_SIX;          /* cannot overflow: a <= 0x99..9 */
        uint64_t t2 = t1 + b;
        uint64_t over = t2 < t1;
        uint64_t t3 = t2 + carry;
        over |= t3 < t2;
        /* bit i of `carries` is the carry into bit i of the sum */
        uint64_t carries = t3 ^ t1 ^ b;
        uint64_t no_carry = ~carries & FF_NIBBLE_LOW_BITS;
        uint64_t fix = (no_carry >> 2) | (no_carry >> 3);
        fix |= (over - 1) & 0x6000000000000000ULL; /* top nibble: carry is `over` */
        ff_store_be(c_end - 8 * w, t3 - fix);
        carry = over;
    }
    return (unsigned)carry;
}

/* Digit (0..9) at position pos (0 = least significant) of a number ending at end. */
static inline unsigned ff_digit_at(const uint8_t *end, size_t pos) {
    uint8_t byte = end[-1 - (ptrdiff_t)(pos / 2)];
    return (pos & 1) ? (byte >> 4) : (byte & 0x0F);
}

/* Write `nbytes` of packed BCD as 2*nbytes ASCII digits; portable loop. */
static inline void ff_unpack_portable(const uint8_t *src, size_t nbytes, uint8_t *out) {
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = (uint8_t)((src[i] >> 4) | 0x30);
        out[2 * i + 1] = (uint8_t)((src[i] & 0x0F) | 0x30);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FF_HAVE_AVX2_CLONE 1
#include <immintrin.h>

/* Lane i of FF_LANE_ONE[m] is 1 and of FF_LANE_ALL[m] all ones iff bit i of m. */
static uint64_t ff_lane_one[16][4] __attribute__((aligned(32)));
static uint64_t ff_lane_all[16][4] __attribute__((aligned(32)));

static void ff_init_tables(void) {
    for (int m = 0; m < 16; m++)
        for (int i = 0; i < 4; i++) {
            ff_lane_one[m][i] = (m >> i) & 1;
            ff_lane_all[m][i] = ((m >> i) & 1) ? ~0ULL : 0;
        }
}

__attribute__((target("avx2"))) static inline __m256i ff_reverse32(__m256i v) {
    const __m256i rev = _mm256_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
                                         15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, rev), 0x4E);
}

/*
 * The same addition, 64 digits (four words) per step. Each lane adds
 * without its carry-in; lanes that overflowed (generate) or came out all
 * ones (propagate) give two 4-bit masks, and one scalar add of those masks
 * yields every lane's carry-in at once (carry-lookahead in a register).
 * `words` is rounded up to whole 32-byte blocks: buffers are zero-padded.
 */
__attribute__((target("avx2"))) static unsigned ff_bcd_add_avx2(const uint8_t *a_end,
                                                              const uint8_t *b_end,
                                                              uint8_t *c_end, size_t words) {
    const __m256i six = _mm256_set1_epi64x((long long)FF_SIX);
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ULL);
    const __m256i ones = _mm256_set1_epi64x(-1);
    const __m256i nib = _mm256_set1_epi64x((long long)FF_NIBBLE_LOW_BITS);
    const __m256i top6 = _mm256_set1_epi64x((long long)0x6000000000000000ULL);
    unsigned carry = 0;
    size_t blocks = (words + 3) / 4;
    for (size_t i = 1; i <= blocks; i++) {
        __m256i a = ff_reverse32(_mm256_loadu_si256((const __m256i *)(a_end - 32 * i)));
        __m256i b = ff_reverse32(_mm256_loadu_si256((const __m256i *)(b_end - 32 * i)));
        __m256i t1 = _mm256_add_epi64(a, six);
        __m256i t2 = _mm256_add_epi64(t1, b);
        __m256i gen = _mm256_cmpgt_epi64(_mm256_xor_si256(t1, sign), _mm256_xor_si256(t2, sign));
        __m256i prop = _mm256_cmpeq_epi64(t2, ones);
        unsigned g = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(gen));
        unsigned p = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(prop));
        unsigned cin = ((g | p) + g + carry) ^ p; /* bit i: carry into lane i; bit 4: out */
        unsigned over = cin >> 1;                 /* bit i: carry out of lane i */
        __m256i t3 = _mm256_add_epi64(t2, _mm256_load_si256((const __m256i *)ff_lane_one[cin & 15]));
        __m256i carries = _mm256_xor_si256(_mm256_xor_si256(t3, t1), b);
        __m256i no_carry = _mm256_andnot_si256(carries, nib);
        __m256i fix = _mm256_or_si256(_mm256_srli_epi64(no_carry, 2), _mm256_srli_epi64(no_carry, 3));
        __m256i overm = _mm256_load_si256((const __m256i *)ff_lane_all[over & 15]);
        fix = _mm256_or_si256(fix, _mm256_andnot_si256(overm, top6));
        __m256i c = _mm256_sub_epi64(t3, fix);
        _mm256_storeu_si256((__m256i *)(c_end - 32 * i), ff_reverse32(c));
        carry = cin >> 4;
    }
    return carry;
}
__attribute__((target("avx2"))) static void ff_unpack_avx2(const uint8_t *src, size_t nbytes,
                                                           uint8_t *out) {
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = (uint8_t)((src[i] >> 4) | 0x30);
        out[2 * i + 1] = (uint8_t)((src[i] & 0x0F) | 0x30);
    }
}
#else
#define FF_HAVE_AVX2_CLONE 0
#endif

typedef void (*ff_unpack_fn)(const uint8_t *, size_t, uint8_t *);
typedef unsigned (*ff_add_fn)(const uint8_t *, const uint8_t *, uint8_t *, size_t);

/* The loops in use; set by ff_select(). */
static ff_unpack_fn ff_unpack = ff_unpack_portable;
static ff_add_fn ff_bcd_add = ff_bcd_add_portable;

/* Bytes of zero padding a number buffer needs above its digits. */
#define FF_PAD_BYTES 64

/* 1 if the AVX2 clone is compiled in and this CPU can run it, else 0. */
static int ff_avx2_available(void) {
#if FF_HAVE_AVX2_CLONE
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

/* Choose the unpack loop: 0 = portable, 1 = AVX2, -1 = best available.
 * Returns the choice made (0 or 1). */
static int ff_select(int want) {
    if (want == 0 || !ff_avx2_available()) {
        ff_unpack = ff_unpack_portable;
        ff_bcd_add = ff_bcd_add_portable;
        return 0;
    }
#if FF_HAVE_AVX2_CLONE
    ff_init_tables();
    ff_unpack = ff_unpack_avx2;
    ff_bcd_add = ff_bcd_add_avx2;
#endif
    return 1;
}

/* Render a d-digit BCD number (its (d+1)/2 bytes start at src) as text. */
static inline uint8_t *ff_render(const uint8_t *src, size_t digits, uint8_t *out) {
    size_t nbytes = (digits + 1) / 2;
    if (digits & 1) {
        *out++ = (uint8_t)((src[0] & 0x0F) | 0x30);
        src++;
        nbytes--;
    }
    ff_unpack(src, nbytes, out);
    return out + 2 * nbytes;
}

/* Pack d ASCII digits into right-aligned BCD ending at end. */
static inline void ff_pack_ascii(const uint8_t *digits, size_t d, uint8_t *end) {
    size_t pos = 0;
    while (pos < d) {
        uint8_t lo = (uint8_t)(digits[d - 1 - pos] - '0');
        uint8_t hi = (pos + 1 < d) ? (uint8_t)(digits[d - 2 - pos] - '0') : 0;
        end[-1 - (ptrdiff_t)(pos / 2)] = (uint8_t)(lo | (hi << 4));
        pos += 2;
    }
}

/* Nonzero if any nibble in the bytes is above 9 (not a decimal digit). */
static inline int ff_has_bad_nibble(const uint8_t *p, size_t n) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        /* a nibble is >= 10 iff bit3 and (bit2 or bit1) */
        acc |= (x >> 3) & ((x >> 2) | (x >> 1)) & 0x1111111111111111ULL;
    }
    for (; i < n; i++) {
        uint8_t x = p[i];
        acc |= (uint64_t)((x >> 3) & ((x >> 2) | (x >> 1)) & 0x11);
    }
    return acc != 0;
}

#endif
