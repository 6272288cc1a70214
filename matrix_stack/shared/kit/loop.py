"""The event loop every process of ours runs on."""

from __future__ import annotations

import asyncio


def use_uvloop() -> None:
    """uvloop, the loop `uvicorn app:app` picks when it is installed (uvicorn[standard] brings it);
    `asyncio.run` would otherwise run the stdlib loop, which costs a service about twice the CPU
    per request. Before `asyncio.run`; without uvloop (a platform it does not build on), a no-op."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
