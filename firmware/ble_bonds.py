# The BLE link's secrets on the board's flash: the bonds NimBLE hands over and asks back for
# (_IRQ_SET_SECRET / _IRQ_GET_SECRET), so a bonded Pi stays bonded across reboots, and the pairing
# passkey `liftwatch flash --ble-passkey-file` wrote. Imported by ble_nus for each of those IRQs (a
# pairing or a bonded reconnect) and dropped again, never resident: the heap has no room to spare.
#
# File: records of sec_type (u8), key length (u8), value length (u8), key, value; a record cut by a
# power loss ends the list (that bond is lost: the Pi pairs again).
from micropython import const

BONDS_FILE = "ble_bonds.bin"
PASSKEY_FILE = "ble_passkey.txt"
_MAX_RECORDS = const(8)  # a Pi and its replacement, each with NimBLE's own and peer records
_IRQ_GET_SECRET = const(29)
_IRQ_PASSKEY_ACTION = const(31)
_PASSKEY_ACTION_DISPLAY = const(3)


def answer(ble, root, event, data):
    """ble_nus's answer to _IRQ_GET_SECRET, _IRQ_SET_SECRET or _IRQ_PASSKEY_ACTION (files under
    `root`); ble_nus catches what it raises."""
    if event == _IRQ_PASSKEY_ACTION:
        key = passkey(root + PASSKEY_FILE)
        if data[1] == _PASSKEY_ACTION_DISPLAY and key is not None:
            ble.gap_passkey(data[0], data[1], key)
        else:
            ble.gap_disconnect(data[0])
        return None
    bonds = Bonds(root + BONDS_FILE)
    if event == _IRQ_GET_SECRET:
        return bonds.get(data[0], data[1], None if data[2] is None else bytes(data[2]))
    return bonds.set(data[0], data[1], data[2])


class Bonds:
    def __init__(self, path):
        self.path = path
        self.records = []  # [sec_type, key, value], oldest first
        try:
            with open(path, "rb") as f:
                b = f.read()
        except OSError:
            return
        i = 0
        while i + 3 <= len(b):
            k = i + 3 + b[i + 1]
            end = k + b[i + 2]
            if end > len(b):
                break
            self.records.append([b[i], b[i + 3 : k], b[k:end]])
            i = end

    def get(self, sec_type, index, key):
        """The value stored for (sec_type, key), or with key None the index'th of sec_type; else None."""
        for r in self.records:
            if r[0] == sec_type:
                if key is None:
                    if index == 0:
                        return r[2]
                    index -= 1
                elif r[1] == key:
                    return r[2]
        return None

    def set(self, sec_type, key, value):
        """Store (value None: forget) a secret; the port passes memoryviews valid only for the IRQ."""
        key = bytes(key)
        self.records = [r for r in self.records if r[0] != sec_type or r[1] != key]
        if value is not None:
            self.records.append([sec_type, key, bytes(value)])
            del self.records[:-_MAX_RECORDS]
        with open(self.path, "wb") as f:
            for t, k, v in self.records:
                f.write(bytes((t, len(k), len(v))))
                f.write(k)
                f.write(v)
        return True


def passkey(path):
    """The 6-digit pairing passkey provisioned at flash time; None without one (no central pairs)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
