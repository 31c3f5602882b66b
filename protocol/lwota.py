# Wire codes of firmware updates over the link (SPEC.md, "Firmware update"; issue 18), for board and
# host. Apart from lwproto.py so that they cost the board heap only while an update runs: the board's
# update modules (firmware/ota.py) import this, nothing resident does.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Message types (in lwproto.KNOWN_TYPES and its direction masks).
T_OTA_CHUNK = const(13)  # host->board: bundle bytes
T_OTA_STATUS = const(14)  # board->host: where the update stands
# CONTROL commands; each is answered by OTA_STATUS, not ACK.
CMD_OTA_QUERY = const(6)  # say what is received and what runs
CMD_OTA_INSTALL = const(7)  # check the received bundle, stage it, reboot into it on trial
CMD_OTA_ABORT = const(8)  # drop a partial or refused bundle
CMD_OTA_ROLLBACK = const(9)  # back to the previous firmware (by hand)
# OTA_STATUS `state`.
OTA_IDLE = const(0)
OTA_RECEIVING = const(1)
OTA_INSTALLING = const(2)  # complete: the board reboots to check and stage it
OTA_REFUSED = const(3)  # `reason` says why; the running firmware was not touched
OTA_ROLLING_BACK = const(4)

# The update's files on the board's flash (names relative to its root; otaboot.py has the boot record).
PART = "ota.part"  # the bundle as it arrives (littlefs keeps a file's last closed state through a power cut)
ID_FILE = "ota.id"  # "bundle_id total" of PART
INSTALL = "ota.install"  # present: install PART at the next boot (holds the version that asked) or roll back ("rollback")
RESULT = "ota.result"  # why the last install was refused ("" when it was staged)
PUBKEY = "ota.pub"  # the release key's public half (`liftwatch flash --ota-key`)
MAX_BUNDLE = const(196608)  # a firmware is about 70 KB of .mpy for xtensawin: room to grow
BOOT_LOADER = ("main.py", "boot.py", "otaboot.py", "otaboot.mpy")  # never replaced by a bundle
