"""The HTTP server process `bastion serve` runs: uvicorn, with the heap frozen once started."""

from __future__ import annotations

import gc
import socket

import uvicorn

__all__ = ["GatewayServer"]


class GatewayServer(uvicorn.Server):
    """Once started, everything the process built so far (modules, the app, the first snapshot)
    is moved out of the garbage collector's sight with `gc.freeze()`.

    Why: a full collection walked those ~250,000 long-lived objects every time. Under `make bench`
    load at c=32 that was three pauses of up to 250 ms in 12 s (0.7 s in all, measured with
    `gc.callbacks`); with the heap frozen, the same load saw full collections of 21 ms at most
    (54 ms in all). Frozen objects are still freed by reference counting once nothing holds them.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()
