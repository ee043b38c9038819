"""The tests run against the installed package, not the source tree."""
from __future__ import annotations

from pathlib import Path

import thermossl

REPO = Path(__file__).resolve().parents[1]


def test_imported_from_installation_not_source_tree():
    location = Path(thermossl.__file__).resolve()
    assert REPO / "python" not in location.parents, f"thermossl imported from the source tree: {location}"
    assert Path(thermossl._core.__file__).resolve().parent == location.parent


def test_version_and_public_api():
    assert thermossl.__version__ != "0+unknown"
    for name in thermossl.__all__:
        assert hasattr(thermossl, name), name
