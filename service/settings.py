"""Service configuration from RELIGHT_* environment variables (pydantic-settings)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.weights import SHIPPED_WEIGHTS
from service.tracing import missing_packages


class Settings(BaseSettings):
    """The service's configuration, read from RELIGHT_* environment variables when constructed (pydantic-settings,
    names in any case: RELIGHT_MAX_QUEUE sets max_queue); frozen once built. Units are in the names (_bytes, _s,
    _ms) or the descriptions; image and tile sizes are in pixels.

    Raises pydantic.ValidationError (a ValueError) for a value that does not parse or is out of its bounds
    (ge/le/pattern), tile_overlap above half of tile_size, a tile larger than max_batch_pixels, or tracing
    without its extra; relight-serve turns it into one line and exit status 1. docs/configuration.md's table
    lists every field and its default, and tests/test_configuration_table.py checks the two against each other:
    a field added here goes there too.
    """

    model_config = SettingsConfigDict(env_prefix="RELIGHT_", frozen=True)

    weights: Path = Field(SHIPPED_WEIGHTS, description="relight weight file (safetensors)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="auto: bfloat16 where the device runs it fast (CUDA GPUs with bf16, AVX512-BF16/AMX CPUs), "
        "float16 on older GPUs, else float32",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        description="torch.compile the warmed shapes in warm-up; auto: on for CPUs with fast bf16 and a C++ compiler",
    )
    max_batch_size: int = Field(8, ge=1, le=256)  # images or tiles per forward pass; max_batch_pixels may bind first
    max_batch_pixels: int = Field(
        4 * 1024 * 1024, ge=1, description="pixels per forward pass (images or tiles of one shape); bounds its memory"
    )
    tile_size: int = Field(
        1088, ge=64, multiple_of=16, description="images with a side above this are relit in overlapping tiles"
    )
    tile_overlap: int = Field(64, ge=1, description="pixels two neighbouring tiles share, blended with ramps")
    warmup_tile: bool = Field(
        True, description="also warm up the tile shape, so that the first big image does not build its kernels"
    )
    max_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits for more same-size images")
    max_queue: int = Field(64, ge=1, description="images waiting for the model; beyond this: 503")
    request_timeout_s: float = Field(60.0, gt=0, description="end-to-end deadline; beyond it: 504")
    # Bytes of request body (413 beyond), and of file plus decompressed metadata (service.codecs.imaging).
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_pixels: int = Field(4096 * 4096, ge=1, description="width x height, checked from the header before decoding")
    upload_timeout_s: float = Field(30.0, gt=0, description="time allowed to receive a request body; beyond it: 408")
    header_timeout_s: float = Field(
        10.0, gt=0, description="time to receive the headers (service.http.header_deadline); beyond it: 408"
    )
    warmup: str = Field(
        "512x512,1024x1024", description="comma-separated WxH shapes run once at startup; empty for none"
    )
    warmup_budget_s: float = Field(
        30.0,
        ge=0,
        description="estimated compute seconds warm-up may spend after timing its first shape (the other shapes at "
        "batch 1, then the larger batches): bounds readiness where a forward pass is slow (fp32 on AVX2-only CPUs)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP processes that parse, decode and encode uploads; above 1 the model and its one queue run "
        "in a process of their own, fed through shared memory (/dev/shm)",
    )
    drain_timeout_s: float = Field(60.0, ge=0, description="on SIGTERM, how long to finish accepted requests")
    admin_reload: bool = Field(
        False,
        description="serve POST /admin/reload (swap to a weight file in RELIGHT_WEIGHTS's folder; needs X-API-Key "
        "where RELIGHT_API_KEY is set); SIGHUP swaps whatever this is",
    )
    swap_unload_first: bool = Field(
        False,
        description="a weights swap frees the live copy first and pauses serving while the new one loads and warms "
        "(for a GPU that cannot hold two copies); default: the new copy loads beside the live one, no pause",
    )
    api_key: str | None = Field(None, description="if set, /relight (and /metrics if protected) need X-API-Key")
    protect_metrics: bool = Field(False, description="require the API key on /metrics too")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS; empty: CORS off")
    tracing: bool = Field(
        False,
        description="OpenTelemetry spans of each request, exported by OTLP/HTTP as the standard OTEL_* variables say "
        "(the `tracing` extra; service.tracing, docs/tracing.md)",
    )
    host: str = "127.0.0.1"  # address relight-serve listens on; its --host wins
    port: int = Field(8000, ge=0, le=65535)  # TCP port relight-serve listens on (0: any free one); its --port wins
    pid_file: Path | None = Field(
        None,
        description="relight-serve writes its process id here at start and removes it at exit: the process to "
        "send SIGHUP (a new weight file) or SIGTERM (drain), however many servers the machine runs; it will not "
        "start on the file of a server still running",
    )

    @field_validator("pid_file", mode="before")
    @classmethod
    def no_pid_file_when_empty(cls, value: object) -> object:
        """`RELIGHT_PID_FILE=` (an env file's way of leaving it unset) is no pid file, not the current folder."""
        return None if value == "" else value

    @field_validator("tracing")
    @classmethod
    def tracing_installed(cls, wanted: bool) -> bool:
        """Refused here, before any process starts: an HTTP worker that failed on it would be restarted forever."""
        if wanted and (missing := missing_packages()):
            raise ValueError(f"tracing needs the `tracing` extra (pip install 'relight[tracing]'); missing {missing}")
        return wanted

    @model_validator(mode="after")
    def tiles_fit(self):
        if self.tile_overlap > self.tile_size // 2:
            raise ValueError(f"tile_overlap {self.tile_overlap} is more than half of tile_size {self.tile_size}")
        if self.tile_size * self.tile_size > self.max_batch_pixels:
            raise ValueError(f"one {self.tile_size}x{self.tile_size} tile exceeds max_batch_pixels")
        return self

    def warmup_shapes(self) -> list[tuple[int, int]]:
        """(height, width) pairs from 'WxH,WxH', then the tile shape when warmup_tile is on."""
        shapes = []
        for item in filter(None, (part.strip() for part in self.warmup.split(","))):
            width, height = (int(side) for side in item.lower().split("x"))
            shapes.append((height, width))
        if self.warmup_tile and (self.tile_size, self.tile_size) not in shapes:
            shapes.append((self.tile_size, self.tile_size))
        return shapes
