"""Running a scenario against an adapter: settings, the case driver and its step families, the
model's view of listeners, and `run_scenario` / `run_scenarios`.

The driver drives the adapter and the reference model side by side and records what happened
(`presence_conformance.harness.record`); the checks judge the record afterwards.
"""
