"""A module of odd constants, imported by a generation test half-way: Hypothesis collects the
constants of local modules and draws them now and then; generation must not (a seed is a seed).
"""

CONSTANTS = (
    "alice-constant-probe",
    "Ω-probe",
    987654321,
    -123456789,
    3.14159265,
    b"\x01probe",
    "bob-constant-probe",
    424242,
)
