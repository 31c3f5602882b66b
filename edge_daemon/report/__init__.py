"""Insurer / owner reports from the daemon's upstream messages (docs/report.md).

source (journal or outbox -> messages) -> figures (pure computations, the contract rules) ->
fleet (risk score) -> plots (matplotlib) -> html (self-contained page) -> pdf (Chromium, or
matplotlib's PdfPages). `writer` ties them together for the `liftwatch report` and
`liftwatch fleet-report` commands.
"""
