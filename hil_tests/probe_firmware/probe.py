# Reads the sim feed, keeps the virtual clock, reports on the UART; a line per report:
#   "T <board_t_us> <records> <boots> <reset_cause> <inputs> <ax_mg>\n"
# Commands on the UART: "hang\n" stops consuming the feed (the watchdog must reset the board).
import os
import select
import struct

_REPORT_EVERY = 50


def run():
    boots = 0
    try:
        with open("/probe_boots.txt") as f:
            boots = int(f.read())
    except (OSError, ValueError):
        pass
    boots += 1
    with open("/probe_boots.txt", "w") as f:
        f.write(str(boots))
    cause = os.getenv("LIFTWATCH_SIM_RESET_CAUSE")
    feed = open(os.getenv("LIFTWATCH_SIM_FEED"), "rb")
    uart = open(os.getenv("LIFTWATCH_SIM_UART"), "r+b")
    poll = select.poll()
    poll.register(uart, select.POLLIN)
    rec = bytearray(12)
    t_us = 0
    n = 0
    inputs = 0
    cmd = b""
    uart.write(b"BOOT %d %s\n" % (boots, cause.encode()))
    while True:
        if feed.readinto(rec) != 12:
            break
        dt, ax, ay, az, inputs, ctrl = struct.unpack("<IhhhBB", rec)
        t_us += dt
        n += 1
        if n % _REPORT_EVERY == 0:
            uart.write(b"T %d %d %d %s %d %d\n" % (t_us, n, boots, cause.encode(), inputs, ax))
        if poll.poll(0):
            cmd += uart.read(1)
            if cmd.endswith(b"\n"):
                if cmd.strip() == b"hang":
                    while True:
                        pass
                cmd = b""
