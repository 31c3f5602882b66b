"""Board firmware (MicroPython). Imported on the board as top-level modules; here only as package data."""
