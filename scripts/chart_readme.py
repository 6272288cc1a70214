"""The README sections several charts share, written once in scripts/chart_docs/ and generated into each.

A README marks a generated section with `<!-- generated from scripts/chart_docs/NAME.md ... -->` and
`<!-- end generated -->`; scripts/chart_values.py fills it in (and, with --check, fails when it is
stale), with the chart's own facts: its name, settings prefix and default schema from the service
catalog, its routed paths from its values, and what it says its own way from its values model's
README (a BridgeReadme).
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from chart_models.bridge import BridgeValues

from matrix_stack.services.catalog import SERVICES

DOCS = Path(__file__).resolve().parent / "chart_docs"
_SECTION = re.compile(
    r"(<!-- generated from scripts/chart_docs/(?P<name>[\w-]+)\.md[^>]*-->\n)"
    r"(?P<body>.*?)(<!-- end generated -->)",
    re.DOTALL,
)


def bridge_facts(chart: str, model: type[BridgeValues]) -> dict[str, str]:
    """What the bridge sections say of this chart."""
    service = next(s for s in SERVICES if s.chart == chart)
    readme = model.README
    session = "the bot's login session (with `matrix.password`)"
    paths = [f"`{path}`" for path in model().httpRoute.paths]
    if readme.roots is None:
        keeps = f" and {session}; {service.script} keeps no relation roots"
        second_pod = (
            ": a message waits in whichever pod accepted it, and scaling down or losing that pod strands it"
        )
        roots_lost = ""
        kept, kept_short = "the outbox and the bot's login session", "the outbox and session"
    else:
        keeps = f", {session}, and the relation roots: {readme.roots}"
        second_pod = (
            " and roots: a message waits in whichever pod accepted it, and what one pod posted the other "
            "cannot thread onto or edit"
        )
        roots_lost = f"  - {readme.roots_lost};\n"
        kept = "the outbox, the relation roots and the bot's login session"
        kept_short = "the outbox, relation roots and session"
    return {
        "chart": chart,
        "prefix": service.env_prefix,
        "schema": service.package,
        "keeps": keeps,
        "second_pod": second_pod,
        "roots_lost": roots_lost,
        "kept_in_postgres": kept,
        "kept_in_postgres_short": kept_short,
        "clients": readme.clients,
        "clients_example": readme.clients_example,
        "alerts_note": readme.alerts_note and "\n" + readme.alerts_note,
        "paths_words": " and ".join([", ".join(paths[:-1]), paths[-1]] if len(paths) > 1 else paths),
        "paths_list": ", ".join(path.strip("`") for path in paths),
    }


def generated(text: str, facts: dict[str, str]) -> str:
    """The README text with every generated section rendered afresh."""

    def fill(match: re.Match[str]) -> str:
        template = Template((DOCS / f"{match['name']}.md").read_text())
        return match[1] + template.substitute(facts) + match[4]

    return _SECTION.sub(fill, text)
