"""main.py as the mock board and `liftwatch replay` start it: the simulated board from LIFTWATCH_SIM_*,
a FIFO feed written live, the link on a pty (frames out, host commands in), clean stop at feed EOF."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import threading
import time
import tty

import pytest
from support.fwharness import (
    BOARD_HEAP,
    T_ACK,
    T_CONTROL,
    T_HELLO,
    T_STATE,
    FeedBuilder,
    host_frame,
    mpy_dir,
)
from liftwatch.protocol.framing import FrameReader

from liftwatch.upy import micropython_cmd, micropython_env

pytestmark = pytest.mark.micropython


def test_main_runs_from_the_environment_on_a_fifo_and_a_pty(tmp_path):
    feed = tmp_path / "feed"
    os.mkfifo(feed)
    master, slave = pty.openpty()
    tty.setraw(slave)
    (tmp_path / "fs").mkdir()
    env = {
        "LIFTWATCH_SIM_FEED": str(feed),
        "LIFTWATCH_SIM_UART": os.ttyname(slave),
        "LIFTWATCH_SIM_SENSOR": "lis2dw12",
        "LIFTWATCH_SIM_UID": "a1b2c3d4e5f6",
        "LIFTWATCH_SIM_RESET_CAUSE": "soft",
        "LIFTWATCH_SIM_FS": str(tmp_path / "fs"),
    }
    proc = subprocess.Popen(micropython_cmd(["-m", "main"], heapsize=BOARD_HEAP), cwd=tmp_path,
                            env=micropython_env((mpy_dir(),), env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reader = FrameReader()
    frames = []

    def read_link():
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                if proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            frames.extend(reader.feed(data))

    t = threading.Thread(target=read_link, daemon=True)
    t.start()
    fb = FeedBuilder().rest(3).door_cycle().rest(2)
    with open(feed, "wb") as f:  # written live, record by record, as the mock board does
        data = fb.bytes()
        half = len(data) // 24 * 12
        f.write(data[:half])
        f.flush()
        deadline = time.time() + 20
        while not any(fr.type == T_HELLO for fr in frames) and time.time() < deadline:
            time.sleep(0.05)
        os.write(master, host_frame(T_CONTROL, [5, 0], seq=1) + host_frame(T_CONTROL, [42, 0], seq=2))
        time.sleep(0.3)
        f.write(data[half:])
    out, _ = proc.communicate(timeout=30)
    t.join(timeout=5)
    os.close(master)
    os.close(slave)
    assert proc.returncode == 0, out.decode()
    hello = next(fr for fr in frames if fr.type == T_HELLO).payload
    assert hello[0] == "a1b2c3d4e5f6" and hello[2] == "lis2dw12" and hello[4] == "soft"
    assert any(fr.type == T_ACK and fr.payload[1] == 2 and fr.payload[3] == "unknown command" for fr in frames)
    assert [fr.payload[2] for fr in frames if fr.type == T_STATE and fr.payload[2]] == [9, 1]  # door+presence, door
    assert (tmp_path / "fs" / "lw_counters.bin").exists()


IN_PROCESS = r"""
import struct, agent, hal_sim
def car():
    # a MicroPython generator as the feed: 10 s at rest, then the door opens and closes
    for i in range(20):
        yield struct.pack('<IhhhBB', 500000, 0, 0, 1000, 7, 0)
    for inputs in (14, 7):
        yield struct.pack('<IhhhBB', 1000000, 0, 0, 1000, inputs, 0) * 2
cap = bytearray(8192)
b = hal_sim.SimBoard(car(), uart=cap, fs_root=".")
a = agent.run(b)
open("cap.bin", "wb").write(cap[:b.uart_len])
print("DONE", b.t_us // 1000, b.uart_len, a.inputs.door_cycles)
"""


def test_simboard_in_process_with_a_generator_feed_and_a_bytearray_uart(tmp_path):
    from support.fwharness import BOARD_HEAP, run_script

    # The 8 KiB capture buffer stands for the UART (silicon on a board): it comes on top of the
    # simulated hardware's allowance, so the firmware keeps the 96 KiB it has on a board.
    proc = run_script(tmp_path, IN_PROCESS, heapsize=f"{int(BOARD_HEAP[:-1]) + 8}k")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    t_ms, _n, doors = out.split("DONE")[1].split()
    assert int(t_ms) == 14000 and int(doors) == 1
    frames = FrameReader().feed((tmp_path / "cap.bin").read_bytes())
    assert sum(len(f.payload) > 0 for f in frames) == len(frames) > 10
    assert [f.payload[2] for f in frames if f.type == T_STATE and f.payload[2]] == [9, 9]


def test_deployed_modules_name_their_source_without_the_host_path(tmp_path) -> None:
    """Every .mpy `liftwatch flash` and `liftwatch replay` deploy embeds the bare file name: a host path
    would cost qstr space on the board per module, more the longer the checkout path (that once
    pushed the firmware into MemoryError at boot on CI's long path)."""
    from liftwatch.edge_daemon.flash import compile_firmware, firmware_sources
    from liftwatch.upy import FIRMWARE_DIR

    deployed = compile_firmware(firmware_sources(simulated=True), tmp_path, "x64")
    mpys = [p for p in deployed if p.suffix == ".mpy"]
    assert len(mpys) >= 10
    host_dir = str(FIRMWARE_DIR.resolve()).encode()
    for p in mpys:
        data = p.read_bytes()
        assert host_dir not in data and b"/firmware/" not in data, p.name
        assert p.with_suffix(".py").name.encode() in data, p.name
