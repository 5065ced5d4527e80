"""Type stubs for lsmkv.server.fast (the compiled GET/SET fast path; see fast.pyx)."""
from typing import Any


class Fast:
    partial: bool

    def __init__(self, srv: Any) -> None: ...
    def run(self, conn: Any, buf: bytearray, start: int, n: int) -> int:
        """Answer the leading plain GET/SET requests of buf[start:n] on conn; the
        position of the first request not taken, or -(it) - 1 when the client
        stopped reading."""
