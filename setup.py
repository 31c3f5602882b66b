"""Build of the optional C accelerator; everything else is declared in pyproject.toml.

`liftwatch.protocol._fastframe` speeds up FrameReader (benchmarks/protocol.py). It is optional: if
it cannot be compiled (no C compiler or Python headers) the install still succeeds and FrameReader
uses its pure-Python path, which gives the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("liftwatch.protocol._fastframe", ["protocol/_fastframe.c"], optional=True,
                  extra_compile_args=["-O3"]),
    ],
)
