"""protocol/ed25519.py: RFC 8032 vectors on CPython and under the board's MicroPython (96 KiB heap),
its pure SHA-512 against hashlib, and the forgeries a bundle signature must refuse."""

from __future__ import annotations

import hashlib
import json

import pytest

from liftwatch.protocol import ed25519
from liftwatch.upy import PROTOCOL_DIR, run_micropython

VECTORS = json.loads((PROTOCOL_DIR / "vectors" / "ed25519.json").read_text())["vectors"]


def _v(v: dict) -> tuple[bytes, bytes, bytes, bytes]:
    return tuple(bytes.fromhex(v[k]) for k in ("secret", "public", "message", "signature"))  # type: ignore[return-value]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_rfc8032_vectors_sign_and_verify(v: dict) -> None:
    secret, public, msg, sig = _v(v)
    assert ed25519.public_key(secret) == public
    assert ed25519.sign(secret, msg) == sig
    assert ed25519.verify(public, msg, sig)


@pytest.mark.parametrize("n", [0, 1, 111, 112, 127, 128, 129, 300, 1000])
def test_pure_sha512_is_sha512(n: int) -> None:
    data = bytes((7 * i + n) & 0xFF for i in range(n))
    assert ed25519.sha512_pure(data) == hashlib.sha512(data).digest()
    for cut in {0, n // 3, n // 2, n}:  # in parts, as the signature check hashes R, A and the message
        assert ed25519.sha512_pure(data[:cut], data[cut:], b"") == hashlib.sha512(data).digest()


def test_forgeries_are_refused() -> None:
    secret, public, msg, sig = _v(VECTORS[1])
    assert not ed25519.verify(public, msg + b"x", sig)  # message changed
    assert not ed25519.verify(public, msg, sig[:3] + bytes([sig[3] ^ 0x10]) + sig[4:])  # R changed
    assert not ed25519.verify(public, msg, sig[:40] + bytes([sig[40] ^ 1]) + sig[41:])  # S changed
    s_plus_l = int.from_bytes(sig[32:], "little") + ed25519._L
    assert not ed25519.verify(public, msg, sig[:32] + s_plus_l.to_bytes(32, "little"))  # non-canonical S
    assert not ed25519.verify((2).to_bytes(32, "little"), msg, sig)  # key off the curve
    assert not ed25519.verify(public, msg, bytes(64))  # unsigned
    assert not ed25519.verify(public, msg, sig[:63])  # truncated
    other = ed25519.public_key(hashlib.sha256(b"attacker").digest())
    assert not ed25519.verify(other, msg, sig)  # another key


def test_vectors_verify_under_micropython_at_96k(tmp_path) -> None:  # noqa: ANN001
    # What a board runs: the same file, MicroPython big ints, no hashlib.sha512 (the pure one).
    script = tmp_path / "check.py"
    lines = ["import ed25519, binascii", "u = binascii.unhexlify", "ok = []"]
    for v in VECTORS:
        lines.append(f"ok.append(ed25519.verify(u('{v['public']}'), u('{v['message']}'), u('{v['signature']}')))")
        bad = v["signature"][:-2] + ("00" if v["signature"][-2:] != "00" else "01")
        lines.append(f"ok.append(not ed25519.verify(u('{v['public']}'), u('{v['message']}'), u('{bad}')))")
    lines.append(f"ok.append(ed25519.sign(u('{VECTORS[2]['secret']}'), u('{VECTORS[2]['message']}')) == "
                 f"u('{VECTORS[2]['signature']}'))")
    lines.append("print('RESULT', ok)")
    script.write_text("\n".join(lines) + "\n")
    r = run_micropython([str(script)], paths=[PROTOCOL_DIR])
    assert r.returncode == 0, r.stderr.decode()
    assert f"RESULT {[True] * (2 * len(VECTORS) + 1)}" in r.stdout.decode(), r.stdout
