"""`livekit-jwt` console script: lk-jwt-service's variables are read as ours (aliases.py) before the
settings are."""

import os
import sys

from matrix_stack.services.livekit_jwt import aliases
from matrix_stack.services.livekit_jwt.app import routes
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.issuer import Issuer
from matrix_stack.shared.kit.server import main_for
from matrix_stack.shared.kit.settings import load_or_exit


def load() -> LivekitJwtSettings:
    """The settings, lk-jwt-service's variables included; exits 2 with one line for one we refuse."""
    try:
        aliased = aliases.resolve(os.environ)
    except aliases.Unsupported as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    os.environ.update(aliased.environ)
    settings = load_or_exit(LivekitJwtSettings)
    settings.aliases_used = aliased.used  # logged by the issuer, once logs are set up
    return settings


def main() -> None:
    main_for(LivekitJwtSettings, Issuer, routes, load=load)


if __name__ == "__main__":
    main()
