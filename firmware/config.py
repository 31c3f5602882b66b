# Settings validation: loaded only when a config file exists or a CONFIG frame arrives, then dropped.
#
# A candidate (partial map merged over the current settings) is checked as a whole: types, ranges,
# cross-field rules. A bad one is refused with a reason naming the field and the current settings
# stay, so no setting can brick the board. An unknown key is refused too (protocol/SPEC.md).
# Defaults and what each setting means: settings.py.
import json

from settings import DEFAULTS, config_hash  # noqa: F401 (config_hash re-exported)

# name: (min, max) for the int settings; the bool ones are listed apart.
RANGES = {
    "rate_hz": (50, 1600), "margin_ms": (0, 4000), "stats_ms": (200, 10000), "heartbeat_ms": (1000, 600000),
    "counters_ms": (10000, 3600000), "persist_s": (60, 3600), "debounce_ms": (0, 1000),
    "alarm_hold_ms": (500, 60000), "zone_stop_ms": (1000, 600000), "accel_on_mg": (5, 500),
    "accel_off_mg": (2, 500), "motion_on_ms": (20, 2000), "motion_off_ms": (20, 5000),
    "event_retry_ms": (500, 600000), "stream": (0, 2), "baud": (9600, 3000000), "safe_mode_crashes": (2, 50),
    "wdt_ms": (2000, 60000), "stable_ms": (5000, 3600000), "transport": (0, 1),
}
BOOLS = ("auto_calibrate",)
BAUDS = (115200, 230400, 460800, 921600, 1000000, 2000000)
MAX_WINDOW_SAMPLES = 8000  # STATS sums stay small ints (see motion.py)


class ConfigError(ValueError):
    """A refused setting; ``reason`` is the text sent back in the ACK."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def merge(out, update, ring_samples, max_rate_hz=1600):
    """``out`` (a copy of the current settings, made by the caller) with update applied and checked
    as a whole. The caller copies before loading this module, while the heap's holes are largest:
    the copy's table is one block.

    Raises ConfigError naming the first bad field (``out`` is then half-updated: dropped)."""
    if not isinstance(update, dict):
        raise ConfigError("settings must be a map")
    for k in update:
        v = update[k]
        if k in BOOLS:
            if v is not True and v is not False:
                raise ConfigError(k + ": must be true or false")
        elif k in RANGES:
            if type(v) is not int:
                raise ConfigError(k + ": must be an integer")
            lo, hi = RANGES[k]
            if v < lo or v > hi:
                raise ConfigError("%s: %d out of range %d..%d" % (k, v, lo, hi))
        else:
            # SPEC: the board refuses unknown CONFIG keys, so an operator learns of a typo at once.
            raise ConfigError(str(k) + ": unknown setting")
        out[k] = v
    if out["accel_off_mg"] >= out["accel_on_mg"]:
        raise ConfigError("accel_off_mg: must be below accel_on_mg")
    if out["baud"] not in BAUDS:
        raise ConfigError("baud: %d not one of %s" % (out["baud"], BAUDS))
    if out["rate_hz"] > max_rate_hz:
        raise ConfigError("rate_hz: %d above this sensor's %d" % (out["rate_hz"], max_rate_hz))
    # The pre-trip margin is capped by the ring (streamer.py). The STATS window's sums must stay small
    # ints, so its length in samples is bounded (at up to twice the asked rate: the part's next ODR).
    if out["stats_ms"] * out["rate_hz"] * 2 // 1000 > MAX_WINDOW_SAMPLES:
        raise ConfigError("stats_ms: window above %d samples" % MAX_WINDOW_SAMPLES)
    return out


def load_file(path, ring_samples, max_rate_hz=1600):
    """Settings from the config file: (settings, error). A bad file gives the defaults and the reason,
    so the board always boots."""
    text = None
    for p in (path, path + ".new"):  # .new: a power cut hit save_file between remove and rename
        try:
            with open(p) as f:
                text = f.read()
            break
        except OSError:
            pass
    if text is None:
        return dict(DEFAULTS), None
    try:
        return merge(dict(DEFAULTS), json.loads(text), ring_samples, max_rate_hz), None
    except ConfigError as e:  # a ValueError too: caught first
        reason = e.reason
    except ValueError:
        reason = "not valid JSON"
    return dict(DEFAULTS), "config file: " + reason


def save_file(path, settings):
    """Write the settings aside, then rename over the old file (atomic on LittleFS). json.dump writes
    piece by piece: the whole text as one string needs a hole of its size, often missing after a
    long run has fragmented the heap."""
    import os

    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(settings, f)
    try:
        os.remove(path)
    except OSError:
        pass
    os.rename(tmp, path)
