"""Kubernetes label selectors and the pod templates of rendered charts, for the NetworkPolicy tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions, ANDed) selects these labels; the
    empty selector selects everything, as in a NetworkPolicy's podSelector."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator not in OPERATORS:
            raise ValueError(f"unknown operator {operator!r}")
        if (operator in ("In", "NotIn")) != bool(values):
            raise ValueError(f"{operator} takes values only with In and NotIn, and needs them there")
        if operator == "In":
            found = key in labels and labels[key] in values
        elif operator == "NotIn":
            found = key not in labels or labels[key] not in values
        elif operator == "Exists":
            found = key in labels
        else:
            found = key not in labels
        if not found:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    """A rendered pod template: the workload it belongs to, its labels, its containers' ports."""

    workload: str
    labels: dict[str, str]
    ports: frozenset[int] = field(default_factory=frozenset)
    port_names: frozenset[str] = field(default_factory=frozenset)

    def has_port(self, port: int | str) -> bool:
        return port in self.port_names if isinstance(port, str) else port in self.ports


def pod_template(document: dict[str, Any]) -> dict[str, Any] | None:
    kind = document["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        template: dict[str, Any] = document["spec"]["template"]
        return template
    if kind == "CronJob":
        template = document["spec"]["jobTemplate"]["spec"]["template"]
        return template
    return None


def pods(documents: list[dict[str, Any]]) -> list[Pod]:
    found = []
    for document in documents:
        template = pod_template(document)
        if template is None:
            continue
        spec = template["spec"]
        containers = spec["containers"] + spec.get("initContainers", [])
        ports = [port for container in containers for port in container.get("ports", [])]
        found.append(
            Pod(
                workload=f"{document['kind']}/{document['metadata']['name']}",
                labels=template["metadata"]["labels"],
                ports=frozenset(port["containerPort"] for port in ports),
                port_names=frozenset(port["name"] for port in ports if "name" in port),
            )
        )
    return found


def selected(selector: dict[str, Any], candidates: list[Pod]) -> list[Pod]:
    return [pod for pod in candidates if matches(selector, pod.labels)]


def same_namespace(peer: dict[str, Any]) -> bool:
    """A peer naming pods of the policy's own namespace (a podSelector alone)."""
    return "podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer
