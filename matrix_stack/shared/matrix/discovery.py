"""Matrix server discovery: from a server name (or a URL) to the client-server API base URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx


class DiscoveryError(Exception):
    """The homeserver could not be located or does not speak the client-server API."""


def _clean_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DiscoveryError(f"not an http(s) URL: {url!r}")
    return url.rstrip("/")


async def discover_homeserver(server: str, *, http: httpx.AsyncClient, scheme: str = "https") -> str:
    """Resolve `server` to a client API base URL.

    A URL (with a scheme) is taken as the base URL itself. A bare server name is looked up through
    `/.well-known/matrix/client` as the spec describes; without one, the server name itself is tried.
    Either way the result must answer `/_matrix/client/versions`.
    """
    if "://" in server:
        base = _clean_base(server)
    else:
        base = f"{scheme}://{server}"
        try:
            response = await http.get(f"{base}/.well-known/matrix/client", follow_redirects=True)
        except httpx.HTTPError as exc:
            raise DiscoveryError(f"{server}: well-known lookup failed: {exc}") from exc
        if response.status_code == 200:
            try:
                document = response.json()
                base = _clean_base(document["m.homeserver"]["base_url"])
            except (ValueError, KeyError, TypeError) as exc:
                raise DiscoveryError(f"{server}: invalid /.well-known/matrix/client") from exc
        elif response.status_code != 404:
            raise DiscoveryError(f"{server}: /.well-known/matrix/client answered {response.status_code}")
    try:
        versions = await http.get(f"{base}/_matrix/client/versions")
        versions.raise_for_status()
        if not isinstance(versions.json().get("versions"), list):
            raise DiscoveryError(f"{base} does not list client API versions")
    except (httpx.HTTPError, ValueError) as exc:
        raise DiscoveryError(f"{base} is not a Matrix homeserver: {exc}") from exc
    return base
