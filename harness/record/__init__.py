"""What a case observed: the per-case record, the Jepsen-style history, and the matching of
observed events to the reference model's deliveries.

The run layer writes here; the checks read from here. Nothing in this package judges.
"""
