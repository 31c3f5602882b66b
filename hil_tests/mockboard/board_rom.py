# The mock board's "ROM": runs under the MicroPython unix interpreter (-X heapsize=96k) as the child
# of liftwatch.hil.mockboard.board and plays the part of the C firmware of an ESP32 running official
# MicroPython: it mounts the board's flash (LittleFS v2 on an image file) at "/", runs boot.py and
# main.py, and then serves the friendly REPL, the raw REPL and raw-paste mode on stdin/stdout exactly
# as mpremote's transport_serial.py expects them (byte for byte: prompts, "OK", the two 0x04
# terminators, raw-paste flow control as shared/runtime/pyexec.c does it: a window of half the stdin
# buffer announced with one extra 0x01 credit, 0x01 for every window read, 0x04 on the end).
#
# What the parent does for us: it turns 0x03 on the console into SIGINT, which MicroPython raises as
# KeyboardInterrupt wherever we are (user code, or blocked reading stdin, where we treat it as the
# 0x03 character); it restarts this process for a soft reboot (a fresh heap and module table, as a
# real soft reset gives), for machine.reset() and for power cuts. We tell it what we are doing over the
# control FIFO, one byte per message (see _CTL_*).
import builtins
import gc
import io
import os
import sys
import time
import vfs
from micropython import const

_BLOCK_SIZE = const(4096)  # ESP32 flash erase sector; the ESP32 port uses it as the LittleFS block
# mp_reader_new_stdin: half of MICROPY_REPL_STDIN_BUFFER_MAX (256, the ESP32 port keeps the default),
# so the host may have two windows in flight and the board's stdin buffer still never overflows.
_RAW_PASTE_WINDOW = const(128)
_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)

# Control bytes to the parent.
_CTL_REPL = b"R"  # waiting for REPL input: the firmware is not running, so the watchdog is off
_CTL_RUN = b"M"  # running boot.py/main.py or user code
_CTL_SOFT_FRIENDLY = b"S"  # soft reboot, then run boot.py and main.py
_CTL_SOFT_RAW = b"s"  # soft reboot from the raw REPL: boot.py only, stay in the raw REPL
_CTL_HARD = b"H"  # machine.reset(): kill and restart me, as the reset pin would
_CTL_WDT = b"W"  # the firmware's simulated watchdog expired: restart me with reset cause wdt
_CTL_WDT_PARK = b"P"  # the firmware gave the chip's watchdog its long REPL timeout (Ctrl-C)
_CTL_READY = b"B"  # booted far enough to take a KeyboardInterrupt: a Ctrl-C held back may come now
_CTL_INTR_ON = b"K"  # 0x03 on the console means SIGINT (micropython.kbd_intr(3), the default)
_CTL_INTR_OFF = b"k"  # 0x03 is data (kbd_intr(-1): mpremote mount streams binary on the console)

_env = os.getenv
# The parent starts us in the board's own directory: the control and feed FIFOs, the UART link and
# the flash image ("flash.img") are all there, named relative to it, so no host path (whose length
# would vary with the checkout and TMPDIR) takes space on the board's heap.
_SIM_DIR = "."
_FS_IMAGE = "flash.img"
_REPL_MODE = _env("LIFTWATCH_MOCK_REPL") or "friendly"
_HW_CAUSE = _env("LIFTWATCH_MOCK_HW_CAUSE") or "power_on"
_UID = _env("LIFTWATCH_SIM_UID") or "0badc0ffee00"

_stdin_readinto = sys.stdin.buffer.readinto
_stdout_write = sys.stdout.buffer.write
_ctl = open(_SIM_DIR + "/ctl", "wb")


def _tell(msg):
    _ctl.write(msg)


class _Cooked(io.IOBase):
    # What print() and tracebacks go through: the ESP32 port turns "\n" into "\r\n" on the console
    # (mp_hal_stdout_tx_strn_cooked); sys.stdout.buffer.write stays raw, as on the board.
    def write(self, s):
        if isinstance(s, str):
            s = s.encode()
        _stdout_write(s.replace(b"\n", b"\r\n"))
        return len(s)


_cooked = _Cooked()
_builtin_print = builtins.print


def _print(*args, **kw):
    if "file" not in kw:
        kw["file"] = _cooked
    _builtin_print(*args, **kw)


builtins.print = _print


def _out(b):
    _stdout_write(b)


# ---- flash: LittleFS v2 on a block device backed by the image file ----------------------------


class FlashImage:
    # The block protocol of vfs (readblocks/writeblocks/ioctl with erase), over a host file. Each
    # writeblocks is one write() syscall, so a power cut (SIGKILL) lands between flash programs.
    def __init__(self, f, blocks):
        self.f = f
        self.blocks = blocks

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * _BLOCK_SIZE + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        self.f.seek(n * _BLOCK_SIZE + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return _BLOCK_SIZE
        if op == 6:  # erase: flash erases to 0xff
            f = self.f
            f.seek(arg * _BLOCK_SIZE)
            ff = b"\xff" * 256
            for _ in range(_BLOCK_SIZE // 256):
                f.write(ff)
            return 0
        return 0


class _SimDir(vfs.VfsPosix):
    def statvfs(self, path):
        # the host's disk is no board storage: a size of 0 keeps /sim out of `mpremote df`, whose
        # 9-digit columns ran the host's hundreds of GB together into one number
        return (0,) * 10


def _mount_flash():
    f = open(_FS_IMAGE, "r+b")
    blocks = f.seek(0, 2) // _BLOCK_SIZE
    bdev = FlashImage(f, blocks)
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        # What the ESP32 port's _boot.py does with blank or corrupt flash: format it and go on.
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    sim = _SimDir(_SIM_DIR)  # feed FIFO and UART pty of the simulated HAL, at /sim
    vfs.umount("/")
    vfs.mount(fs, "/")
    vfs.mount(sim, "/sim")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


# ---- machine: the parts of the ESP32 machine module that mean something on a mock board --------


class _Machine:
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    _CAUSES = {"power_on": 1, "brownout": 1, "hard": 2, "wdt": 3, "soft": 5}

    def reset(self):
        _tell(_CTL_HARD)
        while True:  # the parent kills us now, as the EN pin would
            time.sleep_ms(100)

    def soft_reset(self):
        raise SystemExit

    def reset_cause(self):
        return self._CAUSES.get(_HW_CAUSE, 2)

    def unique_id(self):
        import binascii

        return binascii.unhexlify(_UID)

    def freq(self, hz=None):
        return 240000000

    def idle(self):
        time.sleep_ms(1)

    def disable_irq(self):
        return 0

    def enable_irq(self, state):  # required, as on the port (scripts/check-esp32-api)
        pass


sys.modules["machine"] = _Machine()


class _MockBoardHooks:
    # For the simulated HAL only (nothing like it exists on an ESP32): a reset with its cause, so a
    # watchdog that hal_sim runs in board time restarts the board as "wdt", not as machine.reset().
    def reset(self, cause):
        _tell(_CTL_WDT if cause == "wdt" else _CTL_HARD)
        while True:
            time.sleep_ms(100)

    def wdt_park(self):
        _tell(_CTL_WDT_PARK)


sys.modules["_mockboard"] = _MockBoardHooks()


class _MicroPython:
    # micropython, with kbd_intr done by the parent: the unix port's kbd_intr(-1) would leave SIGINT
    # at its default action and the next 0x03 would kill the board.
    def __getattr__(self, name):
        return getattr(_micropython, name)

    def alloc_emergency_exception_buf(self, size):
        pass  # the ESP32 port has it; the unix port does not need one

    def kbd_intr(self, c):
        _tell(_CTL_INTR_ON if c == 3 else _CTL_INTR_OFF)


import micropython as _micropython

sys.modules["micropython"] = _MicroPython()

# ---- console input ----------------------------------------------------------------------------

_one = bytearray(1)
_pending = bytearray()


def _await_input():
    # The REPLs read 0x03 as a character, as the board's do: its interrupt character is armed only
    # while code runs, so a Ctrl-C the host sends mid raw-paste ends the paste instead of landing
    # as an interrupt between two of our statements.
    _tell(_CTL_REPL)
    _tell(_CTL_INTR_OFF)


def _getc():
    # One console byte. SIGINT (the parent's translation of 0x03) while we wait is the 0x03 itself.
    if _pending:
        c = _pending[0]
        _pending[:] = _pending[1:]
        return c
    try:
        n = _stdin_readinto(_one)
    except KeyboardInterrupt:
        return _CTRL_C
    if not n:
        sys.exit(0)  # the parent closed the console: power off
    return _one[0]


# ---- running code -----------------------------------------------------------------------------

_globals = {"__name__": "__main__"}


class _SoftReboot(Exception):
    pass


def _execute(code_src, filename, mode, eof_markers):
    # Compile and run one unit, printing what pyexec's parse_compile_execute prints. Returns normally;
    # a SystemExit becomes a soft reboot as on the board.
    exc = None
    _tell(_CTL_RUN)
    _tell(_CTL_INTR_ON)  # pyexec arms Ctrl-C for the execution only (mp_hal_set_interrupt_char)
    try:
        if mode == "file":
            # Streamed from the flash by the lexer, as pyexec_file does: the source never sits
            # whole on the heap the firmware is about to use.
            execfile(filename, _globals)  # noqa: F821 (a MicroPython builtin)
        elif mode == "single":
            try:
                code = compile(code_src, filename, "eval")
            except SyntaxError:
                code = None
            if code is not None:
                value = eval(code, _globals)
                if value is not None:
                    _globals["_"] = value
                    _print(repr(value))
            else:
                exec(compile(code_src, filename, "exec"), _globals)
        else:
            exec(compile(code_src, filename, "exec"), _globals)
    except SystemExit:
        exc = SystemExit
    except BaseException as e:  # KeyboardInterrupt included: the board prints it too
        exc = e
    _tell(_CTL_INTR_OFF)  # at once, as pyexec does: a Ctrl-C after the code ended is the REPL's
    code_src = None
    if eof_markers:
        _out(b"\x04")
    if exc is SystemExit:
        if eof_markers:
            _out(b"\x04")
        raise _SoftReboot
    if exc is not None:
        _print_exception(exc)
    if eof_markers:
        _out(b"\x04")


def _print_exception(exc):
    # As the board prints it: our own frames (exec/execfile here in the ROM) are the board's C code,
    # which a real traceback never shows.
    try:
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        text = buf.getvalue()
    except MemoryError:
        sys.print_exception(exc, _cooked)
        return
    _cooked.write("".join(line for line in text.splitlines(True) if '"%s"' % __file__ not in line))


def _run_file(name):
    # pyexec_file_if_exists: boot.py / main.py from the flash, in the REPL's globals.
    try:
        os.stat(name)
    except OSError:
        return
    gc.collect()
    _execute(None, name, "file", False)


# ---- REPLs ------------------------------------------------------------------------------------


def _banner():
    ver = sys.version.split("; ", 1)[1] if "; " in sys.version else sys.version
    print(ver + "; liftwatch mock board (unix sim) with ESP32")
    print('Type "help()" for more information.')


def _needs_more(src):
    # mp_repl_continue_with_input, simplified: an open block, bracket or triple quote continues.
    last = src.rstrip().split("\n")[-1]
    if last.endswith(":") or last.endswith("\\") or last.startswith("@"):
        return True
    depth = 0
    for ch in src:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    if depth > 0 or src.count('"""') % 2 or src.count("'''") % 2:
        return True
    return "\n" in src and last.strip() != ""


def _readline(prompt):
    # Line editing as the board's readline: echo, backspace, Ctrl-C/D/A/B/E passed up.
    _out(prompt)
    line = bytearray()
    while True:
        c = _getc()
        if c == 13:  # Enter
            _out(b"\r\n")
            return line.decode()
        if c in (_CTRL_A, _CTRL_B, _CTRL_C, _CTRL_E) or (c == _CTRL_D and not line):
            return c
        if c in (8, 127):
            if line:
                line[:] = line[:-1]
                _out(b"\x08 \x08")
        elif c == 27:  # escape sequence (arrows): swallowed
            _getc()
            _getc()
        elif c == 9:  # tab: insert spaces, no completion
            line += b"    "
            _out(b"    ")
        elif c >= 32:
            line.append(c)
            _out(bytes((c,)))


def _paste_mode():
    _out(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    src = bytearray()
    while True:
        c = _getc()
        if c == _CTRL_C:
            _out(b"\r\n")
            return
        if c == _CTRL_D:
            _out(b"\r\n")
            _execute(src.decode(), "<stdin>", "exec", False)
            return
        src.append(c)
        if c == 13:
            _out(b"\r\n=== ")
            src[-1] = 10
        else:
            _out(bytes((c,)))


def friendly_repl():
    # Returns "raw" to switch to the raw REPL; raises _SoftReboot on Ctrl-D.
    _banner()
    while True:
        _await_input()
        got = _readline(b">>> ")
        if got == _CTRL_A:
            _out(b"\r\n")
            return "raw"
        if got == _CTRL_B:
            _out(b"\r\n")
            _banner()
            continue
        if got == _CTRL_C:
            _out(b"\r\n")
            continue
        if got == _CTRL_D:
            _out(b"\r\n")
            raise _SoftReboot
        if got == _CTRL_E:
            _paste_mode()
            continue
        src = got
        while _needs_more(src):
            more = _readline(b"... ")
            if more == _CTRL_C:
                _out(b"\r\n")
                src = None
                break
            if not isinstance(more, str):
                break
            if not more.strip():
                break
            src += "\n" + more
        if src and src.strip():
            _execute(src, "<stdin>", "single" if "\n" not in src else "exec", False)
        gc.collect()


def _raw_paste():
    # do_reader_stdin and mp_reader_stdin_readbyte: the window and a second window's credit, then
    # 0x01 for every window consumed; 0x04 ends, 0x03 aborts. Byte by byte: a MicroPython stream
    # readinto() blocks until the whole buffer is full. (The board compiles while it reads and, on a
    # syntax error, says 0x04 early and drains to the host's 0x04; the host sees the same bytes.)
    _out(b"R\x01")
    _out(bytes((_RAW_PASTE_WINDOW & 0xFF, _RAW_PASTE_WINDOW >> 8, 1)))
    src = bytearray()
    remain = _RAW_PASTE_WINDOW
    while True:
        c = _getc()
        if c == _CTRL_C or c == _CTRL_D:
            break
        src.append(c)
        remain -= 1
        if remain == 0:
            remain = _RAW_PASTE_WINDOW
            _out(b"\x01")
    _out(b"\x04")  # end of data acknowledged
    if c == _CTRL_C:
        # the board raises its KeyboardInterrupt with no traceback: only the exception line shows
        _out(b"\x04")
        print("KeyboardInterrupt: ")
        _out(b"\x04")
        return
    code = src.decode()
    src = None
    _execute(code, "<stdin>", "exec", True)


def raw_repl():
    # Returns "friendly" on Ctrl-B; raises _SoftReboot on Ctrl-D with an empty line.
    _out(b"raw REPL; CTRL-B to exit\r\n")
    line = bytearray()
    _out(b">")
    _await_input()
    while True:
        c = _getc()
        if c == _CTRL_A:
            if len(line) == 2 and line[0] == _CTRL_E:
                if line[1] != ord("A"):
                    _out(b"R\x00")
                else:
                    _raw_paste()
                line = bytearray()
                gc.collect()
                _out(b">")
                _await_input()
                continue
            line = bytearray()
            _out(b"raw REPL; CTRL-B to exit\r\n>")
        elif c == _CTRL_B:
            _out(b"\r\n")
            return "friendly"
        elif c == _CTRL_C:
            line = bytearray()
        elif c == _CTRL_D:
            _out(b"OK")
            if not line:
                _out(b"\r\n")
                raise _SoftReboot
            src = line.decode()
            line = bytearray()
            _execute(src, "<stdin>", "exec", True)
            src = None
            gc.collect()
            _out(b">")
            _await_input()
        else:
            line.append(c)


def main():
    _mount_flash()
    mode = _REPL_MODE
    try:
        try:
            # 0x03 is a character until code runs (see _await_input): no interrupt can land in the
            # ROM's own statements, its gc.collect() included (an interrupt raised in a finaliser
            # there killed the process: "memory allocation failed, heap is locked")
            _tell(_CTL_INTR_OFF)
            _tell(_CTL_READY)
            _run_file("boot.py")
            if mode == "friendly":
                _run_file("main.py")
        except KeyboardInterrupt:
            pass  # a 0x03 between our own statements: the board would have read it as a character
        while True:
            try:
                mode = raw_repl() if mode == "raw" else friendly_repl()
            except KeyboardInterrupt:
                _out(b"\r\n")
    except _SoftReboot:
        pass
    print("MPY: soft reboot")
    _tell(_CTL_SOFT_RAW if mode == "raw" else _CTL_SOFT_FRIENDLY)
    _ctl.close()


main()
