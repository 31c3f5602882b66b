"""Protocol v1 test vectors (JSON, see README.md) and their generator, `generate.py`."""
