"""Jinja2 (sandboxed) with Go html/template's escaping of every `{{ }}` output, metio's functions
(`ToUpper`, `ToLower`, `Replace`, `RegexReplace`) and a `url` filter for `href` values; the built-in
templates run as their compiled Python form (builtin.py), which writes the plain-text body too."""

from __future__ import annotations

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from matrix_stack.services.alertmanager_receiver import builtin
from matrix_stack.services.alertmanager_receiver.builtin import Rendered
from matrix_stack.services.alertmanager_receiver.config import TemplatingConfig
from matrix_stack.services.alertmanager_receiver.filters import (
    go_escape,
    regex_replace,
    replace,
    to_lower,
    to_upper,
    url,
)
from matrix_stack.services.alertmanager_receiver.payload import Alert, Notification, alert_data, group_data


def environment(strict: bool = False) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,  # escaping is done by `finalize`, the Go way
        finalize=go_escape,
        undefined=StrictUndefined if strict else Undefined,
        keep_trailing_newline=True,
    )
    env.filters.update({"ToUpper": to_upper, "ToLower": to_lower, "Replace": replace,
                        "RegexReplace": regex_replace, "url": url})  # fmt: skip
    return env


class Templates:
    """The compiled templates; a syntax error fails at start-up with the template's name."""

    def __init__(self, templating: TemplatingConfig) -> None:
        self._templating = templating
        firing = templating.firing_template
        sources = {"firing-template": firing, "resolved-template": templating.resolved_template or firing}
        self._alert = {name: builtin.ALERT.get(source) for name, source in sources.items()}
        self._group = builtin.GROUP.get(templating.group_template)
        sources["group-template"] = templating.group_template
        env = environment()
        self._compiled = {}
        for name, source in sources.items():
            if self._alert.get(name) is not None or (name == "group-template" and self._group is not None):
                continue  # built in: compiled already
            try:
                self._compiled[name] = env.from_string(source)
            except TemplateError as exc:
                raise ValueError(f"templating.{name}: {exc}") from exc

    def alert(self, notification: Notification, alert: Alert) -> Rendered:
        """One alert's message (alert mode): the resolved template for a resolved alert."""
        name = "resolved-template" if alert.status == "resolved" else "firing-template"
        compiled = self._alert[name]
        if compiled is not None:
            return compiled(notification, alert, self._templating)
        return self._render(name, alert_data(notification, alert, self._templating))

    def group(self, notification: Notification) -> Rendered:
        """The whole notification's message (group mode)."""
        if self._group is not None:
            return self._group(notification, self._templating)
        return self._render("group-template", group_data(notification, self._templating))

    def _render(self, name: str, data: dict[str, object]) -> Rendered:
        return Rendered(str(self._compiled[name].render(**data)).strip())
