# Runs under MicroPython: what the board's link does with a damaged host->board byte stream.
# Usage: micropython -c "import lwproto; import check_board_stream; check_board_stream.main(path, key_hex)"
#
# The stream is read in 64-byte pieces (a UART read), assembled with FrameAssembler and decoded with
# FrameDecoder(key). Every frame must either decode or raise ProtocolError: any other exception is a
# bug (it would stop the board's link loop). Prints the seq of each decoded frame and the count of
# each refusal reason, for the host to compare with what it put in the stream.

import lwproto as lw
from binascii import unhexlify


def main(path, key_hex):
    dec = lw.FrameDecoder(unhexlify(key_hex) if key_hex else None)
    asm = lw.FrameAssembler()
    piece = bytearray(64)
    reasons = [0] * len(lw.REASON_NAMES)
    seqs = []
    with open(path, "rb") as f:
        while True:
            n = f.readinto(piece)
            if not n:
                break
            i = 0
            while i < n:
                j = asm.push(piece, i, n - i)
                if j < 0:
                    break
                i = j
                try:
                    seqs.append(dec.decode(asm.frame, asm.length)[3])
                except lw.ProtocolError as err:
                    reasons[err.reason] += 1
    print("seqs", " ".join(str(s) for s in seqs))
    print("reasons", " ".join("%s=%d" % (lw.REASON_NAMES[r], reasons[r]) for r in range(1, len(reasons))))
    print("overflows", asm.overflows)
