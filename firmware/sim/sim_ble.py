# The BLE link on the mock board's virtual radio: what hal_esp32 does for set_transport(1), plus the
# IRQ delivery the ESP32 port's scheduler does (the ROM's `bluetooth` stand-in queues the radio's
# events; they reach ble_nus's handler once per loop pass, before its notifications go out).
import bluetooth  # only a mock board with a radio has it: without, hal_sim stays on the UART


def attach(board):
    """Start ble_nus on `board` and route its link there; returns 1 (the transport in use)."""
    from ble_nus import BleNus

    nus = BleNus("liftwatch-" + board.uid_hex()[-6:], board.path(""))
    irqs = bluetooth._irqs  # the mock board's stand-in delivers its queued events (board_ble.py)
    send = nus.service

    def service(now_ms):
        irqs()
        send(now_ms)

    board.ble = lambda: nus
    board.service = service  # made once: the loop calls it every pass without allocating
    board.uart_write = nus.uart_write
    board.uart_readinto = nus.uart_readinto
    return 1
