# Default board settings and the config hash: the small part of the configuration every boot needs.
# Validation (config.py) is loaded only when a config file exists or a CONFIG frame arrives.
import hashlib

DEFAULTS = {
    "rate_hz": 400,  # sampling rate asked of the sensor (it runs at its next ODR up)
    "margin_ms": 1000,  # raw VIB kept before and after each trip
    "stats_ms": 1000,  # STATS window while at rest
    "heartbeat_ms": 10000,  # HEARTBEAT period
    "counters_ms": 60000,  # COUNTERS frame period
    "persist_s": 300,  # counter flash write interval (wear)
    "debounce_ms": 30,  # input debounce
    "alarm_hold_ms": 3000,  # alarm button held this long raises an EVENT
    "zone_stop_ms": 5000,  # at rest outside the door zone this long raises an EVENT
    "accel_on_mg": 25,  # vertical acceleration that starts a trip
    "accel_off_mg": 12,  # vertical acceleration below which the car is steady
    "motion_on_ms": 150,  # acceleration must last this long to count
    "motion_off_ms": 300,  # quiet this long ends acceleration or a trip
    "event_retry_ms": 2000,  # first EVENT re-send delay (doubles up to 60 s)
    "stream": 0,  # 0 VIB around trips, 1 VIB always, 2 never VIB
    "baud": 921600,  # UART link speed
    "safe_mode_crashes": 3,  # crash-reboots in a row before safe mode
    "wdt_ms": 8000,  # watchdog timeout
    "stable_ms": 60000,  # run this long before a boot counts as good
    "transport": 0,  # link to the host: 0 UART, 1 BLE (Nordic UART Service; falls back to UART without a radio)
    "auto_calibrate": True,  # calibrate at the first quiet rest if never calibrated
}


def config_hash(settings):
    """u30 hash of the full settings: sha256 of sorted "key=value" lines (the host can recompute it)."""
    h = hashlib.sha256()
    for k in sorted(settings):
        v = settings[k]
        if v is True or v is False:
            v = "true" if v else "false"
        h.update(("%s=%s\n" % (k, v)).encode())
    d = h.digest()
    return (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) & 0x3FFFFFFF
