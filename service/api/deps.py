"""Route dependencies: the data plane and the settings of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane import DataPlane


async def get_dataplane(request: Request) -> DataPlane:
    """The app's data plane (set by ``service.app.create_app``); async, so no thread hop."""
    return request.app.state.dataplane  # type: ignore[no-any-return]


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
