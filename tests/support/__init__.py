"""What the tests share: fake boards, daemon helpers, the broker, synthetic cars and reports.

pytest puts tests/ on sys.path, so a test imports `from support.board import PtyBoard`; fixtures
built on these live in tests/conftest.py. A test module never imports another test module.
"""
