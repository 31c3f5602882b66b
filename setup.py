"""Build of the optional C accelerator; everything else is declared in pyproject.toml.

`liftwatch.protocol._fastframe` speeds up FrameReader (benchmarks/protocol.py) and
`liftwatch.edge_daemon.analytics._fastdsp` the ride-quality filters (benchmarks/daemon.py). Both are
optional: if they cannot be compiled (no C compiler or Python headers) the install still succeeds and
the pure-Python paths give the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("liftwatch.protocol._fastframe", ["protocol/_fastframe.c"], optional=True,
                  extra_compile_args=["-O3"]),
        # ride-quality filters; -ffp-contract=off keeps scipy's roundings (no fused multiply-add)
        Extension("liftwatch.edge_daemon.analytics._fastdsp", ["edge_daemon/analytics/_fastdsp.c"], optional=True,
                  extra_compile_args=["-O3", "-ffp-contract=off"]),
    ],
)
