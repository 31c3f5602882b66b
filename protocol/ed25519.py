# Ed25519 (RFC 8032) in plain Python for both interpreters: the board verifies a firmware bundle's
# signature with it (MicroPython's big ints; imported only while an update installs, so it costs no
# resident heap), the host signs with the same code. Not constant time: signing runs on the release
# machine, where no attacker times it; verification handles only public values.
try:
    from hashlib import sha512 as _sha512
except ImportError:  # the ESP32 port's hashlib has sha256 and sha1, not sha512
    _sha512 = None

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_M64 = 0xFFFFFFFFFFFFFFFF


def _inv(x):
    return pow(x, _P - 2, _P)


_D = -121665 * _inv(121666) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

# SHA-512 (FIPS 180-4) for an interpreter whose hashlib lacks it: 64-bit words are big ints here.
_K = None


def _sha512_init():
    # The 80 round constants: the first 64 bits of the fractional parts of the cube roots of the
    # first 80 primes, computed once with integer cube roots instead of a 2 KB table in the source.
    primes = []
    n = 2
    while len(primes) < 80:
        if all(n % p for p in primes):
            primes.append(n)
        n += 1
    k = []
    for p in primes:
        v = p << 192  # cube root of p * 2**192 = cbrt(p) * 2**64
        r = 1 << 67  # above the root for every p < 2**9 (MicroPython ints have no bit_length)
        while True:  # Newton's method on integers, from above
            s = (2 * r + v // (r * r)) // 3
            if s >= r:
                break
            r = s
        while r * r * r > v:
            r -= 1
        k.append(r & _M64)
    return k


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def sha512_pure(*parts):
    """SHA-512 of the parts joined, in plain Python (the board's fallback; the host checks it against
    hashlib). 128 bytes at a time through one block buffer: the message is never copied whole (in
    an install boot the board's heap has no free block the size of a firmware manifest)."""
    global _K
    if _K is None:
        _K = _sha512_init()
    h = [0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
         0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179]
    n = sum(len(p) for p in parts)
    pad = bytearray(b"\x80") + bytearray((111 - n) % 128) + (n * 8).to_bytes(16, "big")
    w = [0] * 80
    blk = bytearray(128)
    k = 0
    for p in parts + (pad,):
        i = 0
        while i < len(p):
            m = min(128 - k, len(p) - i)
            blk[k:k + m] = p[i:i + m]
            k += m
            i += m
            if k == 128:
                h = _sha512_block(h, w, blk)
                k = 0
    return b"".join(x.to_bytes(8, "big") for x in h)


def _sha512_block(h, w, blk):
    for i in range(16):
        w[i] = int.from_bytes(blk[8 * i:8 * i + 8], "big")
    for i in range(16, 80):
        a = w[i - 15]
        b = w[i - 2]
        s0 = _rotr(a, 1) ^ _rotr(a, 8) ^ (a >> 7)
        s1 = _rotr(b, 19) ^ _rotr(b, 61) ^ (b >> 6)
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & _M64
    a, b, c, d, e, f, g, hh = h
    for i in range(80):
        t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & _M64
        t2 = ((_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & _M64
        hh = g
        g = f
        f = e
        e = (d + t1) & _M64
        d = c
        c = b
        b = a
        a = (t1 + t2) & _M64
    return [(x + y) & _M64 for x, y in zip(h, (a, b, c, d, e, f, g, hh))]


def _hash_mod_l(*parts):
    digest = _sha512(b"".join(parts)).digest() if _sha512 is not None else sha512_pure(*parts)
    return int.from_bytes(digest, "little") % _L


# ---- the curve: points in extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z -------


def _add(p, q):
    # RFC 8032 5.1.4: the unified addition, also right for doubling.
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _recover_x(y, sign):
    if y >= _P:
        return None
    x2 = (y * y - 1) * _inv(_D * y * y + 1)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _compress(p):
    zi = _inv(p[2])
    x = p[0] * zi % _P
    y = p[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


_GY = 4 * _inv(5) % _P
_G = (_recover_x(_GY, 0), _GY, 1, _recover_x(_GY, 0) * _GY % _P)
_ZERO = (0, 1, 1, 0)


def _mul(s, p):
    q = _ZERO
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def verify(public, msg, signature):
    """True when ``signature`` (64 bytes) is ``public``'s (32 bytes) Ed25519 signature of ``msg``.
    [s]B = R + [h]A is checked as [s]B + [h](-A) = R with both scalars in one pass (Shamir's trick:
    253 doublings instead of 506)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = _hash_mod_l(signature[:32], public, msg)
    neg_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    both = _add(_G, neg_a)
    q = _ZERO
    for i in range(252, -1, -1):  # s, h < L < 2**253
        q = _add(q, q)
        bs = (s >> i) & 1
        bh = (h >> i) & 1
        if bs and bh:
            q = _add(q, both)
        elif bs:
            q = _add(q, _G)
        elif bh:
            q = _add(q, neg_a)
    # Projective equality with R (Z = 1).
    return (q[0] - r[0] * q[2]) % _P == 0 and (q[1] - r[1] * q[2]) % _P == 0


def _expand(secret):
    digest = _sha512(secret).digest() if _sha512 is not None else sha512_pure(secret)
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, digest[32:]


def public_key(secret):
    """The 32-byte public key of a 32-byte secret key."""
    return _compress(_mul(_expand(secret)[0], _G))


def sign(secret, msg):
    """The 64-byte Ed25519 signature of ``msg`` under the 32-byte ``secret`` (host side)."""
    a, prefix = _expand(secret)
    pub = _compress(_mul(a, _G))
    r = _hash_mod_l(prefix, msg)
    rs = _compress(_mul(r, _G))
    s = (r + _hash_mod_l(rs, pub, msg) * a) % _L
    return rs + s.to_bytes(32, "little")
