"""`livekit-jwt` console script."""

from matrix_stack.services.livekit_jwt.app import routes
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.issuer import Issuer
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    main_for(LivekitJwtSettings, Issuer, routes)


if __name__ == "__main__":
    main()
