"""Sentry webhook payloads to Matrix messages: pure functions, every value escaped.

Each resource becomes one `Notice`: what happened, level, title, culprit, project, environment,
release, selected tags, assignee and a link to Sentry, plus the keys routing and threading need.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from matrix_stack.shared.matrix.html import escape
from matrix_stack.shared.matrix.links import safe_href

LEVEL_GLYPHS = {"fatal": "🔴", "error": "🔴", "warning": "🟠", "info": "🔵", "debug": "⚪", "sample": "⚪"}
METRIC_GLYPHS = {"critical": "🔴", "warning": "🟠", "resolved": "✅"}
_API_PROJECT = re.compile(r"/api/0/projects/(?P<org>[^/]+)/(?P<project>[^/]+)/")
MAX_FIELD = 500  # characters of any one value shown; keeps events far below 64 KiB


@dataclass
class Notice:
    """A rendered notification and what routing, filtering and threading need to know."""

    body: str
    html: str
    projects: list[str] = field(default_factory=list)  # slugs and/or ids, most specific first
    environment: str | None = None
    level: str | None = None
    issue_id: str | None = None
    short_id: str | None = None
    rule: str | None = None
    starts_thread: bool = False  # the first message about an issue
    resolves: bool = False  # the issue is resolved: its thread root is kept a while, then forgotten


class Ignored(Exception):
    """A resource or action that is acknowledged but not posted."""


def text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = str(value)
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _link(url: str, label: str) -> str:
    if safe_href(url):
        return f'<a href="{escape(url)}">{escape(label)}</a>'
    return escape(label)


@dataclass
class _Lines:
    """Builds the plain and HTML renderings side by side."""

    text: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def add(self, text: str, html: str | None = None) -> None:
        if text:
            self.text.append(text)
            self.html.append(html if html is not None else escape(text))

    def details(self, pairs: Iterable[tuple[str, str]]) -> None:
        shown = [(k, v) for k, v in pairs if v]
        if shown:
            self.add(
                " · ".join(f"{k}: {v}" for k, v in shown),
                " · ".join(f"<strong>{escape(k)}</strong>: {escape(v)}" for k, v in shown),
            )

    def notice(self, **keys: Any) -> Notice:
        return Notice("\n".join(self.text), "<br>".join(self.html), **keys)


def _headline(lines: _Lines, glyph: str, what: str, title: str, url: str, level: str = "") -> None:
    label = f"[{level.upper()}] " if level else ""
    plain = f"{glyph} {label}{what}: {title}"
    html = f"{glyph} <strong>{escape(label + what)}</strong>: {_link(url, title)}"
    lines.add(plain, html)


def _tags(event: Mapping[str, Any]) -> dict[str, str]:
    """The event's tags, given as [key, value] pairs or {key, value} objects."""
    tags: dict[str, str] = {}
    for pair in event.get("tags") or []:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            tags[text(pair[0])] = text(pair[1])
        elif isinstance(pair, dict):
            tags[text(pair.get("key"))] = text(pair.get("value"))
    return tags


def _frame(event: Mapping[str, Any]) -> str:
    """Where it happened: the innermost in-app frame (frames run oldest to newest)."""
    values = mapping(event.get("exception")).get("values") or []
    for exception in reversed([v for v in values if isinstance(v, dict)]):
        frames = [
            f for f in (mapping(exception.get("stacktrace")).get("frames") or []) if isinstance(f, dict)
        ]
        chosen = next((f for f in reversed(frames) if f.get("in_app")), frames[-1] if frames else None)
        if chosen:
            where = text(chosen.get("filename")) or text(chosen.get("abs_path")) or text(chosen.get("module"))
            line = f":{chosen['lineno']}" if isinstance(chosen.get("lineno"), int) else ""
            function = f" in {text(chosen.get('function'))}" if chosen.get("function") else ""
            return f"{where}{line}{function}" if where else ""
    return ""


def event_projects(event: Mapping[str, Any]) -> list[str]:
    """Project slug (from the event's API URL) and id."""
    found = []
    match = _API_PROJECT.search(text(event.get("url")))
    if match:
        found.append(match.group("project"))
    if event.get("project") is not None:
        found.append(text(event.get("project")))
    return found


def _environment(event: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    return text(event.get("environment")) or tags.get("environment", "")


def event_notice(
    event: Mapping[str, Any],
    what: str,
    tags: Iterable[str],
    rule: str = "",
    projects: list[str] | None = None,
) -> Notice:
    """event_alert.triggered, error.created and the legacy plugin's event."""
    level = text(event.get("level")) or "error"
    event_tags = _tags(event)
    environment = _environment(event, event_tags)
    projects = projects if projects is not None else event_projects(event)
    lines = _Lines()
    title = text(event.get("title")) or text(event.get("message")) or "(no title)"
    _headline(lines, LEVEL_GLYPHS.get(level, "🔴"), what, title, text(event.get("web_url")), level)
    culprit = text(event.get("culprit"))
    if culprit:
        lines.add(culprit, f"<code>{escape(culprit)}</code>")
    frame = _frame(event)
    if frame:
        lines.add(f"at {frame}", f"at <code>{escape(frame)}</code>")
    lines.details(
        [
            ("project", projects[0] if projects else ""),
            ("environment", environment),
            ("release", text(event.get("release"))),
        ]
    )
    lines.details(
        [
            (name, event_tags[name])
            for name in tags
            if event_tags.get(name) and name not in ("environment", "release")
        ]
    )
    if rule:
        lines.details([("rule", rule)])
    url = text(event.get("web_url"))
    if url:
        lines.text.append(url)
    issue_id = text(event.get("issue_id")) or None
    return lines.notice(
        projects=projects, environment=environment or None, level=level, issue_id=issue_id, starts_thread=True
    )


ISSUE_ACTIONS = {
    "created": ("🆕", "New issue"),
    "resolved": ("✅", "Resolved"),
    "assigned": ("👤", "Assigned"),
    "archived": ("💤", "Archived"),
    "ignored": ("💤", "Archived"),
    "unresolved": ("⚠️", "Unresolved"),
}


def issue_url(issue: Mapping[str, Any], sentry_url: str) -> str:
    url = text(issue.get("web_url")) or text(issue.get("permalink"))
    if not url and issue.get("id"):
        url = f"{sentry_url.rstrip('/')}/issues/{text(issue.get('id'))}/"
    return url


def issue_notice(action: str, data: Mapping[str, Any], actor: Mapping[str, Any], sentry_url: str) -> Notice:
    if action not in ISSUE_ACTIONS:
        raise Ignored(f"issue.{action}")
    issue = mapping(data.get("issue"))
    glyph, what = ISSUE_ACTIONS[action]
    level = text(issue.get("level"))
    project = mapping(issue.get("project"))
    short_id = text(issue.get("shortId"))
    title = text(issue.get("title")) or "(no title)"
    url = issue_url(issue, sentry_url)
    lines = _Lines()
    label = f"{what} {short_id}".strip()
    _headline(lines, glyph, label, title, url, level if action == "created" else "")
    culprit = text(issue.get("culprit"))
    if culprit:
        lines.add(culprit, f"<code>{escape(culprit)}</code>")
    who = text(actor.get("name")) if actor.get("type") == "user" else ""
    facts: list[tuple[str, str]] = [("project", text(project.get("slug")) or text(project.get("name")))]
    if action == "assigned":
        assignee = mapping(data.get("assignee"))
        kind = text(assignee.get("type"))
        name = text(assignee.get("name")) or text(assignee.get("email"))
        facts.append(("assignee", f"{name} ({kind})" if kind == "team" else name))
    if action == "resolved":
        facts.append(("resolution", text(data.get("resolution_type"))))
    if action in ("archived", "ignored"):
        facts.append(("until", text(issue.get("substatus")).replace("archived_", "").replace("_", " ")))
    if action == "unresolved" and issue.get("substatus"):
        facts.append(("status", text(issue.get("substatus"))))
    if action == "created":
        facts += [("events", text(issue.get("count"))), ("users", text(issue.get("userCount")))]
    if who:
        facts.append(("by", who))
    lines.details(facts)
    if url:
        lines.text.append(url)
    projects = [p for p in (text(project.get("slug")), text(project.get("id"))) if p]
    return lines.notice(
        projects=projects,
        level=level or None,
        issue_id=text(issue.get("id")) or None,
        short_id=short_id or None,
        starts_thread=action == "created",
        resolves=action == "resolved",
    )


def metric_alert_notice(action: str, data: Mapping[str, Any]) -> Notice:
    if action not in METRIC_GLYPHS:
        raise Ignored(f"metric_alert.{action}")
    incident = mapping(data.get("metric_alert"))
    rule = mapping(incident.get("alert_rule"))
    title = text(data.get("description_title")) or text(rule.get("name")) or text(incident.get("title"))
    lines = _Lines()
    _headline(lines, METRIC_GLYPHS[action], f"Metric alert {action}", title, text(data.get("web_url")))
    # The documented sample carries a literal backslash-n; show it as the line break it means.
    for line in text(data.get("description_text")).replace("\\n", "\n").splitlines():
        lines.add(line)
    projects = [text(p) for p in incident.get("projects") or rule.get("projects") or [] if text(p)]
    lines.details(
        [
            ("rule", text(rule.get("name"))),
            ("projects", ", ".join(projects)),
            ("environment", text(rule.get("environment"))),
        ]
    )
    if data.get("web_url"):
        lines.text.append(text(data.get("web_url")))
    return lines.notice(
        projects=projects,
        environment=text(rule.get("environment")) or None,
        level={"critical": "error", "warning": "warning"}.get(action, "info"),
        rule=text(rule.get("name")) or None,
    )


def comment_notice(action: str, data: Mapping[str, Any], actor: Mapping[str, Any], sentry_url: str) -> Notice:
    verbs = {"created": "commented", "updated": "edited a comment", "deleted": "deleted a comment"}
    if action not in verbs:
        raise Ignored(f"comment.{action}")
    who = text(actor.get("name")) or "someone"
    issue_id = text(data.get("issue_id"))
    url = f"{sentry_url.rstrip('/')}/issues/{issue_id}/" if issue_id else ""
    lines = _Lines()
    head = f"💬 {who} {verbs[action]} on issue {issue_id}"
    lines.add(head, f"💬 <strong>{escape(who)}</strong> {verbs[action]} on {_link(url, 'issue ' + issue_id)}")
    if action != "deleted" and data.get("comment"):
        comment = text(data.get("comment"))
        lines.add(comment, f"<blockquote>{escape(comment)}</blockquote>")
    return lines.notice(
        projects=[text(data.get("project_slug"))] if data.get("project_slug") else [],
        issue_id=issue_id or None,
    )


def legacy_notice(payload: Mapping[str, Any], tags: Iterable[str]) -> Notice:
    """The legacy "WebHooks" plugin body (flat, unsigned)."""
    event = mapping(payload.get("event"))
    level = text(payload.get("level")) or text(event.get("level")) or "error"
    merged = {
        **event,
        "web_url": text(payload.get("url")),
        "culprit": payload.get("culprit") or event.get("culprit"),
        "title": event.get("title") or payload.get("message"),
        "level": level,
    }
    rules = ", ".join(text(r) for r in payload.get("triggering_rules") or [] if text(r))
    slug = text(payload.get("project_slug")) or text(payload.get("project"))
    notice = event_notice(merged, "Sentry", tags, rules, projects=[slug] if slug else [])
    notice.issue_id = text(payload.get("id")) or None
    return notice


DEFAULT_TAGS = (
    "handled",
    "mechanism",
    "browser",
    "os",
    "runtime",
    "url",
    "user",
    "server_name",
    "transaction",
)
