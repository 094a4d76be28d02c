"""Joining a Ray cluster, or starting a local one, failing fast when an address does not answer.

``ray.init(address=...)`` retries an unreachable cluster for about half a minute and then raises
a long traceback. :func:`connect_ray` first opens a TCP connection to the address (a few seconds
at most) and turns every failure into one :class:`RayClusterUnreachableError` that says which
address was expected to answer and what happened. Used by ``lc2d score --engine ray`` and
``lc2d serve --ray``; imports Ray only when called.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from service.errors import RayClusterUnreachableError

PROBE_TIMEOUT_S = 5.0
# gRPC codes that only a Ray server knowing the method returns: a cluster with token
# authentication refuses our token-less question, which still proves it is there.
_ANSWERED_BY_RAY = ("UNAUTHENTICATED", "PERMISSION_DENIED")
_EXPECTED = "a running Ray cluster at host:port (GCS, default port 6379) or ray://host:port (client, 10001)"


def parse_ray_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``.

    Raises:
        RayClusterUnreachableError: the address has no host or no numeric port.
    """
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise RayClusterUnreachableError(f"--ray-address: expected {_EXPECTED}, received {address!r}",
                                         expected=_EXPECTED, received=address)
    return host, int(port)


def probe_ray_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Asks the address one question a Ray cluster answers, within ``timeout_s``.

    A TCP connection first (an unknown host or a closed port fails at once), then one gRPC call:
    the cluster id from the GCS (``host:port``) or a ping of the Ray client server
    (``ray://``). A port that accepts connections but is no Ray (a proxy, another server) fails
    the second step instead of making ``ray.init`` retry for half a minute.

    Raises:
        RayClusterUnreachableError: the address does not answer as a Ray cluster.
    """
    host, port = parse_ray_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
        _ask_ray(f"{host}:{port}", address.startswith("ray://"), timeout_s)
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else str(err)
        raise _unreachable(address, reason) from err
    except Exception as err:  # grpc.RpcError: a server that is not Ray, or a Ray that cannot answer
        code = getattr(err, "code", lambda: None)()
        if getattr(code, "name", None) in _ANSWERED_BY_RAY:
            return
        server = "client server" if address.startswith("ray://") else "GCS"
        status = getattr(code, "name", type(err).__name__)
        raise _unreachable(address, f"not a Ray {server}: {status}") from err


def _ask_ray(target: str, client: bool, timeout_s: float) -> None:
    import grpc

    with grpc.insecure_channel(target) as channel:
        if client:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

            ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)  # type: ignore[attr-defined]
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(ping, timeout=timeout_s)
        else:
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)  # type: ignore[attr-defined]


def _unreachable(address: str, reason: str) -> RayClusterUnreachableError:
    return RayClusterUnreachableError(
        f"--ray-address: expected {_EXPECTED}, received {address!r}, which does not answer ({reason})",
        expected=_EXPECTED, received=address)


def connect_ray(address: str | None, **local_options: Any) -> bool:
    """Joins ``address``, or starts a local instance when it is None; a running Ray is kept.

    Args:
        address: ``host:port``, ``ray://host:port``, ``"auto"`` (Ray's own discovery) or None.
        local_options: extra ``ray.init`` arguments for a local instance (``num_cpus``...).

    Returns:
        Whether this call started or joined Ray (the caller then shuts it down).

    Raises:
        RayClusterUnreachableError: the address does not answer.
    """
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "log_to_driver": False}
    if address is None:
        options.update({k: v for k, v in local_options.items() if v is not None})
    elif address != "auto":
        probe_ray_address(address)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, TimeoutError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _unreachable(str(address), reason) from err
    return True
