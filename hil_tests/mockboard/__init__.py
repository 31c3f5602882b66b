"""The mock board: a MicroPython child process behind two ptys that mpremote drives like an ESP32."""
