"""The built-in templates (defaults.FIRING, defaults.GROUP) compiled to Python, once, by hand.

Rendering them through the sandboxed Jinja2 engine, then parsing the sanitised HTML back into the
plain-text body, cost most of a notification. Here each is one pass over the payload that writes
the HTML its Jinja2 source writes, byte for byte, and the plain-text body alongside it: the text
`html_to_text(sanitize(html))` would give, written from the values rather than read back out of the
markup. The HTML still goes through the sanitiser (links and colours are checked there, as for any
template). tests/unit/test_alertmanager_receiver_builtin.py holds both to the Jinja2 source and to
that pipeline, for the samples and for generated payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from matrix_stack.services.alertmanager_receiver import defaults
from matrix_stack.services.alertmanager_receiver.config import TemplatingConfig
from matrix_stack.services.alertmanager_receiver.filters import escape_text as e
from matrix_stack.services.alertmanager_receiver.filters import url
from matrix_stack.services.alertmanager_receiver.payload import (
    Alert,
    Notification,
    silence_filter,
    silence_url,
)
from matrix_stack.shared.matrix.html import tidy_text


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str | None = None  # None: the body is made from the sanitised HTML


def t(value: str) -> str:
    """A value as the sanitiser's HTML parser leaves it in a text node: line endings normalised (the
    HTML input stream turns CR and CRLF into LF) and NUL as U+FFFD (what `go_escape` writes)."""
    if "\r" in value or "\0" in value:
        return value.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return value


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
    html = [f'<p> <strong><font color="{colour}">{e(status.upper())}</font></strong> ']
    text = [f" {t(status.upper())} "]
    name = labels.get("name") or labels.get("alertname")
    if name:
        html.append(f" {e(name)} ")
        text.append(f" {t(name)} ")
    html.append(" >> ")
    text.append(" >> ")
    if severity:
        html.append(f" {e(severity.upper())}: ")
        text.append(f" {t(severity.upper())}: ")
    html.append(" ")
    text.append(" ")
    description = annotations.get("description") or annotations.get("summary")
    if description:
        html.append(f" {e(description)} ")
        text.append(f" {t(description)} ")
    html.append(" >> ")
    text.append(" >> ")
    runbook, dashboard = annotations.get("runbook"), annotations.get("dashboard")
    if runbook:
        html.append(f' <a href="{e(url(runbook))}">Runbook</a> | ')
        text.append(" Runbook | ")
    html.append(" ")
    text.append(" ")
    if dashboard:
        html.append(f' <a href="{e(url(dashboard))}">Dashboard</a> | ')
        text.append(" Dashboard | ")
    silence = silence_url(_external(notification, templating), labels)
    html.append(f' <a href="{e(url(silence))}">Silence</a> </p>')
    text.append(" Silence ")
    return Rendered("".join(html), _lines(["".join(text)]))


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
    html = [f'<p><strong><font color="{colour}">{e(status.upper())}{count}</font></strong> {e(group_labels)}'
            f"{e(severity)}</p><ul>"]  # fmt: skip
    lines = [f"{t(status.upper())}{count} {t(group_labels)}{t(severity)}"]
    generators = templating.generator_url_mapping
    links: dict[str, str] = {}  # the same runbook or source link in many alerts: checked once
    silences = _Silences(_external(notification, templating))

    def href(link: str) -> str:
        escaped = links.get(link)
        if escaped is None:
            escaped = links[link] = e(url(link))
        return escaped

    for alert in notification.alerts:
        labels, annotations = alert.labels, alert.annotations
        name = labels.get("name") or labels.get("alertname") or ""
        firing = alert.status == "firing"
        mark = "🔴" if firing else "✅"
        item = [f"<li>{mark} <strong>{e(name)}</strong>"]
        line = [f"• {mark} {t(name)}"]
        instance = labels.get("instance")
        if instance:
            item.append(f" on <code>{e(instance)}</code>")
            line.append(f" on {t(instance)}")
        description = annotations.get("description") or annotations.get("summary")
        if description:
            item.append(f": {e(description)}")
            line.append(f": {t(description)}")
        source = generators.get(alert.generatorURL, alert.generatorURL)
        for link, label in ((annotations.get("runbook"), "Runbook"),
                            (annotations.get("dashboard"), "Dashboard"), (source, "Source")):  # fmt: skip
            if link:
                item.append(f' · <a href="{href(link)}">{label}</a>')
                line.append(f" · {label}")
        if firing and silences.external:
            item.append(f' · <a href="{silences.href(labels)}">Silence</a>')
            line.append(" · Silence")
        item.append("</li>")
        html += item
        lines.append("".join(line))
    html.append("</ul>")
    if notification.truncatedAlerts:
        truncated = f"… and {notification.truncatedAlerts} more alerts not sent by Alertmanager"
        html.append(f"<p>{truncated}</p>")
        lines.append(truncated)
    return Rendered("".join(html), _lines(lines))


class _Silences:
    """Each alert's silence link as `e(url(silence_url(external, labels)))`, with the part every
    alert shares checked and encoded once: the filter is percent-encoded already (no whitespace, no
    colon, nothing `url` or `e` changes), so it only decides whether the link stays."""

    def __init__(self, external: str) -> None:
        self.external = external
        base = external.removesuffix("/")
        self._bare = e(url(f"{base}/#/silences/new"))  # an alert without labels
        self._prefix = e(url(f"{base}/#/silences/new?filter="))

    def href(self, labels: dict[str, str]) -> str:
        if not labels:
            return self._bare
        if not self._prefix:
            return ""  # the link policy refused the external URL
        return self._prefix + silence_filter(labels)


AlertRenderer = Callable[[Notification, Alert, TemplatingConfig], Rendered]
GroupRenderer = Callable[[Notification, TemplatingConfig], Rendered]
# A configured template whose source is exactly a built-in one is rendered by its compiled form.
ALERT: dict[str, AlertRenderer] = {defaults.FIRING: firing}
GROUP: dict[str, GroupRenderer] = {defaults.GROUP: group}
