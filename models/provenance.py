"""Which library versions made an artefact (recorded in training reports and export metadata)."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

NOT_INSTALLED = "not installed"


def library_versions(distributions: Sequence[str]) -> dict[str, str]:
    """Python's version and each installed distribution's, keyed by distribution name.

    Args:
        distributions: package names as pip knows them, e.g. ``("lc2d-serve", "keras")``.

    Returns:
        ``{"python": "3.11.9", "lc2d-serve": "0.1.0", ...}``; ``"not installed"`` for a missing one.
    """
    versions = {"python": platform.python_version()}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions
