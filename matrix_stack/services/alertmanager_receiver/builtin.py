"""The built-in templates (defaults.FIRING, defaults.GROUP) compiled to Python, once, by hand.

Rendering them through the sandboxed Jinja2 engine, sanitising the result, then parsing that back
into the plain-text body cost most of a notification. Here each is one pass over the payload that
writes what that pipeline ends with: the sanitised HTML (`sanitize` of what the Jinja2 source
writes, byte for byte) and the plain-text body (`html_to_text` of it). The template's own markup is
fixed and allowed; what comes from the payload is escaped as the sanitiser's serialiser escapes
text; each link is put through the sanitiser itself, once per distinct link (cached), and a silence
link's filter, percent-encoded, cannot change its verdict. tests/unit/test_alertmanager_receiver_builtin.py
holds both outputs to the Jinja2 source through `sanitize` and `html_to_text`, for every sample and
for generated payloads (markup, entities, line endings, NUL, good and bad links, missing fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from matrix_stack.services.alertmanager_receiver import defaults
from matrix_stack.services.alertmanager_receiver.config import TemplatingConfig
from matrix_stack.services.alertmanager_receiver.filters import escape_text, url
from matrix_stack.services.alertmanager_receiver.payload import Alert, Notification, silence_filter
from matrix_stack.shared.matrix.html import NAMED_COLOURS, sanitize, tidy_text


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str | None = None  # None: the body is made from the sanitised HTML
    sanitized: bool = False  # the html is already what `sanitize` makes of it


_SERIALISED = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\xa0": "&nbsp;"})
_TO_SERIALISE = re.compile("[&<>\xa0\r\0]")


def t(value: str) -> str:
    """A value as the sanitiser's HTML parser leaves it in a text node: line endings normalised (the
    HTML input stream turns CR and CRLF into LF) and NUL as U+FFFD (what Go's escaping writes)."""
    if "\r" in value or "\0" in value:
        return value.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return value


def h(value: str) -> str:
    """A value as a text node of the sanitised HTML: `t`, then the serialiser's text escaping."""
    return value if _TO_SERIALISE.search(value) is None else t(value).translate(_SERIALISED)


@lru_cache(maxsize=1024)
def href(link: str) -> str:
    """` href="..."` as the sanitiser leaves the template's `href="{{ link | url }}"`, or "" where
    it drops the attribute (a link the policy refuses, or one that does not parse)."""
    clean = sanitize(f'<a href="{escape_text(url(link))}"></a>')
    if not (clean.startswith("<a") and clean.endswith("></a>")):
        raise ValueError(f"unexpected sanitised link {clean!r}")
    return clean[2:-5]


class _Silences:
    """Each alert's silence link (payload.silence_url) as `href` leaves it, the part every alert
    shares checked once: the filter is percent-encoded (no whitespace, no colon, no character the
    serialiser escapes) and lies in the fragment, so it changes no verdict and is appended as is."""

    def __init__(self, external: str) -> None:
        self.external = external
        base = external.removesuffix("/")
        self._none = href("")
        self._bare = href(f"{base}/#/silences/new")  # an alert without labels
        self._prefix = href(f"{base}/#/silences/new?filter=")

    def href(self, labels: Mapping[str, str]) -> str:
        if not self.external:
            return self._none
        if not labels:
            return self._bare
        if not self._prefix:
            return ""
        return f'{self._prefix[:-1]}{silence_filter(labels)}"'


def _lines(blocks: list[str]) -> str:
    """`html_to_text` for consecutive blocks (none empty): a line break between two unless the
    first already ends with one."""
    out: list[str] = []
    for block in blocks:
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(block)
    return tidy_text("".join(out))


def _external(notification: Notification, templating: TemplatingConfig) -> str:
    return templating.external_url_mapping.get(notification.externalURL, notification.externalURL)


def firing(notification: Notification, alert: Alert, templating: TemplatingConfig) -> Rendered:
    """defaults.FIRING (metio's README template) for one alert, trimmed as `Templates` trims."""
    labels, annotations, status = alert.labels, alert.annotations, alert.status
    severity = labels.get("severity")
    colour = "orange" if severity == "warning" else "red" if severity == "critical" else "yellow"
    if status == "resolved":
        colour = "green"
    html = [f'<p> <strong><font color="{NAMED_COLOURS[colour]}">{h(status.upper())}</font></strong> ']
    text = [f" {t(status.upper())} "]
    name = labels.get("name") or labels.get("alertname")
    if name:
        html.append(f" {h(name)} ")
        text.append(f" {t(name)} ")
    html.append(" &gt;&gt; ")
    text.append(" >> ")
    if severity:
        html.append(f" {h(severity.upper())}: ")
        text.append(f" {t(severity.upper())}: ")
    html.append(" ")
    text.append(" ")
    description = annotations.get("description") or annotations.get("summary")
    if description:
        html.append(f" {h(description)} ")
        text.append(f" {t(description)} ")
    html.append(" &gt;&gt; ")
    text.append(" >> ")
    runbook, dashboard = annotations.get("runbook"), annotations.get("dashboard")
    if runbook:
        html.append(f" <a{href(runbook)}>Runbook</a> | ")
        text.append(" Runbook | ")
    html.append(" ")
    text.append(" ")
    if dashboard:
        html.append(f" <a{href(dashboard)}>Dashboard</a> | ")
        text.append(" Dashboard | ")
    html.append(f" <a{_Silences(_external(notification, templating)).href(labels)}>Silence</a> </p>")
    text.append(" Silence ")
    return Rendered("".join(html), _lines(["".join(text)]), sanitized=True)


def group(notification: Notification, templating: TemplatingConfig) -> Rendered:
    """defaults.GROUP for the whole notification."""
    status, common = notification.status, notification.commonLabels.get("severity")
    colour = ("green" if status == "resolved" else "red" if common == "critical"
              else "orange" if common == "warning" else "yellow")  # fmt: skip
    count = ""
    if status == "firing":
        count = f":{sum(1 for alert in notification.alerts if alert.status == 'firing')}"
    group_labels = " ".join(notification.groupLabels.values())
    severity = f" ({common.upper()})" if common else ""
    html = [f'<p><strong><font color="{NAMED_COLOURS[colour]}">{h(status.upper())}{count}</font></strong> '
            f"{h(group_labels)}{h(severity)}</p><ul>"]  # fmt: skip
    lines = [f"{t(status.upper())}{count} {t(group_labels)}{t(severity)}"]
    generators = templating.generator_url_mapping
    silences = _Silences(_external(notification, templating))
    for alert in notification.alerts:
        labels, annotations = alert.labels, alert.annotations
        name = labels.get("name") or labels.get("alertname") or ""
        firing = alert.status == "firing"
        mark = "🔴" if firing else "✅"
        item = [f"<li>{mark} <strong>{h(name)}</strong>"]
        line = [f"• {mark} {t(name)}"]
        instance = labels.get("instance")
        if instance:
            item.append(f" on <code>{h(instance)}</code>")
            line.append(f" on {t(instance)}")
        description = annotations.get("description") or annotations.get("summary")
        if description:
            item.append(f": {h(description)}")
            line.append(f": {t(description)}")
        source = generators.get(alert.generatorURL, alert.generatorURL)
        for link, label in ((annotations.get("runbook"), "Runbook"),
                            (annotations.get("dashboard"), "Dashboard"), (source, "Source")):  # fmt: skip
            if link:
                item.append(f" · <a{href(link)}>{label}</a>")
                line.append(f" · {label}")
        if firing and silences.external:
            item.append(f" · <a{silences.href(labels)}>Silence</a>")
            line.append(" · Silence")
        item.append("</li>")
        html += item
        lines.append("".join(line))
    html.append("</ul>")
    if notification.truncatedAlerts:
        truncated = f"… and {notification.truncatedAlerts} more alerts not sent by Alertmanager"
        html.append(f"<p>{truncated}</p>")
        lines.append(truncated)
    return Rendered("".join(html), _lines(lines), sanitized=True)


AlertRenderer = Callable[[Notification, Alert, TemplatingConfig], Rendered]
GroupRenderer = Callable[[Notification, TemplatingConfig], Rendered]
# A configured template whose source is exactly a built-in one is rendered by its compiled form.
ALERT: dict[str, AlertRenderer] = {defaults.FIRING: firing}
GROUP: dict[str, GroupRenderer] = {defaults.GROUP: group}
