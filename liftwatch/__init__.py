"""liftwatch: the elevator edge agent (board firmware, wire protocol, Pi daemon)."""

__version__ = "0.1.0"
