/* Optional C accelerator for liftwatch.protocol.framing.FrameReader (protocol/SPEC.md, wire v2).
 *
 * scan() takes the reader's buffer and, for every complete part up to its last 0x00 delimiter, does
 * in one call what the pure-Python loop does per frame with several C calls: split at 0x00, COBS
 * decode, CRC-16/CCITT-FALSE check, header parse, msgpack.unpackb of the payload (the real msgpack
 * package, called from here) and the Frame tuple. It only ever *accepts*: any part it would not
 * deliver exactly as the Python path does (damaged, a type the board may not send, the host's
 * direction flag, tag to verify, untagged while tags are required, payload msgpack refuses, longer
 * than a frame) is handed back as bytes, and
 * FrameReader._decode gives it the reference treatment (drop reason, salvage, HMAC, replay). So the
 * drop accounting has one implementation, in Python, and both paths run the same tests.
 *
 * The wire constants are repeated here and exported as LAYOUT; framing.py refuses the accelerator
 * if they differ from lwproto's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define VERSION 2
#define HEADER_LEN 11
#define CRC_LEN 2
#define TAG_LEN 8
#define MAX_BODY 1024
#define MAX_WIRE (1024 + 5 + 1)
#define FLAG_TAGGED 0x01
#define FLAG_FROM_HOST 0x02
#define FLAGS_INCOMPAT_MASK 0x0F
#define FLAGS_INCOMPAT_KNOWN 0x03
#define T_MS_MASK 0x3FFFFFFF

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected), slice-by-16: crc_table[k][b] is
 * the CRC register contribution of byte b followed by k zero bytes, so 16 bytes are folded per step
 * with independent table loads (8 KiB of tables, L1-resident). */
#define SLICES 16
static uint16_t crc_table[SLICES][256];

static void crc_init(void) {
    for (int b = 0; b < 256; b++) {
        uint16_t crc = (uint16_t)(b << 8);
        for (int i = 0; i < 8; i++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        crc_table[0][b] = crc;
    }
    for (int k = 1; k < SLICES; k++)
        for (int b = 0; b < 256; b++) {
            uint16_t c = crc_table[k - 1][b];
            crc_table[k][b] = (uint16_t)((c << 8) ^ crc_table[0][c >> 8]);
        }
}

static uint16_t crc16_table_only(const uint8_t *p, Py_ssize_t n, uint16_t crc) {
    while (n >= 16) {
        uint16_t x = crc ^ (uint16_t)((p[0] << 8) | p[1]);
        crc = crc_table[15][x >> 8] ^ crc_table[14][x & 0xFF] ^ crc_table[13][p[2]] ^ crc_table[12][p[3]] ^
              crc_table[11][p[4]] ^ crc_table[10][p[5]] ^ crc_table[9][p[6]] ^ crc_table[8][p[7]] ^
              crc_table[7][p[8]] ^ crc_table[6][p[9]] ^ crc_table[5][p[10]] ^ crc_table[4][p[11]] ^
              crc_table[3][p[12]] ^ crc_table[2][p[13]] ^ crc_table[1][p[14]] ^ crc_table[0][p[15]];
        p += 16;
        n -= 16;
    }
    while (n-- > 0)
        crc = (uint16_t)((crc << 8) ^ crc_table[0][((crc >> 8) ^ *p++) & 0xFF]);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The same CRC with carry-less multiplication (PCLMULQDQ), used when the CPU has it (checked at
 * import). The message is a polynomial M(x), first bit highest; CRC = M(x)*x^16 mod P(x) once the
 * init value 0xFFFF is XORed into the first two bytes (init*x^(8L) is exactly that). 16-byte blocks
 * are folded into a 128-bit remainder A: A*x^128 + B == A_hi*(x^192 mod P) + A_lo*(x^128 mod P) + B,
 * and the products stay under 80 bits, so A never grows. At the end A_hi*(x^64 mod P) + A_lo (under
 * 80 bits, same residue) goes through the table CRC with init 0, which multiplies by x^16.
 * On other CPUs (a Raspberry Pi's Cortex-A72 has no PMULL) the slice-by-16 tables are used. */
#include <immintrin.h>

static uint64_t k64, k128, k192, k256, k320; /* x^n mod P, computed at import */
static int have_clmul;

static uint64_t xpow_mod_p(int n) {
    uint32_t r = 1;
    for (int i = 0; i < n; i++) {
        r <<= 1;
        if (r & 0x10000)
            r ^= 0x11021;
    }
    return r;
}

__attribute__((target("pclmul,ssse3"))) static uint16_t crc16_clmul(const uint8_t *p, Py_ssize_t n, uint16_t crc) {
    /* n >= 32. The n % 16 leading bytes start A right-aligned (leading zero bits change nothing),
     * so only whole blocks follow and no byte-wise tail is left. */
    const __m128i reverse = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i k_fold = _mm_set_epi64x((long long)k192, (long long)k128);
    const __m128i k_fold2 = _mm_set_epi64x((long long)k320, (long long)k256);
    Py_ssize_t head = n % 16;
    uint8_t first[32], lead[16] = {0};
    memcpy(first, p, (size_t)(16 + head));
    first[0] ^= (uint8_t)(crc >> 8);
    first[1] ^= (uint8_t)crc;
    memcpy(lead + 16 - head, first, (size_t)head);
    __m128i a = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)lead), reverse); /* big-endian value */
    const uint8_t *block = first + head;
    p += 16 + head;
    n -= 16 + head; /* a multiple of 16 */
    /* the block from `first`, then two blocks per step while they last: A*x^256 + B1*x^128 + B2,
     * where only A's products are on the dependency chain (half as many steps) */
    __m128i b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)block), reverse);
    a = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k_fold, 0x11), _mm_clmulepi64_si128(a, k_fold, 0x00)), b);
    while (n >= 32) {
        __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), reverse);
        __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), reverse);
        __m128i a_part = _mm_xor_si128(_mm_clmulepi64_si128(a, k_fold2, 0x11), _mm_clmulepi64_si128(a, k_fold2, 0x00));
        __m128i b_part = _mm_xor_si128(_mm_clmulepi64_si128(b1, k_fold, 0x11), _mm_clmulepi64_si128(b1, k_fold, 0x00));
        a = _mm_xor_si128(_mm_xor_si128(a_part, b_part), b2);
        p += 32;
        n -= 32;
    }
    if (n) { /* one block left */
        b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), reverse);
        a = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k_fold, 0x11), _mm_clmulepi64_si128(a, k_fold, 0x00)), b);
    }
    __m128i t = _mm_xor_si128(_mm_clmulepi64_si128(a, _mm_set_epi64x(0, (long long)k64), 0x01),
                              _mm_and_si128(a, _mm_set_epi64x(0, -1)));
    uint8_t le[16];
    _mm_storeu_si128((__m128i *)le, t);
    /* T (< 2^80, big-endian bytes le[9] .. le[0]) * x^16 mod P: ten independent table loads */
    return crc_table[9][le[9]] ^ crc_table[8][le[8]] ^ crc_table[7][le[7]] ^ crc_table[6][le[6]] ^
           crc_table[5][le[5]] ^ crc_table[4][le[4]] ^ crc_table[3][le[3]] ^ crc_table[2][le[2]] ^
           crc_table[1][le[1]] ^ crc_table[0][le[0]];
}
#endif

static uint16_t crc16(const uint8_t *p, Py_ssize_t n, uint16_t crc) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (have_clmul && n >= 32)
        return crc16_clmul(p, n, crc);
#endif
    return crc16_table_only(p, n, crc);
}

/* COBS-decode src[0:n] (no 0x00 in it: it is a part between delimiters) into dst; -1 if malformed.
 * Same result as cobs.cobs.decode: a 0xFF code adds no zero, nor does the last block.
 * Until the first 0xFF code, decoded byte k is src[k + 1] except where a code byte stood, which
 * decodes to 0: so everything is copied at once and the code chain is walked only to place the
 * zeros. VIB frames have a zero every ~6 bytes, and this keeps the per-block work to a load and a
 * store. A 0xFF block (254 non-zero bytes in a row) shifts the rest: the block-by-block loop takes
 * over from there. */
static Py_ssize_t cobs_decode(const uint8_t *src, Py_ssize_t n, uint8_t *dst) {
    if (n == 0)
        return 0;
    memcpy(dst, src + 1, (size_t)(n - 1));
    Py_ssize_t i = 0;
    for (;;) {
        unsigned code = src[i];
        if (code == 0xFF)
            break;
        Py_ssize_t next = i + code;
        if (next >= n) /* the last block: it must end exactly at the end */
            return next == n ? n - 1 : -1;
        dst[next - 1] = 0;
        i = next;
    }
    /* from the 0xFF block at src[i] on, output trails input by one more byte per 0xFF block */
    Py_ssize_t o = i;
    while (i < n) {
        unsigned code = src[i++];
        Py_ssize_t len = (Py_ssize_t)code - 1, end = i + len;
        if (end > n)
            return -1;
        memmove(dst + o, src + i, (size_t)len);
        o += len;
        i = end;
        if (code < 0xFF && i < n)
            dst[o++] = 0;
    }
    return o;
}

/* Two parts at once. Walking a code chain is one dependent load per block (~6 cycles): decoding two
 * frames' chains in the same loop lets the CPU overlap them. Same results as cobs_decode on each. */
#define WALK(src, n, dst, i, m)                                      \
    do {                                                             \
        unsigned code_ = (src)[i];                                   \
        Py_ssize_t next_ = (i) + code_;                              \
        if (code_ == 0xFF)                                           \
            (m) = -2; /* shifts the rest: general decoder */         \
        else if (next_ >= (n))                                       \
            (m) = next_ == (n) ? (n)-1 : -1;                         \
        else {                                                       \
            (dst)[next_ - 1] = 0;                                    \
            (i) = next_;                                             \
        }                                                            \
    } while (0)

static void cobs_decode_pair(const uint8_t *sa, Py_ssize_t na, uint8_t *da, Py_ssize_t *ma, const uint8_t *sb,
                             Py_ssize_t nb, uint8_t *db, Py_ssize_t *mb) {
    Py_ssize_t ia = 0, ib = 0, ra = -3, rb = -3; /* -3: still walking */
    memcpy(da, sa + 1, (size_t)(na - 1));
    memcpy(db, sb + 1, (size_t)(nb - 1));
    while (ra == -3 && rb == -3) {
        WALK(sa, na, da, ia, ra);
        WALK(sb, nb, db, ib, rb);
    }
    while (ra == -3)
        WALK(sa, na, da, ia, ra);
    while (rb == -3)
        WALK(sb, nb, db, ib, rb);
    *ma = ra == -2 ? cobs_decode(sa, na, da) : ra;
    *mb = rb == -2 ? cobs_decode(sb, nb, db) : rb;
}

/* Chaskey-12 (Mouha et al.; ISO/IEC 29192-6), the tag of SPEC.md section 4: the first 8 bytes of
 * the 16-byte MAC of m[0:n] under a 16-byte key. Same results as lwtag's viper and Python versions
 * (protocol/vectors and tests/test_lwtag.py check all three). */
#define ROTL32(x, b) (uint32_t)(((x) << (b)) | ((x) >> (32 - (b))))

static void chaskey_permute(uint32_t v[4]) {
    for (int r = 0; r < 12; r++) {
        v[0] += v[1]; v[1] = ROTL32(v[1], 5); v[1] ^= v[0]; v[0] = ROTL32(v[0], 16);
        v[2] += v[3]; v[3] = ROTL32(v[3], 8); v[3] ^= v[2];
        v[0] += v[3]; v[3] = ROTL32(v[3], 13); v[3] ^= v[0];
        v[2] += v[1]; v[1] = ROTL32(v[1], 7); v[1] ^= v[2]; v[2] = ROTL32(v[2], 16);
    }
}

static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void times_two(uint32_t out[4], const uint32_t in[4]) {
    out[0] = (in[0] << 1) ^ ((in[3] >> 31) ? 0x87u : 0u);
    out[1] = (in[1] << 1) | (in[0] >> 31);
    out[2] = (in[2] << 1) | (in[1] >> 31);
    out[3] = (in[3] << 1) | (in[2] >> 31);
}

static void chaskey_tag(const uint8_t key[16], const uint8_t *m, Py_ssize_t n, uint8_t tag[8]) {
    uint32_t k[4], k1[4], k2[4], v[4];
    for (int i = 0; i < 4; i++)
        k[i] = v[i] = load_le32(key + 4 * i);
    times_two(k1, k);
    times_two(k2, k1);
    Py_ssize_t last = n ? ((n - 1) / 16) * 16 : 0;
    for (Py_ssize_t i = 0; i < last; i += 16) {
        for (int w = 0; w < 4; w++)
            v[w] ^= load_le32(m + i + 4 * w);
        chaskey_permute(v);
    }
    uint8_t block[16] = {0};
    const uint32_t *l = (n && n % 16 == 0) ? k1 : k2;
    memcpy(block, m + last, (size_t)(n - last));
    if (l == k2)
        block[n - last] = 0x01;
    for (int w = 0; w < 4; w++)
        v[w] ^= load_le32(block + 4 * w) ^ l[w];
    chaskey_permute(v);
    for (int w = 0; w < 2; w++) {
        uint32_t x = v[w] ^ l[w];
        for (int b = 0; b < 4; b++)
            tag[4 * w + b] = (uint8_t)(x >> (8 * b));
    }
}

static PyObject *str_strict_map_key, *kwnames;

/* A part of n wire bytes, COBS-decoded into body[0:m] (m < 0: malformed) -> a new Frame, or NULL
 * with no exception set when the Python path must decide. */
static PyObject *fast_frame(const uint8_t *body, Py_ssize_t m, Py_ssize_t n, PyTypeObject *frame_type,
                            PyObject *unpackb, const uint8_t *known, int tags_unverified, int require_tag) {
    if (m < HEADER_LEN + CRC_LEN || m > MAX_BODY)
        return NULL;
    if (crc16(body, m, 0xFFFF) != 0) /* the CRC travels big-endian: over body + CRC it is 0 */
        return NULL;
    unsigned ver = body[0], mtype = body[1], flags = body[2];
    /* known[] holds the types a board may send: a host-only type or the host's flag (a reflected
     * frame) goes to the Python path, which counts it as DIRECTION */
    if (ver != VERSION || (flags & FLAGS_INCOMPAT_MASK & ~FLAGS_INCOMPAT_KNOWN) || (flags & FLAG_FROM_HOST) ||
        !known[mtype])
        return NULL;
    Py_ssize_t end = m - CRC_LEN;
    int tagged = (flags & FLAG_TAGGED) != 0;
    if (tagged) {
        if (!tags_unverified) /* a key is set: HMAC and replay guard are the Python path's */
            return NULL;
        end -= TAG_LEN;
        if (end < HEADER_LEN)
            return NULL;
    } else if (require_tag) {
        return NULL;
    }
    PyObject *payload_bytes = PyBytes_FromStringAndSize((const char *)body + HEADER_LEN, end - HEADER_LEN);
    if (payload_bytes == NULL)
        return NULL;
    PyObject *call_args[3] = {NULL, payload_bytes, Py_False}; /* raw=False is msgpack's default */
    PyObject *payload = PyObject_Vectorcall(unpackb, call_args + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    Py_DECREF(payload_bytes);
    if (payload == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) /* bad payload: the Python path counts it */
            PyErr_Clear();
        return NULL;
    }
    PyObject *frame = frame_type->tp_alloc(frame_type, 8);
    if (frame == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    unsigned boot_id = body[3] | (body[4] << 8);
    unsigned seq = body[5] | (body[6] << 8);
    unsigned long t_ms = ((unsigned long)body[7] | ((unsigned long)body[8] << 8) | ((unsigned long)body[9] << 16) |
                          ((unsigned long)body[10] << 24)) & T_MS_MASK;
    PyObject *items[8] = {
        PyLong_FromUnsignedLong(mtype), PyLong_FromUnsignedLong(flags),   PyLong_FromUnsignedLong(boot_id),
        PyLong_FromUnsignedLong(seq),   PyLong_FromUnsignedLong(t_ms),    payload,
        PyBool_FromLong(tagged),        PyLong_FromSsize_t(n + 1),
    };
    for (int i = 0; i < 8; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 8; j++)
                Py_XDECREF(items[j]);
            Py_DECREF(frame);
            return NULL;
        }
    }
    for (int i = 0; i < 8; i++)
        PyTuple_SET_ITEM(frame, i, items[i]);
    return frame;
}

/* ------------------------------------------------------------------ Splitter: the reader's stream state */

typedef struct {
    PyObject_HEAD
    PyTypeObject *frame_type;
    PyObject *unpackb;
    uint8_t known[256];
    /* bytes after the last delimiter: the start of a frame still arriving (at most MAX_WIRE kept) */
    uint8_t *tail;
    Py_ssize_t tail_len, tail_cap;
    int long_run; /* no delimiter for more than MAX_WIRE bytes: TOO_LARGE already counted */
} Splitter;

static int splitter_init(Splitter *self, PyObject *args, PyObject *kwds) {
    PyObject *frame_type, *unpackb;
    Py_buffer known;
    static char *kwlist[] = {"frame_type", "unpackb", "known_types", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOy*", kwlist, &frame_type, &unpackb, &known))
        return -1;
    int ok = PyType_Check(frame_type) && PyType_IsSubtype((PyTypeObject *)frame_type, &PyTuple_Type);
    if (!ok || known.len != 256) {
        PyBuffer_Release(&known);
        PyErr_SetString(PyExc_ValueError, "Splitter(frame_type: tuple subclass, unpackb, known_types: 256 bytes)");
        return -1;
    }
    memcpy(self->known, known.buf, 256);
    PyBuffer_Release(&known);
    Py_INCREF(frame_type);
    Py_XSETREF(self->frame_type, (PyTypeObject *)frame_type);
    Py_INCREF(unpackb);
    Py_XSETREF(self->unpackb, unpackb);
    if (self->tail == NULL) {
        /* a first part is assembled here: kept tail (<= MAX_WIRE) + the chunk up to its first delimiter,
         * grown on demand */
        self->tail_cap = 2 * MAX_WIRE;
        self->tail = PyMem_Malloc((size_t)self->tail_cap);
        if (self->tail == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->tail_len = 0;
    self->long_run = 0;
    return 0;
}

static void splitter_dealloc(Splitter *self) {
    Py_XDECREF(self->frame_type);
    Py_XDECREF(self->unpackb);
    PyMem_Free(self->tail);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int tail_reserve(Splitter *self, Py_ssize_t need) {
    if (need <= self->tail_cap)
        return 0;
    Py_ssize_t cap = 2 * need;
    uint8_t *grown = PyMem_Realloc(self->tail, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->tail = grown;
    self->tail_cap = cap;
    return 0;
}

/* Appends the Frame for part, or the part as bytes for the Python path; -1 on a Python error. */
static int emit(Splitter *self, PyObject *items, const uint8_t *part, Py_ssize_t n, const uint8_t *body,
                Py_ssize_t m, int tags_unverified, int require_tag, Py_ssize_t *slow) {
    PyObject *item = fast_frame(body, m, n, self->frame_type, self->unpackb, self->known, tags_unverified, require_tag);
    if (item == NULL) {
        if (PyErr_Occurred()) /* MemoryError and the like: not a frame problem */
            return -1;
        item = PyBytes_FromStringAndSize((const char *)part, n);
        if (item == NULL)
            return -1;
        (*slow)++;
    }
    int rc = PyList_Append(items, item);
    Py_DECREF(item);
    return rc;
}

/* Keep the newest MAX_WIRE bytes of an over-long run; count it once (FrameReader._trim). */
static void trim(Splitter *self, Py_ssize_t *too_large) {
    if (self->tail_len <= MAX_WIRE)
        return;
    if (!self->long_run) {
        (*too_large)++;
        self->long_run = 1;
    }
    memmove(self->tail, self->tail + self->tail_len - MAX_WIRE, MAX_WIRE);
    self->tail_len = MAX_WIRE;
}

PyDoc_STRVAR(feed_doc,
             "feed(chunk, tags_unverified, require_tag) -> (items, slow, too_large)\n\n"
             "Every part the chunk completes, in order: a Frame when it decodes cleanly, else the part as\n"
             "bytes for FrameReader._decode (slow: how many). too_large: over-long runs trimmed (count\n"
             "each as a TOO_LARGE drop). tags_unverified: tagged frames are accepted without a key check.");

static PyObject *splitter_feed(Splitter *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "feed(chunk, tags_unverified, require_tag)");
        return NULL;
    }
    int tags_unverified = PyObject_IsTrue(args[1]);
    int require_tag = PyObject_IsTrue(args[2]);
    if (tags_unverified < 0 || require_tag < 0)
        return NULL;
    Py_buffer chunk;
    if (PyObject_GetBuffer(args[0], &chunk, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *data = chunk.buf;
    Py_ssize_t len = chunk.len, slow = 0, too_large = 0;
    PyObject *items = PyList_New(0);
    if (items == NULL)
        goto fail;
    const uint8_t *z = len ? memchr(data, 0, (size_t)len) : NULL;
    if (z == NULL) { /* no delimiter: all of it joins the tail */
        Py_ssize_t keep = len > MAX_WIRE + 1 ? MAX_WIRE + 1 : len; /* older bytes are trimmed anyway */
        if (len > keep && !self->long_run) {
            too_large++;
            self->long_run = 1;
        }
        if (len > keep)
            self->tail_len = 0;
        if (tail_reserve(self, self->tail_len + keep) < 0)
            goto fail;
        memcpy(self->tail + self->tail_len, data + len - keep, (size_t)keep);
        self->tail_len += keep;
        trim(self, &too_large);
        goto done;
    }
    Py_ssize_t start = 0, stop = z - data;
    /* parts are decoded in pairs (cobs_decode_pair); one may wait here for its partner */
    const uint8_t *pending = NULL;
    Py_ssize_t pending_n = 0;
    uint8_t body_a[MAX_WIRE], body_b[MAX_WIRE];
    self->long_run = 0;
    if (self->tail_len) { /* the first part began in an earlier chunk */
        if (tail_reserve(self, self->tail_len + stop) < 0)
            goto fail;
        memcpy(self->tail + self->tail_len, data, (size_t)stop);
        pending = self->tail;
        pending_n = self->tail_len + stop;
        self->tail_len = 0; /* the tail buffer is rewritten only after the pending part is done */
        start = stop + 1;
    }
    for (;;) {
        const uint8_t *part = NULL;
        Py_ssize_t n = 0;
        while (start < len && part == NULL) {
            z = memchr(data + start, 0, (size_t)(len - start));
            if (z == NULL)
                break;
            stop = z - data;
            if (stop > start) {
                part = data + start;
                n = stop - start;
            }
            start = stop + 1;
        }
        if (part != NULL && pending == NULL) {
            pending = part;
            pending_n = n;
            continue;
        }
        if (pending == NULL)
            break;
        Py_ssize_t ma = -1, mb = -1;
        int a_fits = pending_n <= MAX_WIRE, b_fits = part != NULL && n <= MAX_WIRE;
        if (a_fits && b_fits)
            cobs_decode_pair(pending, pending_n, body_a, &ma, part, n, body_b, &mb);
        else {
            if (a_fits)
                ma = cobs_decode(pending, pending_n, body_a);
            if (b_fits)
                mb = cobs_decode(part, n, body_b);
        }
        if (emit(self, items, pending, pending_n, body_a, ma, tags_unverified, require_tag, &slow) < 0)
            goto fail;
        pending = NULL;
        if (part == NULL)
            break;
        if (emit(self, items, part, n, body_b, mb, tags_unverified, require_tag, &slow) < 0)
            goto fail;
    }
    if (start < len) { /* an unfinished frame: keep it for the next chunk */
        if (tail_reserve(self, len - start) < 0)
            goto fail;
        memcpy(self->tail, data + start, (size_t)(len - start));
        self->tail_len = len - start;
        trim(self, &too_large);
    }
done:
    if (self->tail_cap > 4 * MAX_WIRE && self->tail_len <= 2 * MAX_WIRE) {
        /* one huge chunk grew the buffer: give the memory back (the kept tail is <= MAX_WIRE + 1) */
        uint8_t *shrunk = PyMem_Realloc(self->tail, (size_t)(2 * MAX_WIRE));
        if (shrunk != NULL) {
            self->tail = shrunk;
            self->tail_cap = 2 * MAX_WIRE;
        }
    }
    PyBuffer_Release(&chunk);
    return Py_BuildValue("(Nnn)", items, slow, too_large);
fail:
    Py_XDECREF(items);
    PyBuffer_Release(&chunk);
    return NULL;
}

static PyMethodDef splitter_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))splitter_feed, METH_FASTCALL, feed_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SplitterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "liftwatch.protocol._fastframe.Splitter",
    .tp_doc = PyDoc_STR("Splitter(frame_type, unpackb, known_types): one board's byte stream -> Frames."),
    .tp_basicsize = sizeof(Splitter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)splitter_init,
    .tp_dealloc = (destructor)splitter_dealloc,
    .tp_methods = splitter_methods,
};

PyDoc_STRVAR(crc16_doc, "crc16(data, crc=0xFFFF) -> int: CRC-16/CCITT-FALSE, as binascii.crc_hqx (for tests).");

static PyObject *crc16_call(PyObject *const *args, Py_ssize_t nargs, int tables_only) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "crc16(data, crc=0xFFFF)");
        return NULL;
    }
    unsigned long crc = 0xFFFF;
    if (nargs == 2) {
        crc = PyLong_AsUnsignedLong(args[1]);
        if (crc == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    uint16_t r = tables_only ? crc16_table_only(b.buf, b.len, (uint16_t)crc) : crc16(b.buf, b.len, (uint16_t)crc);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(r);
}

static PyObject *py_crc16(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    return crc16_call(args, nargs, 0);
}

PyDoc_STRVAR(crc16_tables_doc, "crc16_tables(data, crc=0xFFFF) -> int: the slice-by-16 path only (what CPUs without PCLMUL run).");

static PyObject *py_crc16_tables(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    return crc16_call(args, nargs, 1);
}

PyDoc_STRVAR(cobs_decode_doc, "cobs_decode(part) -> bytes, or None if malformed (for tests).");

static PyObject *py_cobs_decode(PyObject *module, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    if (memchr(b.buf, 0, (size_t)b.len) != NULL) {
        PyBuffer_Release(&b);
        Py_RETURN_NONE;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, b.len);
    if (out == NULL) {
        PyBuffer_Release(&b);
        return NULL;
    }
    Py_ssize_t m = cobs_decode(b.buf, b.len, (uint8_t *)PyBytes_AS_STRING(out));
    PyBuffer_Release(&b);
    if (m < 0) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    _PyBytes_Resize(&out, m);
    return out;
}

PyDoc_STRVAR(cobs_decode_pair_doc, "cobs_decode_pair(a, b) -> (bytes or None, bytes or None), by the two-chain decoder (for tests).");

static PyObject *decoded_or_none(const uint8_t *body, Py_ssize_t m) {
    if (m < 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)body, m);
}

static PyObject *py_cobs_decode_pair(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "cobs_decode_pair(a, b)");
        return NULL;
    }
    Py_buffer a, b;
    if (PyObject_GetBuffer(args[0], &a, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &b, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = NULL;
    if (a.len < 1 || b.len < 1 || a.len > MAX_WIRE || b.len > MAX_WIRE || memchr(a.buf, 0, (size_t)a.len) ||
        memchr(b.buf, 0, (size_t)b.len)) {
        PyErr_SetString(PyExc_ValueError, "parts must be 1..MAX_WIRE bytes without 0x00");
    } else {
        uint8_t da[MAX_WIRE], db[MAX_WIRE];
        Py_ssize_t ma, mb;
        cobs_decode_pair(a.buf, a.len, da, &ma, b.buf, b.len, db, &mb);
        PyObject *x = decoded_or_none(da, ma), *y = decoded_or_none(db, mb);
        if (x != NULL && y != NULL)
            result = PyTuple_Pack(2, x, y);
        Py_XDECREF(x);
        Py_XDECREF(y);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

PyDoc_STRVAR(chaskey_doc, "chaskey(key16, data) -> bytes: the 8-byte Chaskey-12 tag of data (SPEC.md section 4).");

static PyObject *py_chaskey(PyObject *module, PyObject *args) {
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*:chaskey", &key, &data))
        return NULL;
    PyObject *tag = NULL;
    if (key.len != 16) {
        PyErr_SetString(PyExc_ValueError, "chaskey: the key is 16 bytes");
    } else {
        uint8_t out[8];
        chaskey_tag(key.buf, data.buf, data.len, out);
        tag = PyBytes_FromStringAndSize((const char *)out, 8);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return tag;
}

static PyMethodDef methods[] = {
    {"chaskey", py_chaskey, METH_VARARGS, chaskey_doc},
    {"cobs_decode_pair", (PyCFunction)(void (*)(void))py_cobs_decode_pair, METH_FASTCALL, cobs_decode_pair_doc},
    {"crc16", (PyCFunction)(void (*)(void))py_crc16, METH_FASTCALL, crc16_doc},
    {"crc16_tables", (PyCFunction)(void (*)(void))py_crc16_tables, METH_FASTCALL, crc16_tables_doc},
    {"cobs_decode", py_cobs_decode, METH_O, cobs_decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastframe", "C accelerator for FrameReader (optional; see _fastframe.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__fastframe(void) {
    crc_init();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    k64 = xpow_mod_p(64);
    k128 = xpow_mod_p(128);
    k192 = xpow_mod_p(192);
    k256 = xpow_mod_p(256);
    k320 = xpow_mod_p(320);
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("ssse3");
#endif
    str_strict_map_key = PyUnicode_InternFromString("strict_map_key");
    if (str_strict_map_key == NULL)
        return NULL;
    kwnames = PyTuple_Pack(1, str_strict_map_key);
    if (kwnames == NULL)
        return NULL;
    if (PyType_Ready(&SplitterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SplitterType);
    if (PyModule_AddObject(m, "Splitter", (PyObject *)&SplitterType) < 0) {
        Py_DECREF(&SplitterType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *layout =
        Py_BuildValue("(iiiiiii)", VERSION, HEADER_LEN, TAG_LEN, MAX_BODY, MAX_WIRE, FLAGS_INCOMPAT_KNOWN, FLAG_FROM_HOST);
    if (layout == NULL || PyModule_AddObject(m, "LAYOUT", layout) < 0) {
        Py_XDECREF(layout);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
