"""The `lc2d` command line: one verb per stage (train, import-legacy, export, serve, score, bench).

``__version__`` is the version of the installed ``lc2d-serve`` distribution (pyproject.toml is
its one source); the server's metadata, ``lc2d --version`` and the exporter's
``producer_version`` all read it from here.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lc2d-serve")
except _metadata.PackageNotFoundError:  # a checkout on sys.path that was never pip-installed
    __version__ = "0+unknown"
