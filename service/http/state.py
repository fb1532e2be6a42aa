"""What the running app holds: settings, the model and its queue, metrics, and its lifecycle flags."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from service.batching.handle import ModelHandle
from service.metrics import RequestMetrics
from service.settings import Settings
from service.tracing import Tracing


@dataclass
class ServiceState:
    settings: Settings
    model: ModelHandle  # in this process, or in the model process (RELIGHT_WORKERS > 1)
    metrics: RequestMetrics
    registry: CollectorRegistry  # what /metrics shows from the HTTP side (all workers' requests)
    tracing: Tracing  # the spans of each request (service.tracing)
    draining: bool = False  # SIGTERM received: finish what was accepted, refuse the rest
    in_flight: int = 0  # /relight requests accepted and not yet answered

    @property
    def ready(self) -> bool:
        """Weights loaded and every warm-up shape run."""
        return self.model.ready


def get_state(request: Request) -> ServiceState:
    """FastAPI dependency: the app's state (tests build apps around their own engines)."""
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]
