"""One base for the harness's server processes (Synapse, PostgreSQL, slapd, the services...): each
launcher says how its process runs and when it is ready; the base owns the rest, the same for all.

The rest: a work directory (a fresh temporary one unless given), the log the process writes to, the
`Popen`, waiting until it is ready (a process that exits or never gets ready is stopped, and the
error carries its log's tail), stopping it (SIGTERM, then SIGKILL) and removing the directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

from matrix_stack.shared.route.processes import stop, wait_ready

LOG_TAIL = 3000  # characters of the log an error carries


@dataclass(frozen=True)
class Command:
    """How a launcher's process runs."""

    argv: list[str]
    env: dict[str, str] | None = None  # None: this process's environment
    cwd: Path | None = None
    user: str | None = None  # run as this user (the harness may run as root)
    logs_itself: bool = False  # the process writes `log` itself: its output is dropped


def _temporary() -> Path:
    return Path(tempfile.mkdtemp(prefix="matrix-stack-"))


def _popen(command: Command, output: int | IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command.argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                            env=command.env, cwd=command.cwd, user=command.user)  # fmt: skip


@dataclass
class LocalProcess:
    """A server process in its work directory. A subclass sets `name` and implements `command()` and
    `ready()`; it may move `log`. `launch()` starts it (again, after `stop()`), `wait_ready()`
    waits for it; `close()` also removes the directory."""

    # in messages and the log's file name; each subclass gives it (no default here: a subclass's
    # own `name` field, LocalService's, would inherit it and follow with fields lacking one)
    name: str = field(init=False)
    directory: Path = field(default_factory=_temporary, kw_only=True)
    process: subprocess.Popen[bytes] | None = field(default=None, kw_only=True, repr=False)

    start_timeout: ClassVar[float] = 20.0
    ready_interval: ClassVar[float] = 0.1
    stop_timeout: ClassVar[float] = 20.0
    # True where the directory holds nothing worth a restart: `stop()` removes it too.
    stop_removes_directory: ClassVar[bool] = False

    def command(self) -> Command:
        """Called at each launch: writes what the process reads and says how it runs."""
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def launch(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = self.command()
        if command.logs_itself:
            self.process = _popen(command, subprocess.DEVNULL)
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = _popen(command, output)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until `ready()`; a process that exits or is not ready in time is stopped, and the
        error carries its log's tail."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was not launched")
        timeout = self.start_timeout if timeout is None else timeout
        try:
            wait_ready(self.name, self.process, self.ready, timeout=timeout, log=self.log,
                       interval=self.ready_interval)  # fmt: skip
        except RuntimeError as error:
            exited = self.process.poll() is not None  # then wait_ready gave the tail already
            self._end()
            if exited or not self.log.exists():
                raise
            raise RuntimeError(f"{error}\n{self.log.read_text(errors='replace')[-LOG_TAIL:]}") from None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        self._end()
        if self.stop_removes_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def close(self) -> None:
        """Stop, and remove the directory with whatever it holds."""
        self._end()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _end(self) -> None:
        stop(self.process, timeout=self.stop_timeout)
        self.process = None


@dataclass
class LocalServer(LocalProcess):
    """A process that `start()` launches and waits for in one call; `with` starts it and closes it."""

    def start(self, timeout: float | None = None) -> None:
        self.launch()
        self.wait_ready(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
