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
from matrix_stack.services.alertmanager_receiver.filters import go_escape as e
from matrix_stack.services.alertmanager_receiver.filters import url
from matrix_stack.services.alertmanager_receiver.payload import Alert, Notification, silence_url
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


class _Text:
    """`html_to_text`'s line handling, fed the text nodes and blocks directly."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, *pieces: str) -> None:
        self.parts.extend(piece for piece in pieces if piece)

    def newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def value(self) -> str:
        return tidy_text("".join(self.parts))


def _external(notification: Notification, templating: TemplatingConfig) -> str:
    return templating.external_url_mapping.get(notification.externalURL, notification.externalURL)


def firing(notification: Notification, alert: Alert, templating: TemplatingConfig) -> Rendered:
    """defaults.FIRING (metio's README template) for one alert, trimmed as `Templates` trims."""
    labels, annotations, status = alert.labels, alert.annotations, alert.status
    severity = labels.get("severity")
    colour = "orange" if severity == "warning" else "red" if severity == "critical" else "yellow"
    if status == "resolved":
        colour = "green"
    html = ['<p> <strong><font color="', colour, '">', e(status.upper()), "</font></strong> "]
    text = _Text()
    text.add(" ", t(status.upper()), " ")
    name = labels.get("name") or labels.get("alertname")
    if name:
        html += [" ", e(name), " "]
        text.add(" ", t(name), " ")
    html.append(" >> ")
    text.add(" >> ")
    if severity:
        html += [" ", e(severity.upper()), ": "]
        text.add(" ", t(severity.upper()), ": ")
    html.append(" ")
    text.add(" ")
    description = annotations.get("description") or annotations.get("summary")
    if description:
        html += [" ", e(description), " "]
        text.add(" ", t(description), " ")
    html.append(" >> ")
    text.add(" >> ")
    for key, label in (("runbook", "Runbook"), ("dashboard", "Dashboard")):
        link = annotations.get(key)
        if link:
            html += [' <a href="', e(url(link)), '">', label, "</a> | "]
            text.add(" ", label, " | ")
        if key == "runbook":
            html.append(" ")
            text.add(" ")
    silence = silence_url(_external(notification, templating), labels)
    html += [' <a href="', e(url(silence)), '">Silence</a> </p>']
    text.add(" ", "Silence", " ")
    text.newline()
    return Rendered("".join(html), text.value())


def group(notification: Notification, templating: TemplatingConfig) -> Rendered:
    """defaults.GROUP for the whole notification."""
    status, common = notification.status, notification.commonLabels.get("severity")
    colour = ("green" if status == "resolved" else "red" if common == "critical"
              else "orange" if common == "warning" else "yellow")  # fmt: skip
    html = ['<p><strong><font color="', colour, '">', e(status.upper())]
    text = _Text()
    text.add(t(status.upper()))
    if status == "firing":
        count = str(sum(1 for alert in notification.alerts if alert.status == "firing"))
        html += [":", count]
        text.add(":", count)
    group_labels = " ".join(notification.groupLabels.values())
    html += ["</font></strong> ", e(group_labels)]
    text.add(" ", t(group_labels))
    if common:
        html += [" (", e(common.upper()), ")"]
        text.add(" (", t(common.upper()), ")")
    html.append("</p><ul>")
    text.newline()
    external = _external(notification, templating)
    generators = templating.generator_url_mapping
    links: dict[str, str] = {}  # the same runbook or source link in many alerts: checked once

    def href(link: str) -> str:
        escaped = links.get(link)
        if escaped is None:
            escaped = links[link] = e(url(link))
        return escaped

    for alert in notification.alerts:
        labels, annotations = alert.labels, alert.annotations
        name = labels.get("name") or labels.get("alertname") or ""
        mark = "🔴" if alert.status == "firing" else "✅"
        html += ["<li>", mark, " <strong>", e(name), "</strong>"]
        text.newline()
        text.add("• ", mark, " ", t(name))
        instance = labels.get("instance")
        if instance:
            html += [" on <code>", e(instance), "</code>"]
            text.add(" on ", t(instance))
        description = annotations.get("description") or annotations.get("summary")
        if description:
            html += [": ", e(description)]
            text.add(": ", t(description))
        source = generators.get(alert.generatorURL, alert.generatorURL)
        for link, label in ((annotations.get("runbook"), "Runbook"),
                            (annotations.get("dashboard"), "Dashboard"), (source, "Source")):  # fmt: skip
            if link:
                html += [' · <a href="', href(link), '">', label, "</a>"]
                text.add(" · ", label)
        if alert.status == "firing" and external:
            html += [' · <a href="', e(url(silence_url(external, labels))), '">Silence</a>']
            text.add(" · ", "Silence")
        html.append("</li>")
        text.newline()
    html.append("</ul>")
    text.newline()
    if notification.truncatedAlerts:
        truncated = str(notification.truncatedAlerts)
        html += ["<p>… and ", truncated, " more alerts not sent by Alertmanager</p>"]
        text.add(f"… and {truncated} more alerts not sent by Alertmanager")
        text.newline()
    return Rendered("".join(html), text.value())


AlertRenderer = Callable[[Notification, Alert, TemplatingConfig], Rendered]
GroupRenderer = Callable[[Notification, TemplatingConfig], Rendered]
# A configured template whose source is exactly a built-in one is rendered by its compiled form.
ALERT: dict[str, AlertRenderer] = {defaults.FIRING: firing}
GROUP: dict[str, GroupRenderer] = {defaults.GROUP: group}
