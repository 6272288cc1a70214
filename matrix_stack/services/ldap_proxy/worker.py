"""A worker other than the main process (`python -m matrix_stack.services.ldap_proxy.worker`, started
by it; see workers.py): the main process's settings and listeners, its backends' states from the main
process, no HTTP. It drains and exits on SIGTERM or when the main process goes away."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy
from matrix_stack.services.ldap_proxy.workers import Channel, worker_channel
from matrix_stack.shared.kit import logs
from matrix_stack.shared.kit.errors import StartupError
from matrix_stack.shared.kit.loop import use_uvloop

log = logging.getLogger("matrix_stack.ldap_proxy")


class Follower:
    """What the main process tells this worker: its settings, then the backends' states; and its
    questions (a report before a scrape)."""

    def __init__(self) -> None:
        self.proxy: LdapProxy | None = None
        self.channel: Channel | None = None
        self.told = asyncio.Event()  # the settings and the backends' states came: listen
        self.gone = asyncio.Event()  # SIGTERM, SIGINT, or the main process's end of the channel closed

    def heard(self, message: dict[str, Any]) -> None:
        if "settings" in message and self.proxy is None:
            settings = LdapProxySettings.model_validate(message["settings"])
            logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
            self.proxy = self._proxy(settings)
        proxy, channel = self.proxy, self.channel
        if proxy is None or channel is None:
            return
        if "up" in message:
            proxy.pool.take_states(message["up"])
            self.told.set()
        if "ask" in message:  # before a scrape: the tallies as of now
            channel.send({"report": proxy.snapshot(), "answers": message["ask"]})

    def _proxy(self, settings: LdapProxySettings) -> LdapProxy:
        proxy = LdapProxy(settings, main=False)
        channel = self.channel
        assert channel is not None
        proxy.pool.failed_elsewhere = lambda state: channel.send({"connect_failed": state.name})
        proxy.report = lambda snapshot: channel.send({"report": snapshot})
        return proxy

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        channel = self.channel = Channel(self.heard, self.gone.set)  # known before its first message
        await loop.connect_accepted_socket(lambda: channel, worker_channel())
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.gone.set)
        gone, told = asyncio.ensure_future(self.gone.wait()), asyncio.ensure_future(self.told.wait())
        await asyncio.wait([gone, told], return_when=asyncio.FIRST_COMPLETED)
        if self.proxy is None or not self.told.is_set():
            told.cancel()
            return 0
        try:
            await self.proxy.start()
        except StartupError as exc:
            log.error(str(exc))
            return 1
        channel.send({"ready": True})
        await gone
        await self.proxy.stop()
        channel.send({"report": self.proxy.snapshot()})  # the last of its counts
        channel.close()
        return 0


def main() -> None:
    use_uvloop()
    sys.exit(asyncio.run(Follower().run()))


if __name__ == "__main__":
    main()
