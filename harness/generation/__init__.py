"""Generated presence programs: Hypothesis draws action programs as scenario documents, the
runner runs them like any scenario, and a failure is shrunk and saved as a replayable scenario
file.

    from presence_conformance.harness.generation import GenerationOptions, run_generation
    result = run_generation(session, GenerationOptions(profile="ci"))
    result.case                  # a CaseResult of kind "generated" for the reports
    result.failure.path          # failures/<adapter>-<requirement>-<hash>.yaml, if one failed
    result.failure.replay        # presence-conformance replay failures/... --adapter NAME

Modules: `strategies` (the programs), `profiles` (ci, dev, thorough), `engine` (search, shrink,
save, confirm), `cli` (`presence-conformance generate`), `pytest_items` (the `generated/<profile>`
test item of the pytest plugin).
"""

from presence_conformance.harness.generation.engine import (
    DEFAULT_FAILURES_DIR,
    GeneratedFailure,
    GenerationOptions,
    GenerationResult,
    is_detection,
    run_generation,
    save_failure,
)
from presence_conformance.harness.generation.profiles import (
    PROFILES,
    Profile,
    hypothesis_settings,
    profile,
)
from presence_conformance.harness.generation.strategies import (
    GENERATED_REQUIREMENTS,
    GenerationConfig,
    compile_program,
    member_data,
    programs,
)

__all__ = [
    "DEFAULT_FAILURES_DIR",
    "GENERATED_REQUIREMENTS",
    "PROFILES",
    "GeneratedFailure",
    "GenerationConfig",
    "GenerationOptions",
    "GenerationResult",
    "Profile",
    "compile_program",
    "hypothesis_settings",
    "is_detection",
    "member_data",
    "profile",
    "programs",
    "run_generation",
    "save_failure",
]
