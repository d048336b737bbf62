"""Hypothesis profiles: `ci` (used by .ci/run) replays the same examples on every run, so a landing never depends on
luck; the default profile keeps exploring new examples on developers' machines."""

import os

from hypothesis import settings


settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
