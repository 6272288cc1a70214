"""matrix-stack: the runtime package.

- `matrix_stack.shared`: the core every service uses, one subpackage per concept, layered (each may
  import only those below it): `bridge` (a Matrix bridge: settings, client + outbox as one component),
  `outbox` (the durable exactly-once outbox and its stores), `matrix` (the Matrix client layer:
  client, content, HTML, sessions), `kit` (settings, app, server, middleware, metrics, logs, errors);
  `route` (`route explain`: helm and the real Envoy) stands apart. The layers are import-linter
  contracts in pyproject.toml (`make lint`).
- `matrix_stack.services`: one package per service.
- `matrix_stack.cli`: the `matrix-stack` command.
- `matrix_stack/charts` in the wheel: the repository's `charts/`, package data for `route explain`.

The harness (`devstack`), the tests and the benchmarks live in the checkout, never in the wheel.
"""
