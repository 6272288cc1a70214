"""The built-in templates' compiled form against their Jinja2 source: HTML equal to `sanitize` of what
the source writes, byte for byte, and a plain-text body equal to `html_to_text` of that, for every
sample and for generated payloads (markup, entities, line endings, NUL, links good and bad, missing
fields)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matrix_stack.services.alertmanager_receiver import builtin, defaults
from matrix_stack.services.alertmanager_receiver.config import TemplatingConfig
from matrix_stack.services.alertmanager_receiver.payload import Notification, alert_data, group_data
from matrix_stack.services.alertmanager_receiver.templates import Templates, environment
from matrix_stack.shared.matrix.html import html_to_text, sanitize
from tests.unit.inprocess import DATA

SAMPLES = sorted((DATA / "alertmanager").glob("am_*.json"))
MAPPED = TemplatingConfig.model_validate({
    "external-url-mapping": {"alertmanager:9093": "https://am.example.com"},
    "generator-url-mapping": {"http://prometheus:9090/graph": "https://prom.example.com/graph"},
})  # fmt: skip
JINJA = {name: environment().from_string(source) for name, source in (("alert", defaults.FIRING),
                                                                      ("group", defaults.GROUP))}  # fmt: skip


def check(notification: Notification, templating: TemplatingConfig) -> None:
    group = builtin.group(notification, templating)
    expected = sanitize(str(JINJA["group"].render(**group_data(notification, templating))).strip())
    assert (group.html, group.sanitized) == (expected, True)
    assert group.text == html_to_text(expected)
    for alert in notification.alerts:
        one = builtin.firing(notification, alert, templating)
        expected = sanitize(str(JINJA["alert"].render(**alert_data(notification, alert, templating))).strip())
        assert (one.html, one.sanitized) == (expected, True)
        assert one.text == html_to_text(expected)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
@pytest.mark.parametrize("templating", [TemplatingConfig(), MAPPED], ids=["plain", "mapped"])
def test_samples_render_as_their_jinja_source(sample: Any, templating: TemplatingConfig) -> None:
    check(Notification.model_validate_json(sample.read_bytes()), templating)


def test_only_the_exact_builtin_sources_are_compiled() -> None:
    notification = Notification.model_validate_json(SAMPLES[0].read_bytes())
    assert Templates(TemplatingConfig()).group(notification).text is not None
    custom = TemplatingConfig(group_template=defaults.GROUP + " ", firing_template=defaults.FIRING + " ")
    assert Templates(custom).group(notification).text is None
    assert Templates(custom).alert(notification, notification.alerts[0]).text is None


_piece = st.sampled_from(["<b>x</b>", "<script>", "&", "&amp;", "&lt;", "&#34;", '"', "'", "+", "\r", "\r\n",
                          "\n", "\n\n\n", " ", "\t", "\0", "\x0c", "\xa0", "\ufeff", "ß", "🔥", "warning",
                          "critical", "firing", "resolved", "http://", "https://a.example/x?y=1&z=2",
                          "javascript:alert(1)", "mailto:a@b", "http://exa mple/", "http://[bad", "#", "%",
                          "é"])  # fmt: skip
_value = st.lists(_piece | st.text(max_size=4), max_size=6).map("".join)
_labels = st.dictionaries(st.sampled_from(["alertname", "name", "instance", "severity", "job"]), _value,
                          max_size=5)  # fmt: skip
_annotations = st.dictionaries(st.sampled_from(["description", "summary", "runbook", "dashboard"]), _value,
                               max_size=4)  # fmt: skip
_alert = st.fixed_dictionaries({
    "status": st.sampled_from(["firing", "resolved"]) | _value, "labels": _labels, "annotations": _annotations,
    "generatorURL": st.sampled_from(["", "http://prometheus:9090/graph"]) | _value, "fingerprint": _value,
})  # fmt: skip
_notification = st.fixed_dictionaries({
    "status": st.sampled_from(["firing", "resolved"]) | _value, "alerts": st.lists(_alert, min_size=1, max_size=4),
    "groupLabels": _labels, "commonLabels": _labels,
    "externalURL": st.sampled_from(["", "alertmanager:9093", "http://am:9093/"]) | _value,
    "truncatedAlerts": st.integers(min_value=-1, max_value=3), "groupKey": _value,
})  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_notification)
def test_generated_payloads_render_as_their_jinja_source(payload: dict[str, Any]) -> None:
    check(Notification.model_validate_json(json.dumps(payload)), MAPPED)
