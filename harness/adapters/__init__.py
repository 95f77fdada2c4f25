"""Adapters shipped with the harness.

- `reference` (`presence_conformance.harness.adapters.reference.ReferenceAdapter`): the in-process reference service,
  every feature, the embedded default.

Adapters are found by name through the `presence_conformance.adapters` entry-point group
(`presence_conformance.harness.adapters.registry`); nothing here is imported eagerly, so an adapter's dependencies are only
needed when it is used.
"""
