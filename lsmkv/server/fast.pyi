"""Type stubs for lsmkv.server.fast (the compiled GET/SET fast path; see fast.pyx)."""
from typing import Any, Optional


class ConnCore:
    """A connection's state the compiled read path uses, and that path
    (asyncio.BufferedProtocol's get_buffer and buffer_updated)."""
    srv: Any
    tr: Any
    buf: Optional[bytearray]
    frame: Any
    multi: Any
    watches: Any
    db: Any
    lastcmd: bytes
    fast: "Fast"
    closed: bool
    authed: bool
    paused_w: bool
    blocked: bool
    proto: int
    reply_mode: int
    start: int
    end: int
    need: int
    last: float

    def get_buffer(self, sizehint: int) -> Any: ...
    def buffer_updated(self, nbytes: int) -> None: ...


class StoreCore:
    """The store's write-path state the compiled fast path reads."""
    queued: int
    waiting: Any
    sync: bool
    dirty: bool
    inline_writes: int


class Fast:
    partial: bool

    def __init__(self, srv: Any) -> None: ...
    def fold(self) -> None:
        """Add the commands counted since the last fold to the server's counters."""
    def run(self, conn: ConnCore, buf: bytearray, start: int, n: int) -> int:
        """Answer the leading plain GET/SET requests of buf[start:n] on conn; the
        position of the first request not taken, or -(it) - 1 when the client
        stopped reading."""
