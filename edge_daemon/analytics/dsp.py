"""Filter primitive for ride quality: second-order sections over the columns of an array, in place.

`sosfilt_columns` is scipy.signal.sosfilt's arithmetic. With the optional C kernel (`_fastdsp.c`,
built by setup.py) it skips scipy's per-call validation and reshaping (~80 us, six calls per trip);
without it, scipy does the same work. Both give the same bits (tests/test_perf_ride_quality.py).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = ["ACCELERATED", "fast", "sosfilt_columns"]

try:  # optional C kernel, built by setup.py (edge_daemon/analytics/_fastdsp.c)
    from liftwatch.edge_daemon.analytics import _fastdsp
except ImportError:  # not built: scipy gives the same results, slower
    _fastdsp = None

ACCELERATED = _fastdsp is not None
# The kernels themselves for ride_quality's other loops (filtfilt, least-squares slope, half-cycle
# peaks); None without the build. ride_quality keeps the numpy form of each beside it, and tests
# compare the two bit for bit.
fast = _fastdsp


def sosfilt_columns(sos: np.ndarray, x: np.ndarray, zi: np.ndarray, accelerated: bool = ACCELERATED) -> None:
    """Filter `x` (n_samples,) or (n_samples, n_signals), C-contiguous float64, in place along axis 0.

    `zi` (n_signals, n_sections, 2) is the filter state on entry (zeros: at rest) and is updated.
    """
    if accelerated:
        _fastdsp.sosfilt(sos, x, zi)
        return
    if not len(x):
        return  # scipy cannot reshape an empty signal; nothing to filter, state unchanged
    sos = np.array(sos)  # scipy's filters want a writable array; the cached designs are read-only
    if x.ndim == 1:
        x[:], zi[0] = signal.sosfilt(sos, x, zi=zi[0])
    else:  # scipy wants the state as (n_sections, 2, n_signals) for axis 0
        x[:], zf = signal.sosfilt(sos, x, axis=0, zi=zi.transpose(1, 2, 0))
        zi[:] = zf.transpose(2, 0, 1)
