"""pytest configuration: hypothesis profiles (THERMOSSL_HYPOTHESIS_PROFILE=thorough for a long run).

Tests import the *installed* thermossl (pytest runs with --import-mode=importlib and the package
source lives under python/, which is never on sys.path).
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("THERMOSSL_HYPOTHESIS_PROFILE", "default"))
