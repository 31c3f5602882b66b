# Feed probe: a minimal board program that exercises the mock board's plumbing (feed FIFO, UART pty,
# flash, resets) without the real firmware, so mock-board tests do not depend on firmware behaviour.
import probe

probe.run()
