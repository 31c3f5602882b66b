"""Mock board, simulated car and hardware-in-the-loop tests."""
