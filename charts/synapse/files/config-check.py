"""The release's configuration, loaded by Synapse as each of its processes will load it.

Run by the config-check hook (pre-install, pre-upgrade) in the release's Synapse image, so a bad
setting fails the release with Synapse's own message before any pod rolls. Arguments are
`<instance>=<process config>`: the instance's name stands in for @HOSTNAME@ (a named instance's
worker_name is its pod name). `file:<setting>=<path>` names a file the pods need that Synapse
itself does not read (the database password, which they take as PGPASSWORD). Application service
registrations are loaded too, as Synapse loads them at start.
"""

import logging
import sys
from pathlib import Path

import synapse.app  # noqa: F401  Synapse's start-up dependency check: exits 1 naming what is missing
from synapse.config._base import ConfigError, format_config_error
from synapse.config.appservice import load_appservices
from synapse.config.homeserver import HomeServerConfig

SHARED = "/conf/homeserver.yaml"
MAIN = "main"


class Once(logging.Filter):
    """Synapse warns as it loads (no trusted_key_servers, say): once, not once per process."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        new = message not in self.seen
        self.seen.add(message)
        return new


def check(instance: str, process_config: str) -> HomeServerConfig | str:
    """The process's configuration as Synapse loads it, or Synapse's error."""
    path = Path("/tmp") / f"check-{instance}.yaml"
    path.write_text(Path(process_config).read_text().replace("@HOSTNAME@", instance))
    try:
        config = HomeServerConfig.load_config("", ["-c", SHARED, "-c", str(path)])
    except ConfigError as e:
        return "".join(format_config_error(e))
    except Exception as e:  # a module the image lacks, as the process would meet it
        return f"{type(e).__name__}: {e}"
    # What synapse.app.homeserver refuses before it serves (workers get theirs from the chart).
    if instance == MAIN and config.worker.worker_app:
        return f"worker_app is {config.worker.worker_app!r}: the main process refuses to start with it"
    return config


def main(arguments: list[str]) -> int:
    handler = logging.StreamHandler()
    handler.addFilter(Once())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", handlers=[handler])
    files = [a.removeprefix("file:").split("=", 1) for a in arguments if a.startswith("file:")]
    processes = [a.split("=", 1) for a in arguments if not a.startswith("file:")]
    results = {instance: check(instance, config) for instance, config in processes}
    # Each error once, with the processes it stops (usually all of them: most settings are shared).
    errors: dict[str, list[str]] = {}
    for setting, path in files:
        if not Path(path).is_file():
            message = f"{setting}: no file {path}: its Secret or key is missing, and no process would start"
            errors[message] = list(results)
    for instance, result in results.items():
        if isinstance(result, str):
            errors.setdefault(result, []).append(instance)
    for error, instances in errors.items():
        print(
            f"{error}\n  (stops {len(instances)} of {len(results)} processes: {', '.join(instances)})",
            file=sys.stderr,
        )
    if errors:
        return 1
    # Every process reads the same registrations; main's config names them.
    main_config = next(iter(results.values()))
    assert isinstance(main_config, HomeServerConfig)
    try:
        load_appservices(main_config.server.server_name, main_config.appservice.app_service_config_files)
    except Exception as e:  # Synapse raises what the parsing raised, not only ConfigError
        print(f"app_service_config_files: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"configuration OK for all {len(results)} processes: {', '.join(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
