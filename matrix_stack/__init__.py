"""matrix-stack: the one import namespace of the distribution.

The repository keeps its folders at the top (`shared/`, `services/`, `charts/`, `devstack/`); the
links in this directory give them their import names, so an editable install and the wheel import
the same modules:

- `matrix_stack.core`: the core every service uses (`shared/`)
- `matrix_stack.services`: one package per service (`services/`)
- `matrix_stack.charts`: the Helm charts, package data (`charts/`)
- `matrix_stack.devstack`: the local stack and test harness (`devstack/`); development only, not in
  the wheel
"""
