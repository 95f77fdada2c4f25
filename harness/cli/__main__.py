"""`python -m presence_conformance.harness.cli`: the same as the `presence-conformance` command."""

import sys

from presence_conformance.harness.cli import main

sys.exit(main())
