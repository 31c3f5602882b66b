"""`liftwatch decode`: frames from a capture file or a serial port, printed as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, BinaryIO

from liftwatch.errors import LiftwatchError
from liftwatch.protocol.framing import FrameReader
from liftwatch.protocol.messages import MessageError, MessageType, decode_message


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode protocol frames from a capture file or serial port to JSON lines")
    p.add_argument("source", help="capture file, '-' for stdin, or a serial port such as /dev/ttyUSB0")
    p.add_argument("--baud", type=int, default=921600, help="serial port speed (default 921600, the data UART's)")
    p.add_argument("--key-hex", help="per-board HMAC key (hex) to verify tags")
    p.add_argument("--require-tag", action="store_true",
                   help="drop frames without a valid tag, as the daemon does for a keyed board")
    p.set_defaults(func=_decode)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class SourceError(LiftwatchError, OSError):
    """The capture file or port cannot be opened; the message names it and says why."""


def _open(source: str, baud: int) -> BinaryIO:
    if source == "-":
        return sys.stdin.buffer
    if source.startswith("/dev/"):
        import serial

        if not os.path.exists(source):
            raise SourceError(f"{source}: no such serial port (is the board plugged in? see `ls /dev/tty*`)")
        try:
            return serial.Serial(source, baud, timeout=0.5)  # type: ignore[return-value]
        except serial.SerialException as err:
            raise SourceError(f"{source}: cannot open the port ({getattr(err, 'strerror', None) or err})") from None
    try:
        return open(source, "rb")
    except OSError as err:
        raise SourceError(f"{source}: {err.strerror or err}") from None


def _decode(args: argparse.Namespace) -> int:
    try:
        key = bytes.fromhex(args.key_hex) if args.key_hex else None
    except ValueError:
        print("liftwatch decode: --key-hex is not hex", file=sys.stderr)
        return 2
    reader = FrameReader(key=key, require_tag=args.require_tag)
    try:
        stream = _open(args.source, args.baud)
    except SourceError as err:
        print(f"liftwatch decode: {err}", file=sys.stderr)
        return 2
    try:
        while chunk := stream.read(4096):
            for frame in reader.feed(chunk):
                record: dict[str, Any] = {
                    "type": MessageType(frame.type).name,
                    "boot_id": frame.boot_id,
                    "seq": frame.seq,
                    "t_ms": frame.t_ms,
                    "tagged": frame.tagged,
                }
                try:
                    msg = decode_message(frame)
                    record["fields"] = _jsonable({k: getattr(msg, k) for k in msg.__dataclass_fields__})
                except MessageError as exc:
                    record["error"] = str(exc)
                print(json.dumps(record), flush=True)
    except KeyboardInterrupt:
        pass
    # Not in a `finally`: when the reader closed our stdout, `liftwatch` says so in one line.
    drops = {reason.name.lower(): n for reason, n in reader.drops.items()}
    print(json.dumps({"frames": reader.frames, "drops": drops}), file=sys.stderr)
    return 0
