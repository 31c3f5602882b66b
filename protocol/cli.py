"""`liftwatch decode`: frames from a capture file or a serial port, printed as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, BinaryIO

from liftwatch.protocol.framing import FrameReader
from liftwatch.protocol.messages import MessageError, MessageType, decode_message


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode protocol frames from a capture file or serial port to JSON lines")
    p.add_argument("source", help="capture file, '-' for stdin, or a serial port such as /dev/ttyUSB0")
    p.add_argument("--baud", type=int, default=921600)
    p.add_argument("--key-hex", help="per-board HMAC key (hex) to verify tags")
    p.add_argument("--require-tag", action="store_true")
    p.set_defaults(func=_decode)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _open(source: str, baud: int) -> BinaryIO:
    if source == "-":
        return sys.stdin.buffer
    if source.startswith("/dev/"):
        import serial

        return serial.Serial(source, baud, timeout=0.5)  # type: ignore[return-value]
    return open(source, "rb")


def _decode(args: argparse.Namespace) -> int:
    reader = FrameReader(key=bytes.fromhex(args.key_hex) if args.key_hex else None, require_tag=args.require_tag)
    stream = _open(args.source, args.baud)
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
    finally:
        drops = {reason.name.lower(): n for reason, n in reader.drops.items()}
        print(json.dumps({"frames": reader.frames, "drops": drops}), file=sys.stderr)
    return 0
