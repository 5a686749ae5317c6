# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compute kernel: Fibonacci runs kept in packed BCD, rendered as text.

Only the hot loops live here; `fibod.kernel` is the Python face and holds a
plain-Python twin of every function for cross-checks.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef extern from "_fastfib_core.h":
    unsigned ff_bcd_add(const uint8_t *a_end, const uint8_t *b_end, uint8_t *c_end, size_t words) nogil
    unsigned ff_digit_at(const uint8_t *end, size_t pos) nogil
    uint8_t *ff_render(const uint8_t *src, size_t digits, uint8_t *out) nogil
    void ff_pack_ascii(const uint8_t *digits, size_t d, uint8_t *end) nogil
    int ff_has_bad_nibble(const uint8_t *p, size_t n) nogil
    void ff_store_be(uint8_t *p, uint64_t v) nogil
    int ff_select(int want) nogil
    int ff_avx2_available() nogil
    int FF_PAD_BYTES

# log10 of the golden ratio: F(n) < phi**n, so F(n) has at most
# floor(n * LOG10_PHI) + 1 digits.
cdef double LOG10_PHI = 0.20898764024997873

cdef int _simd = ff_select(-1)


def select_simd(int want):
    """Pick the unpack loop: 0 portable, 1 AVX2, -1 best; returns the choice."""
    global _simd
    _simd = ff_select(want)
    return _simd


def simd_in_use():
    """Return 1 if the AVX2 unpack loop is in use, else 0."""
    return _simd


def simd_available():
    """Return 1 if the AVX2 loops are compiled in and this CPU runs them.

    Tests ask, so that they skip the AVX2 path where it cannot be chosen
    instead of testing the portable one twice.
    """
    return ff_avx2_available()


# Below this index a jump is cheap with Python ints and str(); above it
# gmpy2 does the big multiplications and the radix conversion. gmpy2 is
# imported only then: its import costs ~40 ms, a third of a short run.
SMALL_JUMP = 20_000


def fib_pair(n):
    """Return (F(n), F(n+1)) as gmpy2 mpz by fast doubling."""
    import gmpy2

    return _doubling(n, gmpy2.mpz(1), gmpy2.mpz(0))


def _doubling(n, one, zero):
    """Fast doubling with two squarings per bit, in one's number type."""
    if n < 0:
        raise ValueError("n must be >= 0")
    m = n + 1
    fk = one     # F(k), k = 1
    fkm1 = zero  # F(k-1)
    k_odd = True
    for bit in bin(m)[3:]:
        sq = fk * fk
        sqm1 = fkm1 * fkm1
        f2k_m1 = sq + sqm1                              # F(2k-1)
        f2k_p1 = 4 * sq - sqm1 + (-2 if k_odd else 2)   # F(2k+1)
        f2k = f2k_p1 - f2k_m1                           # F(2k)
        if bit == "1":
            fk, fkm1 = f2k_p1, f2k
            k_odd = True
        else:
            fk, fkm1 = f2k, f2k_m1
            k_odd = False
    return fkm1, fk


def fib(n):
    """Return F(n) as a gmpy2 mpz.

    Doubles up to F(n // 2) and F(n // 2 - 1), then takes the last step
    with one multiplication instead of two squarings: the last step is
    the largest, so this saves about a tenth of the time.
    """
    import gmpy2

    if n < 0:
        raise ValueError("n must be >= 0")
    if n < 2:
        return gmpy2.mpz(n)
    k = n >> 1
    fkm1, fk = _doubling(k - 1, gmpy2.mpz(1), gmpy2.mpz(0))
    if n & 1:  # F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2 (-1)^k
        return (2 * fk + fkm1) * (2 * fk - fkm1) + (-2 if k & 1 else 2)
    return fk * (fk + 2 * fkm1)  # F(2k) = F(k) (F(k) + 2 F(k-1))


cdef size_t digits_bound(object n):
    """Largest digit count of F(m) for any m <= n, plus slack."""
    return <size_t>(float(n) * LOG10_PHI) + 2


cdef class FibRun:
    """F(start), F(start+1), ... kept as three rotating packed-BCD buffers."""

    cdef uint8_t *bufs[3]
    cdef size_t cap
    cdef int cur_i
    cdef size_t cur_digits
    cdef size_t nxt_digits
    cdef readonly Py_ssize_t remaining
    cdef readonly size_t max_digits

    def __cinit__(self, start, Py_ssize_t count):
        self.bufs[0] = self.bufs[1] = self.bufs[2] = NULL
        if start < 0 or count < 0:
            raise ValueError("start and count must be >= 0")
        self.max_digits = digits_bound(start + count)
        # whole 32-byte blocks plus zero padding: the AVX2 add reads and
        # writes whole blocks above the top digit
        self.cap = ((self.max_digits + 1) // 2 + 31) // 32 * 32 + FF_PAD_BYTES
        for i in range(3):
            self.bufs[i] = <uint8_t *>calloc(self.cap, 1)
            if self.bufs[i] == NULL:
                raise MemoryError()
        self.cur_i = 0
        self.remaining = count
        if start <= SMALL_JUMP:
            lo, hi = _doubling(start, 1, 0)
            lo, hi = str(lo), str(hi)
        else:
            lo, hi = fib_pair(start)
            lo, hi = lo.digits(10), hi.digits(10)
        self.cur_digits = self._load(0, lo)
        self.nxt_digits = self._load(1, hi)

    def __dealloc__(self):
        for i in range(3):
            free(self.bufs[i])

    cdef size_t _load(self, int slot, str digits) except 0:
        cdef bytes text = digits.encode("ascii")
        ff_pack_ascii(<const uint8_t *>PyBytes_AS_STRING(text), len(text),
                      self.bufs[slot] + self.cap)
        return len(text)

    cdef inline void _advance(self) noexcept nogil:
        cdef int a = self.cur_i
        cdef int b = (a + 1) % 3
        cdef int c = (a + 2) % 3
        cdef size_t words = (self.nxt_digits + 15) // 16
        cdef uint8_t *c_end = self.bufs[c] + self.cap
        if ff_bcd_add(self.bufs[a] + self.cap, self.bufs[b] + self.cap, c_end, words):
            ff_store_be(c_end - 8 * (words + 1), 1)
        cdef size_t new_digits = self.nxt_digits
        if ff_digit_at(c_end, new_digits) != 0:
            new_digits += 1
        self.cur_i = b
        self.cur_digits = self.nxt_digits
        self.nxt_digits = new_digits
        self.remaining -= 1

    def render_into(self, uint8_t[::1] out, int sep=32):
        """Write the next numbers as text, each followed by `sep`.

        Stops before a number that does not fit; returns bytes written.
        Raises ValueError if `out` cannot hold even one number.
        """
        cdef size_t space = out.shape[0]
        cdef uint8_t *base = &out[0] if space else NULL
        cdef uint8_t *p = base
        cdef size_t d
        cdef Py_ssize_t done = 0
        if self.remaining > 0 and self.cur_digits + 1 > space:
            raise ValueError(f"output buffer of {space} bytes cannot hold a "
                             f"{self.cur_digits}-digit number")
        with nogil:
            while self.remaining > 0:
                d = self.cur_digits
                if <size_t>(p - base) + d + 1 > space:
                    break
                p = ff_render(self.bufs[self.cur_i] + self.cap - (d + 1) // 2, d, p)
                p[0] = <uint8_t>sep
                p += 1
                done += 1
                self._advance()
        return p - base

    def encode_payload(self):
        """Consume the rest of the run; return (payload bytes, total digits).

        Each number is a little-endian uint32 digit count followed by its
        (digits + 1) // 2 packed-BCD bytes, most significant first.
        """
        cdef Py_ssize_t count = self.remaining
        cdef size_t bound = <size_t>count * (4 + (self.max_digits + 1) // 2)
        cdef uint8_t *buf = <uint8_t *>calloc(bound if bound else 1, 1)
        cdef uint8_t *p = buf
        cdef size_t d, nb
        cdef uint64_t total = 0
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                while self.remaining > 0:
                    d = self.cur_digits
                    nb = (d + 1) // 2
                    p[0] = d & 0xFF
                    p[1] = (d >> 8) & 0xFF
                    p[2] = (d >> 16) & 0xFF
                    p[3] = (d >> 24) & 0xFF
                    memcpy(p + 4, self.bufs[self.cur_i] + self.cap - nb, nb)
                    p += 4 + nb
                    total += d
                    self._advance()
            return PyBytes_FromStringAndSize(<char *>buf, p - buf), total
        finally:
            free(buf)


cdef inline size_t read_u32(const uint8_t *p) noexcept nogil:
    return <size_t>p[0] | (<size_t>p[1] << 8) | (<size_t>p[2] << 16) | (<size_t>p[3] << 24)


def check_payload(const uint8_t[::1] payload, Py_ssize_t count):
    """Validate a payload's structure and digits; return its total digits.

    Raises ValueError naming the first problem found.
    """
    cdef size_t n = payload.shape[0]
    cdef const uint8_t *base = &payload[0] if n else NULL
    cdef size_t pos = 0
    cdef size_t d, nb
    cdef uint64_t total = 0
    cdef Py_ssize_t i
    for i in range(count):
        if pos + 4 > n:
            raise ValueError(f"number {i} of {count}: length prefix truncated at byte {pos}")
        d = read_u32(base + pos)
        nb = (d + 1) // 2
        if d == 0:
            raise ValueError(f"number {i} of {count}: zero digit count at byte {pos}")
        if pos + 4 + nb > n:
            raise ValueError(f"number {i} of {count}: {d} digits need {nb} bytes, "
                             f"only {n - pos - 4} left")
        if ff_has_bad_nibble(base + pos + 4, nb):
            raise ValueError(f"number {i} of {count}: a nibble is not a decimal digit")
        if d & 1 and (base[pos + 4] >> 4) != 0:
            raise ValueError(f"number {i} of {count}: nonzero pad nibble")
        if d > 1 and ff_digit_at(base + pos + 4 + nb, d - 1) == 0:
            raise ValueError(f"number {i} of {count}: leading zero digit")
        pos += 4 + nb
        total += d
    if pos != n:
        raise ValueError(f"{n - pos} bytes after the last of {count} numbers")
    return total


def prefix_digits(const uint8_t[::1] payload, Py_ssize_t count):
    """Return the total digits of the first `count` numbers of a checked payload."""
    cdef size_t n = payload.shape[0]
    cdef const uint8_t *base = &payload[0] if n else NULL
    cdef size_t pos = 0
    cdef size_t d
    cdef uint64_t total = 0
    cdef Py_ssize_t i
    for i in range(count):
        if pos + 4 > n:
            raise ValueError(f"payload holds fewer than {count} numbers")
        d = read_u32(base + pos)
        total += d
        pos += 4 + (d + 1) // 2
    return total


def add_decimal(str a, str b):
    """Add two decimal strings with the selected BCD add loop (for tests).

    Fibonacci runs rarely produce the carry patterns that stress the add
    (long runs of 9s across word and block edges); tests feed them here.
    """
    cdef size_t d = max(len(a), len(b)) + 1
    cdef size_t cap = ((d + 1) // 2 + 31) // 32 * 32 + FF_PAD_BYTES
    cdef size_t words = (max(len(a), len(b)) + 15) // 16
    cdef uint8_t *bufs[3]
    cdef int i
    for i in range(3):
        bufs[i] = <uint8_t *>calloc(cap, 1)
    try:
        ff_pack_ascii(<const uint8_t *>PyBytes_AS_STRING(a.encode()), len(a), bufs[0] + cap)
        ff_pack_ascii(<const uint8_t *>PyBytes_AS_STRING(b.encode()), len(b), bufs[1] + cap)
        if ff_bcd_add(bufs[0] + cap, bufs[1] + cap, bufs[2] + cap, words):
            ff_store_be(bufs[2] + cap - 8 * (words + 1), 1)
        out = bytearray(cap * 2)
        ff_render(bufs[2], cap * 2, <uint8_t *>(<char *>out))
        return out.decode().lstrip("0") or "0"
    finally:
        for i in range(3):
            free(bufs[i])


def payload_text(const uint8_t[::1] payload, Py_ssize_t count, int sep=32):
    """Render a checked payload's first `count` numbers into one new bytes.

    The bytes object is sized exactly and filled before anyone sees it, so
    a WSGI server can send it as is: no copy per block.
    """
    cdef size_t n = payload.shape[0]
    cdef const uint8_t *base = &payload[0] if n else NULL
    cdef size_t size = <size_t>prefix_digits(payload, count) + <size_t>count
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t *p = <uint8_t *>PyBytes_AS_STRING(out)
    cdef size_t pos = 0
    cdef size_t d
    cdef Py_ssize_t i
    with nogil:
        for i in range(count):
            d = read_u32(base + pos)
            p = ff_render(base + pos + 4, d, p)
            p[0] = <uint8_t>sep
            p += 1
            pos += 4 + (d + 1) // 2
    return out
