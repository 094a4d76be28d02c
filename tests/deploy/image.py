"""What the serving image runs, read from the Dockerfile and interpreted by the code itself.

The image's CMD is parsed by ``lc2d``'s own parser and turned into the :class:`ServeSettings`
``lc2d serve`` would run with (environment variables included), so the container, Compose and
Kubernetes files are checked against what the server really does, not against a copy of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tests.deploy import container_files as cf

HEALTH_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[^'\"\s]*)")


def cmd(stage: cf.Stage) -> list[str]:
    """The stage's exec-form CMD."""
    instruction = stage.last("CMD")
    assert instruction is not None, "the serving stage has no CMD"
    args = instruction.json_args()
    assert args is not None, (f"CMD must be exec form (a JSON array) so signals reach lc2d; "
                              f"got {instruction.value!r}")
    return args


def exposed_ports(stage: cf.Stage) -> list[int]:
    """The stage's ``EXPOSE`` ports in order (HTTP, then gRPC)."""
    expose = stage.last("EXPOSE")
    assert expose is not None, "the serving stage has no EXPOSE"
    return [int(port.split("/")[0]) for port in expose.value.split()]


def healthcheck_url(stage: cf.Stage) -> re.Match[str]:
    """The ``http://127.0.0.1:PORT/PATH`` of the stage's HEALTHCHECK (groups ``port``, ``path``)."""
    check = stage.last("HEALTHCHECK")
    assert check is not None, "the serving stage has no HEALTHCHECK"
    match = HEALTH_URL.search(check.value)
    assert match is not None, f"no http://127.0.0.1:PORT/PATH in HEALTHCHECK {check.value!r}"
    return match


def user_id(stage: cf.Stage) -> int:
    """The numeric uid of the stage's USER."""
    user = stage.last("USER")
    assert user is not None, "the serving stage has no USER"
    return int(user.value.split(":")[0])


def cli_args(argv: list[str]) -> Any:
    """``argv`` (starting with ``lc2d``) parsed by the CLI's own parser."""
    from lc2d.cli import build_parser

    assert argv[0] == "lc2d", f"expected the lc2d console script, received {argv[0]!r}"
    return build_parser().parse_args(argv[1:])


def serve_settings(argv: list[str], env: Mapping[str, str] | None = None) -> Any:
    """The ServeSettings ``lc2d serve`` builds from ``argv`` with exactly ``env``'s LC2D_* variables."""
    from lc2d.options import model_from_args
    from service.settings import ServeSettings

    args = cli_args(argv)
    assert args.verb == "serve"
    with _lc2d_environment(env or {}):
        return model_from_args(ServeSettings, args)


@contextmanager
def _lc2d_environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("LC2D_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("LC2D_")]:
            del os.environ[key]
        os.environ.update(saved)
