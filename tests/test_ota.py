"""edge_daemon/ota.py (host half of firmware updates): release keys, bundle build, and the checks a
bundle must pass; each attack on a bundle is refused with its reason."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from liftwatch.cli import main as cli_main
from liftwatch.edge_daemon import ota
from liftwatch.protocol import ed25519

SECRET = hashlib.sha256(b"liftwatch test release key").digest()
PUBLIC = ed25519.public_key(SECRET)


def _bundle(version: str = "1.1.0", secret: bytes | None = SECRET) -> bytes:
    return ota.pack(version, 0x0B06, "x64", [("a.mpy", b"abc"), ("b.mpy", b"defg")], secret)


def test_keygen_writes_a_private_secret_and_never_overwrites(tmp_path) -> None:  # noqa: ANN001
    key = tmp_path / "release.key"
    public = ota.keygen(key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert ed25519.public_key(ota.read_key(key)) == public == ota.read_key(key.with_name("release.key.pub"))
    before = key.read_text()
    with pytest.raises(ota.OtaError, match="never overwritten"):
        ota.keygen(key)
    assert key.read_text() == before


def test_signed_bundle_parses_with_its_key() -> None:
    b = ota.parse(_bundle(), PUBLIC)
    assert (b.version, b.mpy, b.arch) == ("1.1.0", 0x0B06, "x64")
    assert b.files == (("a.mpy", 3, hashlib.sha256(b"abc").hexdigest()), ("b.mpy", 4, hashlib.sha256(b"defg").hexdigest()))


@pytest.mark.parametrize("attack, why", [
    ("unsigned", "bad signature"),
    ("wrong key", "bad signature"),
    ("manifest changed after signing", "bad signature"),
    ("truncated", "size does not match"),
    ("file bytes appended", "size does not match"),
    ("not a bundle", "not a liftwatch bundle"),
])
def test_attacks_on_a_bundle_are_refused(attack: str, why: str) -> None:
    raw = _bundle()
    forged = {
        "unsigned": _bundle(secret=None),
        "wrong key": _bundle(secret=hashlib.sha256(b"attacker").digest()),
        "manifest changed after signing": raw.replace(b'"1.1.0"', b'"9.9.9"'),
        "truncated": raw[:-1],
        "file bytes appended": raw + b"x",
        "not a bundle": b"PK\x03\x04" + raw[4:],
    }[attack]
    with pytest.raises(ota.OtaError, match=why):
        ota.parse(forged, PUBLIC)


def test_build_compiles_the_firmware_and_signs_it() -> None:
    raw = ota.build(SECRET, "xtensawin")
    b = ota.parse(raw, PUBLIC)
    names = [f[0] for f in b.files]
    assert "agent.mpy" in names and "lwproto.mpy" in names
    assert "main.py" not in names and not any(n.startswith(("hal_sim", "fake")) for n in names)  # boot loader stays
    assert b.version == ota.firmware_version() and b.arch == "xtensawin"
    assert (b.mpy >> 10) & 0xF == 10  # xtensawin's native arch code


def test_cli_build_fails_in_one_line_and_keeps_an_existing_bundle(tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "fw.lwota"
    out.write_bytes(b"previous")
    (tmp_path / "bad.key").write_text("zz")
    assert cli_main(["ota", "build", "--key", str(tmp_path / "bad.key"), "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out.read_bytes() == b"previous"
