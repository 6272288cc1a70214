"""Settings for `compress-state`: command-line flags over `COMPRESS_STATE_*` variables (and their
`_FILE` forms). The connection is a libpq URL or key/value string, or libpq's own `PG*` variables
when none is given; a password from `COMPRESS_STATE_PASSWORD(_FILE)` is passed beside it, never
inside a string that could be printed."""

from __future__ import annotations

import argparse
import sys
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from matrix_stack.shared.kit.settings import ProcessSettings, load_or_exit

DEFAULT_LEVELS = "100,50,25"


class RustProgress(StrEnum):
    # `resume`: a room the Rust compressor already worked on continues from its saved chains (when
    # their sizes match ours and their heads still exist); `ignore`: every room starts from ours.
    resume = "resume"
    ignore = "ignore"


class CompressStateSettings(ProcessSettings):
    model_config = SettingsConfigDict(env_prefix="COMPRESS_STATE_")

    database_url: SecretStr | None = Field(
        default=None, description="libpq URL or key/value string; default: libpq's PG* variables"
    )
    password: SecretStr | None = Field(default=None, description="Overrides any password in the URL")
    levels: Annotated[list[int], NoDecode] = Field(
        default=[100, 50, 25], description="Chain lengths per level, lowest first"
    )
    chunk_size: int = Field(default=500, ge=1, description="State groups of one room loaded at once")
    chunks: int = Field(default=100, ge=1, description="Chunks to compress in this run")
    room: str | None = Field(default=None, pattern=r"^!.+$", description="Compress this room only")
    dry_run: bool = False
    verify: bool = True
    max_groups_per_second: float | None = Field(default=None, gt=0)
    lock_timeout_seconds: float = Field(default=5.0, ge=0.001, description="Wait this long for a row lock")
    rust_progress: RustProgress = RustProgress.resume
    pushgateway_url: str | None = Field(default=None, pattern=r"^https?://")
    pushgateway_job: str = Field(default="compress-state", min_length=1)
    progress_bar: bool | None = Field(default=None, description="Default: when stderr is a terminal")

    @field_validator("levels", mode="before")
    @classmethod
    def _parse_levels(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValueError(f"{value!r}: comma-separated whole numbers, like {DEFAULT_LEVELS}") from None
        return value

    @field_validator("levels")
    @classmethod
    def _levels_positive(cls, value: list[int]) -> list[int]:
        if not value or any(size < 1 for size in value):
            raise ValueError("one or more sizes of at least 1, like " + DEFAULT_LEVELS)
        return value

    @model_validator(mode="after")
    def _chunk_holds_a_level(self) -> CompressStateSettings:
        # Smaller chunks than the first level re-split rooms already compressed, adding rows
        # (upstream's "tried to increase the number of rows" warnings).
        if self.chunk_size < self.levels[0]:
            raise ValueError(
                f"chunk_size ({self.chunk_size}) must be at least the first level ({self.levels[0]})"
            )
        return self


# Flags that take a value, by setting name; booleans are below.
_VALUE_FLAGS: dict[str, tuple[list[str], str]] = {
    "database_url": (
        ["--database-url"],
        "libpq URL or key/value string (prefer the variable: argv is visible)",
    ),
    "password_file": (["--password-file"], "file holding the database password"),
    "levels": (["-l", "--levels"], f"chain lengths per level (default {DEFAULT_LEVELS})"),
    "chunk_size": (["-c", "--chunk-size"], "state groups of one room loaded at once (default 500)"),
    "chunks": (["-n", "--chunks"], "chunks to compress in this run (default 100)"),
    "room": (["-r", "--room"], "compress this room only"),
    "max_groups_per_second": (["--max-groups-per-second"], "rate limit for busy databases"),
    "lock_timeout_seconds": (["--lock-timeout-seconds"], "wait this long for a row lock (default 5)"),
    "rust_progress": (
        ["--rust-progress"],
        "resume or ignore the Rust compressor's progress (default resume)",
    ),
    "pushgateway_url": (["--pushgateway-url"], "push the run's metrics to this Pushgateway"),
    "log_level": (["--log-level"], "DEBUG, INFO, WARNING, ERROR"),
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress-state",
        description="Rewrite Synapse's state groups as short delta chains, verified group by group.",
        epilog="Every flag has a COMPRESS_STATE_<NAME> variable; exit 0 done, 1 verification failure, "
        "2 bad configuration or connection, 3 another run holds the lock, 4 a database error during the run.",
    )
    for name, (flags, help_text) in _VALUE_FLAGS.items():
        parser.add_argument(*flags, dest=name, help=help_text, default=None)
    parser.add_argument("--dry-run", action="store_const", const=True, default=None,
                        help="report the rows a run would save; write nothing")  # fmt: skip
    parser.add_argument("--no-verify", dest="verify", action="store_const", const=False, default=None,
                        help="skip checking each rewritten group's state (not advised)")  # fmt: skip
    parser.add_argument("--progress", dest="progress_bar", action="store_const", const=True, default=None,
                        help="a progress bar even when stderr is not a terminal")  # fmt: skip
    parser.add_argument("--no-progress", dest="progress_bar", action="store_const", const=False)
    return parser


def load(argv: list[str] | None = None) -> CompressStateSettings:
    """Settings from flags over the environment, or one line naming the bad one and exit 2."""
    args = vars(parser().parse_args(argv))
    password_file = args.pop("password_file")
    overrides = {name: value for name, value in args.items() if value is not None}
    if password_file is not None:
        try:
            with open(password_file) as handle:
                overrides["password"] = handle.read().rstrip("\r\n")
        except OSError as exc:
            print(
                f"config error: --password-file: cannot read {password_file}: {exc.strerror}", file=sys.stderr
            )
            raise SystemExit(2) from None
    return load_or_exit(CompressStateSettings, **overrides)
