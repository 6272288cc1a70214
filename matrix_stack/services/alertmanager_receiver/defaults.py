"""Default templates (Jinja2). FIRING is metio's README firing-template re-expressed line for line
(Go `{{ if .X }}` -> `{% if X %}`, `$color := ...` -> `{% set color = ... %}`, `| ToUpper` kept,
`href="{{ x }}"` -> `href="{{ x | url }}"`), so the same payload gives the same message.
RESOLVED is the same template: metio falls back to the firing template when resolved-template is
empty, and that template already turns green for resolved alerts. GROUP is ours: one message for a
whole notification group.
"""

FIRING = (
    ' {% set color = "yellow" %} {% if Alert.Labels.severity == "warning" %} {% set color = "orange" %}'
    ' {% elif Alert.Labels.severity == "critical" %} {% set color = "red" %} {% endif %}'
    ' {% if Alert.Status == "resolved" %} {% set color = "green" %} {% endif %}'
    ' <p> <strong><font color="{{ color }}">{{ Alert.Status | ToUpper }}</font></strong>'
    " {% if Alert.Labels.name %} {{ Alert.Labels.name }} {% elif Alert.Labels.alertname %}"
    " {{ Alert.Labels.alertname }} {% endif %} >>"
    " {% if Alert.Labels.severity %} {{ Alert.Labels.severity | ToUpper }}: {% endif %}"
    " {% if Alert.Annotations.description %} {{ Alert.Annotations.description }}"
    " {% elif Alert.Annotations.summary %} {{ Alert.Annotations.summary }} {% endif %} >>"
    ' {% if Alert.Annotations.runbook %} <a href="{{ Alert.Annotations.runbook | url }}">Runbook</a> | {% endif %}'
    ' {% if Alert.Annotations.dashboard %} <a href="{{ Alert.Annotations.dashboard | url }}">Dashboard</a> |'
    ' {% endif %} <a href="{{ SilenceURL | url }}">Silence</a> </p>'
)
RESOLVED = FIRING

GROUP = (
    '{% set firing = Alerts | selectattr("Status", "equalto", "firing") | list %}'
    '{% set colour = "green" if Status == "resolved" else "red" if CommonLabels.severity == "critical"'
    ' else "orange" if CommonLabels.severity == "warning" else "yellow" %}'
    '<p><strong><font color="{{ colour }}">{{ Status | ToUpper }}'
    '{% if Status == "firing" %}:{{ firing | length }}{% endif %}</font></strong>'
    " {{ GroupLabels.values() | join(' ') }}"
    "{% if CommonLabels.severity %} ({{ CommonLabels.severity | ToUpper }}){% endif %}</p>"
    "<ul>{% for alert in Alerts %}<li>"
    '{{ "🔴" if alert.Status == "firing" else "✅" }}'
    " <strong>{{ alert.Labels.name or alert.Labels.alertname }}</strong>"
    "{% if alert.Labels.instance %} on <code>{{ alert.Labels.instance }}</code>{% endif %}"
    "{% set text = alert.Annotations.description or alert.Annotations.summary %}{% if text %}: {{ text }}{% endif %}"
    '{% if alert.Annotations.runbook %} · <a href="{{ alert.Annotations.runbook | url }}">Runbook</a>{% endif %}'
    '{% if alert.Annotations.dashboard %} · <a href="{{ alert.Annotations.dashboard | url }}">Dashboard</a>{% endif %}'
    '{% if alert.GeneratorURL %} · <a href="{{ alert.GeneratorURL | url }}">Source</a>{% endif %}'
    '{% if alert.Status == "firing" and alert.SilenceURL %} · <a href="{{ alert.SilenceURL | url }}">Silence</a>'
    "{% endif %}</li>{% endfor %}</ul>"
    "{% if TruncatedAlerts %}<p>… and {{ TruncatedAlerts }} more alerts not sent by Alertmanager</p>{% endif %}"
)
