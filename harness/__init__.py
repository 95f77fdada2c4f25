"""presence-conformance harness: adapters, scenarios, runner, checks, generation, reports, CLI.

The flow runs one way (ARCHITECTURE.md in the source repository):
scenario file or generated program -> runner -> adapter -> implementation under test;
the runner records a history; checks judge it against the reference model; results feed reports.
"""
