"""alertmanager-receiver's pure parts: the silence link, its percent-encoding and the computed values (the service itself,
against a real Alertmanager and Synapse: tests/integration/test_alertmanager_receiver.py)."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from matrix_stack.services.alertmanager_receiver.config import ComputedValue
from matrix_stack.services.alertmanager_receiver.filters import percent_encode, url
from matrix_stack.services.alertmanager_receiver.payload import Alert, computed_values, silence_url


def test_silence_url_and_computed_values() -> None:
    assert silence_url("example.com/", {}) == "example.com/#/silences/new"
    assert silence_url("example.com/", {"something": "value", "else": "other", "more": "labels"}) == (
        "example.com/#/silences/new?filter=%7Belse%3D%22other%22%2C%20more%3D%22labels%22%2C%20something%3D%22value%22%7D"
    )
    assert silence_url("", {"a": "b"}) == ""
    rules = [ComputedValue(values={"color": "white"}),
             ComputedValue(values={"color": "orange"}, when_matching_labels={"severity": "warning"}),
             ComputedValue(values={"color": "limegreen", "x": "y"}, when_matching_status="resolved"),
             ComputedValue(values={}, when_matching_status="resolved")]  # fmt: skip
    assert computed_values(rules, Alert(status="firing", labels={"severity": "warning"})) == {
        "color": "orange"
    }
    assert computed_values(rules, Alert(status="resolved", labels={"severity": "warning"})) == {
        "color": "limegreen", "x": "y"}  # fmt: skip


@given(st.text(max_size=30))
def test_percent_encoding_is_urllibs(text: str) -> None:
    assert percent_encode(text) == quote(text, safe="")
    assert percent_encode(text) == quote_plus(text, safe="").replace("+", "%20")  # metio's QueryEscape
    link = f"https://{text}"
    assert url(link) == quote(link.strip(), safe="-._~!#$&*+,/:;=?@[]%")
