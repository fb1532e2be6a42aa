"""What the running app holds: settings, engine, batcher, metrics, and its lifecycle flags."""

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from service.batcher import Batcher
from service.engine import Engine
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    metrics: Metrics
    batcher: Batcher | None = None
    ready: bool = False  # weights loaded and every warm-up shape run
    draining: bool = False  # SIGTERM received: finish what was accepted, refuse the rest
    in_flight: int = 0  # /relight requests accepted and not yet answered
    warmup_error: str | None = field(default=None)

    @property
    def accepting(self) -> bool:
        return self.ready and not self.draining


def get_state(request: Request) -> ServiceState:
    """FastAPI dependency: the app's state (tests build apps around their own engines)."""
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]
