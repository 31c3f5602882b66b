# Hardware abstraction facade: the firmware asks this module for its board and never looks further.
#
# A board object gives: ``i2c`` (readfrom_mem_into / writeto_mem), ``ticks_ms()`` (ms mod 2**30),
# ``wait_ms(ms) -> bool`` (False once a simulated feed ended), the input levels and their edge log
# (``inputs``, ``edge_t``, ``edge_v``, ``edge_count``), ``uart_write(buf, n) -> bool``,
# ``uart_readinto(buf) -> n``, ``wdt_start(ms)``/``wdt_feed()``/``wdt_park()``, ``reset_cause()``, ``uid_hex()``,
# ``path(name)`` for files on the board's flash, ``reset()``, ``ble()`` (None when absent),
# ``set_transport(t)`` (0 UART, 1 BLE; returns the one in use), ``set_baud(baud)``, ``service(now)``
# (main-loop hook of the transport) and ``mem_free()``. Only hal_esp32 imports ``machine``.
import sys

EDGE_LOG = 32  # input edges kept between two loop passes (power of two)


class BoardReset(BaseException):
    """The board resets now (watchdog, machine.reset() in the simulator): nothing after it runs.

    A BaseException so the agent's crash handler, which catches Exception, does not swallow it."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


class PowerCut(BaseException):
    """Simulated power loss: the process stops dead, with no clean shutdown."""


def board():
    """The HAL for this platform: the ESP32's, or the simulated board configured from the environment."""
    if sys.platform == "esp32":
        import hal_esp32

        return hal_esp32.Esp32Board()
    import hal_sim

    return hal_sim.SimBoard.from_env()
