"""mpremote's own test suite (tools/mpremote/tests in MicroPython, for the installed mpremote), its
commands in sequence against ONE mock board, with what an ESP32 answers; and the raw-paste flow
control byte for byte (shared/runtime/pyexec.c), with clients that give up half way.

One board for the whole sequence on purpose: a REPL that falls out of step with a client stays out
of step for every later command (issue 17: `could not exec command (response: b'R\\x01')`, then
timeouts), which a fresh board per command would hide.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from liftwatch.upy import run_micropython

from .conftest import mpremote

pytestmark = [pytest.mark.hil, pytest.mark.mock_only]

# tools/mpremote/tests/ramdisk.py: a FAT RAM disk the client mounts (its defaults overridable by exec).
RAMDISK = """\
import os

class RAMBlockDev:
    def __init__(self, block_size, num_blocks):
        self.block_size = block_size
        self.data = bytearray(block_size * num_blocks)

    def readblocks(self, block_num, buf):
        for i in range(len(buf)):
            buf[i] = self.data[block_num * self.block_size + i]

    def writeblocks(self, block_num, buf):
        for i in range(len(buf)):
            self.data[block_num * self.block_size + i] = buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size

try:
    mount_path
except NameError:
    mount_path = "/ramdisk"
try:
    do_chdir
except NameError:
    do_chdir = True
bdev = RAMBlockDev(512, 50)
os.VfsFat.mkfs(bdev)
os.mount(bdev, mount_path)
if do_chdir:
    os.chdir(mount_path)
"""
PACKAGE = {
    "package/__init__.py": "from .x import x\nfrom .subpackage import y\n",
    "package/x.py": 'def x():\n  print("x")\n',
    "package/subpackage/__init__.py": "from .y import y\n",
    "package/subpackage/y.py": 'def y():\n  print("y")\n',
}
UNICODE_TEXT = "Hello 世界\nEmoji: 🎉🐍\nCafé résumé naïve\n"
# the window mp_reader_new_stdin announces: half of the ESP32's 256-byte stdin buffer
WINDOW = 128


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def _lines(out: str) -> list[str]:
    return [line.rstrip() for line in out.replace("\r\n", "\n").strip("\n").split("\n")]


def _read_exactly(port: serial.Serial, n: int, timeout: float = 10.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n and time.monotonic() < deadline:
        buf += port.read(n - len(buf))
    return buf


def _read_until(port: serial.Serial, marker: bytes, timeout: float = 10.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(marker) and time.monotonic() < deadline:
        buf += port.read(1)
    assert buf.endswith(marker), f"no {marker!r} in {buf[-300:]!r}"
    return buf


def _raw_repl(port: serial.Serial) -> None:
    """What mpremote's enter_raw_repl does, without the soft reset."""
    port.write(b"\r\x03")
    time.sleep(0.2)
    port.reset_input_buffer()
    port.write(b"\r\x01")
    _read_until(port, b"raw REPL; CTRL-B to exit\r\n>")


def test_raw_paste_flow_control_is_the_ports_byte_for_byte(mock_board_factory) -> None:
    board = mock_board_factory()
    source = b"x = " + b"1" * 300 + b"\nprint(len(str(x)))\n"  # two full windows and some
    with serial.Serial(board.ports.console, 115200, timeout=0.2) as s:
        _raw_repl(s)
        s.write(b"\x05A\x01")
        assert _read_exactly(s, 5) == b"R\x01" + bytes((WINDOW, 0, 1))  # window, plus a second's credit
        s.write(source[: 2 * WINDOW])  # both credits used: the board acknowledges each window read
        assert _read_exactly(s, 2) == b"\x01\x01"
        s.write(source[2 * WINDOW :] + b"\x04")
        got = _read_until(s, b"\x04>")
        assert got == b"\x04300\r\n\x04\x04>"  # end acknowledged, output, EOF, no error, EOF, prompt
        # unsupported raw-REPL command: refused, and the raw REPL carries on
        s.write(b"\x05B\x01")
        assert _read_exactly(s, 3) == b"R\x00>"
        # Ctrl-C in the middle of a paste: the board's KeyboardInterrupt has no traceback
        s.write(b"\x05A\x01")
        assert _read_exactly(s, 5) == b"R\x01" + bytes((WINDOW, 0, 1))
        s.write(b"print('never')")
        s.write(b"\x03")
        assert _read_until(s, b"\x04>") == b"\x04\x04KeyboardInterrupt: \r\n\x04>"


def _give_up_mid_paste(console: str) -> None:
    """A client that enters raw-paste mode, sends half a window of a command and disappears."""
    with serial.Serial(console, 115200, timeout=0.2) as s:
        _raw_repl(s)
        s.write(b"\x05A\x01")
        assert _read_exactly(s, 5)[:2] == b"R\x01"
        s.write(b"print('half a comm")


def _give_up_mid_output(console: str) -> None:
    """A client that starts a command printing for a while and leaves without reading it."""
    r = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", console, "resume", "exec", "--no-follow",
         "import time\nfor i in range(40):\n    print('line', i, 'x' * 60)\n    time.sleep(0.01)"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert r.returncode == 0, r.stderr


def test_mpremote_suite_in_sequence_on_one_board(mock_board_factory, tmp_path: Path) -> None:
    console = mock_board_factory().ports.console
    host = tmp_path / "host"
    host.mkdir()
    (host / "ramdisk.py").write_text(RAMDISK)
    _write_tree(host, PACKAGE)
    (host / "a.py").write_text('print("Hello")\nprint("World")\n')

    def mp(*args: str, check: bool = True) -> list[str]:
        return _lines(mpremote(console, *args, check=check))

    # test_filesystem: a RAM disk the client mounts, files on it, a copy from the board to itself
    mp("run", str(host / "ramdisk.py"))
    assert mp("resume", "ls") == ["ls :"]
    mp("resume", "touch", "a.py")
    mp("resume", "cp", str(host / "a.py"), ":")
    mp("resume", "cp", str(host / "a.py"), ":c.py")
    mp("resume", "cp", ":a.py", ":d.py")  # where the mock's REPL used to fall out of step
    assert [line.split() for line in mp("resume", "ls")] == [["ls", ":"], ["30", "a.py"], ["30", "c.py"], ["30", "d.py"]]
    assert mp("resume", "exec", "import a; import c; import d") == ["Hello", "World"] * 3
    digest = hashlib.sha256((host / "a.py").read_bytes()).hexdigest()
    assert mp("resume", "sha256sum", "a.py") == ["sha256sum :a.py", digest]

    # a client that gives up half way through a raw paste, then one that leaves output unread:
    # the next command, without a soft reset, finds the board answering and its state intact
    _give_up_mid_paste(console)
    assert mp("resume", "eval", "len(open('d.py').read())") == ["30"]
    _give_up_mid_output(console)
    assert mp("resume", "eval", "1+2") == ["3"]

    # recursive cp from the host and on the board, tree, rm -r down to the mountpoint
    mp("resume", "rm", ":a.py", ":c.py", ":d.py")
    mp("resume", "cp", "-r", str(host / "package"), ":")
    assert mp("resume", "exec", "import package; package.x(); package.y()") == ["x", "y"]
    mp("resume", "cp", "-r", ":package", ":package3")
    assert mp("resume", "tree", ":package3") == [
        "tree :package3", ":package3", "├── __init__.py", "├── subpackage", "│   ├── __init__.py",
        "│   └── y.py", "└── x.py",
    ]
    assert mp("resume", "tree", "-s", ":package")[2:] == [
        "├── [       43]  __init__.py", "├── subpackage", "│   ├── [       17]  __init__.py",
        "│   └── [       22]  y.py", "└── [       22]  x.py",
    ]
    assert mp("resume", "rm", "-r", "-v", ":package3") == [
        "rm :package3", "removed: 'package3/subpackage/__init__.py'", "removed: 'package3/subpackage/y.py'",
        "removed directory: 'package3/subpackage'", "removed: 'package3/__init__.py'", "removed: 'package3/x.py'",
        "removed directory: 'package3'",
    ]
    mp("resume", "exec", "import os; os.chdir('/')")
    removed = mp("resume", "rm", "-r", "-v", ":/ramdisk")
    assert removed[-1] == "skipped: '/ramdisk' (vfs mountpoint)" and len(removed) == 8
    assert mp("resume", "ls", ":/ramdisk") == ["ls :/ramdisk"]

    # test_resume: state carries over with resume only; a traceback shows the user's frames only
    mp("exec", "a = 'resume'")
    assert mp("resume", "eval", "a") == ["resume"]
    assert mp("exec", "a = 'soft-reset'", "eval", "a", "soft-reset", "eval", "1+1", "eval", "a", check=False) == [
        "soft-reset", "2", "Traceback (most recent call last):", '  File "<stdin>", line 1, in <module>',
        "NameError: name 'a' isn't defined",
    ]

    # test_mount: the host directory at /remote, imported from, written to, read back
    mount = tmp_path / "mount"
    _write_tree(mount, {k.replace("package/", "mount_package/", 1): v for k, v in PACKAGE.items()})
    assert mp("mount", str(mount), "exec", "import mount_package; mount_package.x(); mount_package.y()")[-2:] == [
        "x", "y"]
    mp("mount", str(mount), "exec", "open('test.txt', 'w').write('hello world\\n')")
    assert (mount / "test.txt").read_text() == "hello world\n"
    assert mp("mount", str(mount), "exec", "print(open('test.txt').readlines())")[-1] == "['hello world\\n']"

    # test_unicode: UTF-8 through exec, file names, contents and eval
    mp("run", str(host / "ramdisk.py"))
    assert mp("resume", "exec", "print('Hello 世界'); print('Emoji: 🎉🐍')") == ["Hello 世界", "Emoji: 🎉🐍"]
    mp("resume", "touch", ":quote'test.txt")
    assert mp("resume", "ls", ":")[1].split() == ["0", "quote'test.txt"]
    (host / "unicode_content.txt").write_text(UNICODE_TEXT, encoding="utf-8")
    mp("resume", "cp", str(host / "unicode_content.txt"), ":")
    assert mp("resume", "cat", ":unicode_content.txt") == _lines(UNICODE_TEXT)
    assert mp("resume", "sha256sum", ":unicode_content.txt")[-1] == hashlib.sha256(UNICODE_TEXT.encode()).hexdigest()
    assert mp("resume", "eval", "'Hello 世界'") == ["Hello 世界"]
    # repr() of non-ASCII text is the interpreter's own (py/objstrunicode.c); the mock adds nothing
    plain = run_micropython(["-c", "print(repr('日本語'))"], paths=()).stdout.decode().strip()
    assert mp("resume", "eval", "repr('日本語')") == [plain]

    # test_mip_local_install: a package from a local index onto the RAM disk, then imported
    mip = tmp_path / "mip"
    _write_tree(mip, {"mip_example/hello.py": "def hello(): print('Hello, world!')\n",
                      "mip_example/__init__.py": "from .hello import hello\n"})
    (mip / "package.json").write_text(
        '{"urls": [["mip_example/__init__.py", "mip_example/__init__.py"], '
        '["mip_example/hello.py", "mip_example/hello.py"]], "version": "0.2"}'
    )
    mp("exec", "mount_path='/__ramdisk'; do_chdir=False", "run", str(host / "ramdisk.py"))
    mp("resume", "mkdir", "/__ramdisk/lib")
    assert mp("resume", "mip", "install", "--target=/__ramdisk/lib", str(mip / "package.json")) == [
        f"Install {mip / 'package.json'}", "Installing: /__ramdisk/lib/mip_example/__init__.py",
        "Installing: /__ramdisk/lib/mip_example/hello.py", "Done",
    ]
    mp("resume", "exec", "import sys; sys.path.append('/__ramdisk/lib')")
    assert mp("resume", "exec", "import mip_example; mip_example.hello()") == ["Hello, world!"]
