"""Service configuration from RELIGHT_* environment variables (pydantic-settings)."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.weights import SHIPPED_WEIGHTS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIGHT_", frozen=True)

    weights: Path = Field(SHIPPED_WEIGHTS, description="relight weight file (safetensors)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 where the device runs it fast (CUDA, AVX512-BF16/AMX CPUs), else float32"
    )
    max_batch_size: int = Field(8, ge=1, le=256)
    max_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits for more same-size images")
    max_queue: int = Field(64, ge=1, description="images waiting for the model; beyond this: 503")
    request_timeout_s: float = Field(60.0, gt=0, description="end-to-end deadline; beyond it: 504")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_pixels: int = Field(4096 * 4096, ge=1, description="width x height, checked from the header before decoding")
    upload_timeout_s: float = Field(30.0, gt=0, description="time allowed to receive a request body; beyond it: 408")
    warmup: str = Field(
        "512x512,1024x1024", description="comma-separated WxH shapes run once at startup; empty for none"
    )
    drain_timeout_s: float = Field(60.0, ge=0, description="on SIGTERM, how long to finish accepted requests")
    api_key: str | None = Field(None, description="if set, /relight (and /metrics if protected) need X-API-Key")
    protect_metrics: bool = Field(False, description="require the API key on /metrics too")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty: CORS off")
    host: str = "127.0.0.1"
    port: int = 8000

    def warmup_shapes(self) -> list[tuple[int, int]]:
        """(height, width) pairs from 'WxH,WxH'."""
        shapes = []
        for item in filter(None, (part.strip() for part in self.warmup.split(","))):
            width, height = (int(side) for side in item.lower().split("x"))
            shapes.append((height, width))
        return shapes
