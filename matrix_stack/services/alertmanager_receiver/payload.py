"""The Alertmanager webhook payload (version 4) and the data the templates see."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from matrix_stack.services.alertmanager_receiver.config import ComputedValue, TemplatingConfig
from matrix_stack.services.alertmanager_receiver.filters import percent_encode


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # Alertmanager's field names
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    receiver: str = ""
    status: str
    alerts: list[Alert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    version: str = "4"
    groupKey: str = ""
    truncatedAlerts: int = 0


def silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """metio's silence link, byte for byte: sorted `k="v"` filters, Go QueryEscape, `+` as %20."""
    if not external_url:
        return ""
    base = external_url.removesuffix("/")
    if not labels:
        return f"{base}/#/silences/new"
    return f"{base}/#/silences/new?filter={silence_filter(labels)}"


def silence_filter(labels: Mapping[str, str]) -> str:
    """The link's filter: sorted `k="v"` matchers, percent-encoded."""
    filters = sorted(f'{key}="{value}"' for key, value in labels.items())
    return percent_encode("{" + ", ".join(filters) + "}")  # = QueryEscape with spaces as %20


def computed_values(rules: list[ComputedValue], alert: Alert) -> dict[str, str]:
    """Every matching rule's values, top to bottom, later ones winning."""
    merged: dict[str, str] = {}
    for rule in rules:
        if not rule.values:
            continue
        if any(alert.labels.get(k) != v for k, v in rule.when_matching_labels.items()):
            continue
        if any(alert.annotations.get(k) != v for k, v in rule.when_matching_annotations.items()):
            continue
        if rule.when_matching_status and rule.when_matching_status != alert.status:
            continue
        merged.update(rule.values)
    return merged


def _alert(alert: Alert, external_url: str, templating: TemplatingConfig) -> dict[str, Any]:
    return {
        "Status": alert.status,
        "Labels": alert.labels,
        "Annotations": alert.annotations,
        "StartsAt": alert.startsAt,
        "EndsAt": alert.endsAt,
        "GeneratorURL": templating.generator_url_mapping.get(alert.generatorURL, alert.generatorURL),
        "Fingerprint": alert.fingerprint,
        "SilenceURL": silence_url(external_url, alert.labels),
        "ComputedValues": computed_values(templating.computed_values, alert),
    }


def alert_data(notification: Notification, alert: Alert, templating: TemplatingConfig) -> dict[str, Any]:
    """What metio's templates see for one alert (same names, without the leading dot)."""
    external = templating.external_url_mapping.get(notification.externalURL, notification.externalURL)
    entry = _alert(alert, external, templating)
    return {
        "Alert": {**entry, "GeneratorURL": alert.generatorURL},  # raw in .Alert, mapped at the top
        "GroupLabels": notification.groupLabels,
        "CommonLabels": notification.commonLabels,
        "CommonAnnotations": notification.commonAnnotations,
        "ExternalURL": external,
        "GeneratorURL": entry["GeneratorURL"],
        "SilenceURL": entry["SilenceURL"],
        "ComputedValues": entry["ComputedValues"],
    }


def group_data(notification: Notification, templating: TemplatingConfig) -> dict[str, Any]:
    """The whole notification, for the group template."""
    external = templating.external_url_mapping.get(notification.externalURL, notification.externalURL)
    return {
        "Status": notification.status,
        "Receiver": notification.receiver,
        "Alerts": [_alert(alert, external, templating) for alert in notification.alerts],
        "GroupLabels": notification.groupLabels,
        "CommonLabels": notification.commonLabels,
        "CommonAnnotations": notification.commonAnnotations,
        "ExternalURL": external,
        "GroupKey": notification.groupKey,
        "TruncatedAlerts": notification.truncatedAlerts,
    }
