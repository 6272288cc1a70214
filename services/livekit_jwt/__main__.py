"""`livekit-jwt` console script."""

from __future__ import annotations

import sys

from matrix_stack.core import logs
from matrix_stack.core.server import run_component
from matrix_stack.core.settings import load_or_exit
from matrix_stack.services.livekit_jwt.app import routes
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.issuer import Issuer


def main() -> None:
    settings = load_or_exit(LivekitJwtSettings)
    try:
        issuer = Issuer(settings)
    except ValueError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    # the secret may come from a keys file, which the settings never see: redact it too
    secrets = [*settings.secrets(), issuer.credentials.secret]
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=secrets)
    run_component(issuer, routes(issuer))


if __name__ == "__main__":
    main()
