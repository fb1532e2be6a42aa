"""Train DMSHN / Stacked DMSHN with the paper's two-stage recipe and write a relight weight file.

    python -m training.train --preset cpu                      # weights v1 from scratch, ~1 h on 2 AVX512-BF16 cores
    python -m training.train --preset v3 --data data/synth3   # weights v3: a warm restart, 256x256 crops
    python -m training.train --preset paper --data VIDIT_DIR   # the paper's settings
    torchrun --nproc_per_node=4 -m training.train --preset paper --data VIDIT_DIR
    python -m training.train --preset cpu --resume             # continue from OUT/checkpoint.pt, its own settings
    python -m training.train --preset v3 --compile on          # torch.compile the step (auto: where it wins)

Any field of TrainConfig can be overridden: --max_steps 100 --perceptual_weight 0 ... ("none" for an optional one).
--resume continues with the settings saved in the checkpoint, whatever the preset; of those, only how long it
runs and how often it validates and saves (RESUME_MAY_CHANGE) may be given again with other values.
Stage 1 (steps before stage2_step) minimises L2; stage 2 the combined loss
L1 - 5e-3 SSIM + 0.006 perceptual + 2e-8 TV. --loss l2 or --loss sobel keeps one loss
throughout (the paper's ablation).
"""

import argparse
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from model.allocator import reuse_freed_memory
from model.dmshn import ARCHITECTURES
from model.files import write_whole
from model.pixels import parse_value_range, to_network
from model.precision import compile_wanted, fast_autocast_dtype
from model.weights import STORAGE_DTYPES, WeightsError, load_weights, save_weights
from training.baselines import ColourTransfer
from training.data import DataError, RelightPairs, split_images
from training.evaluate import dark_pixels, evaluate, evaluation_table, format_table, network_method
from training.identity_init import colour_init_, identity_init_
from training.losses import CombinedLoss, CombinedSobelLoss, L2Loss
from training.vgg import VGG16Features, VGGWeightsMissing, find_vgg16_weights

LOSSES = ("two-stage", "l2", "sobel")
AMP_CHOICES = ("auto", "off", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "on", "off")


@dataclass
class TrainConfig:
    """Every setting of a training run, and the command line's source of truth: parse_args gives each field an
    option of its own name, --field_name (--max_steps 100, --stage2_step 0), also spelt with hyphens (--max-steps).
    A bool field takes --name or --no-name (--no-channels_last, --no-channels-last); an optional one (int | None,
    str | None) takes "none" in any case to set None (--crop none); the rest take one value of the field's
    type. Options given override the chosen preset (PRESETS; --preset cpu unless named), or with --resume the
    configuration saved in the checkpoint; a preset sets only some fields, and the rest keep these defaults.

    Units: steps are optimiser steps, batch_size pairs per step in each process (torchrun runs one per GPU),
    resize and crop sides in pixels. The configuration is saved in each checkpoint (OUT/checkpoint.pt), and a
    --resume may change only the fields in RESUME_MAY_CHANGE.

    Raises ConfigError when built with a value that cannot train: ema_decay outside [0, 1), max_steps below 0,
    batch_size, eval_every or checkpoint_every below 1, lr not a positive finite number, or loss, amp,
    compile, storage_dtype or architecture not one of its named choices, or a value_range that
    model.pixels.parse_value_range refuses.
    """

    data: str = "data/synth"  # track-1 layout: DATA/train and DATA/validation; "A,B" trains on both, validates on A
    out: str = "runs/cpu"
    architecture: str = "StackedDMSHN"
    value_range: str = "-0.5,0.5"  # the authors' ToTensor() - 0.5
    loss: str = "two-stage"  # two-stage | l2 | sobel
    max_steps: int = 6000
    stage2_step: int = 4000  # first step of stage 2 (two-stage only)
    batch_size: int = 2
    resize: int | None = None  # resize pairs to this square size before cropping
    crop: int | None = 256  # random crop side; None trains on whole (resized) images
    lr: float = 2e-3
    min_lr: float = 5e-5
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0: no clipping
    # Validate and save an exponential moving average of the weights (torch.optim.swa_utils), updated each step
    # with this decay (0: off; 0.998 averages over about 500 steps): at batch 2 the raw weights' black level and
    # PSNR swing between evaluations (weights v3 leg 2: blacks 2.8..13.2/255, PSNR 20.1..22.1 dB).
    ema_decay: float = 0.0
    l1_weight: float = 1.0
    l2_weight: float = 0.0  # stage 2 only; the paper's combined loss has no L2 term
    dark_weight: float = 0.0  # stage 2 only: L1 where the target is unlit (training/losses.py dark_l1)
    ssim_weight: float = -5e-3
    perceptual_weight: float = 0.006
    tv_weight: float = 2e-8
    sobel_weight: float = 1.0
    vgg_weights: str | None = None  # default: torchvision's cache file vgg16-397923af.pth
    amp: str = "auto"  # auto | off | bf16 | fp16
    channels_last: bool = True
    compile: str = "auto"  # auto | on | off: torch.compile the forward pass and loss (TrainingStep)
    init_weights: str | None = None  # start from a relight weight file (a warm restart) instead of an init below
    identity_init: bool = True  # start from weights that return the input (training/identity_init.py)
    colour_init: bool = True  # ...with the fitted global colour matrix (no offset: black stays black) in the last layer
    eval_every: int = 500
    eval_images: int = 0  # 0: the whole validation split
    checkpoint_every: int = 500
    storage_dtype: str = "float16"
    seed: int = 0
    num_workers: int = 0
    resume: bool = False

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:  # also refuses NaN; at 1.0 the average would stay at the first step
            raise ConfigError(f"ema_decay must be at least 0 and below 1, not {self.ema_decay}")
        if self.max_steps < 0:  # 0: no step, the start's evaluation only
            raise ConfigError(f"max_steps must be at least 0, not {self.max_steps}")
        for name in ("batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr must be a positive number, not {self.lr}")
        try:
            parse_value_range(self.value_range)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        # Named choices, checked before any work: a typo would otherwise train another loss and record the typo, or
        # fail with a traceback at the first save.
        choices = {"loss": LOSSES, "amp": AMP_CHOICES, "compile": COMPILE_CHOICES,
                   "storage_dtype": tuple(STORAGE_DTYPES), "architecture": tuple(ARCHITECTURES)}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")


class ConfigError(ValueError):
    """A TrainConfig that cannot train, or a --resume whose settings differ from its checkpoint's."""


# Settings a resumed run may change: how long it runs, how often it validates and saves, speed-only ones, and
# where its folder is now.
RESUME_MAY_CHANGE = frozenset(
    {"max_steps", "eval_every", "eval_images", "checkpoint_every", "num_workers", "compile", "resume", "out"}
)


PRESETS = {
    # 2500 epochs of VIDIT's 300 training pairs at batch 2 = 375,000 steps, the two stages halved.
    "paper": TrainConfig(
        out="runs/paper", resize=512, crop=None, max_steps=375_000, stage2_step=187_500, eval_every=5000,
        checkpoint_every=5000,
    ),
    # About an hour on a 2-core AVX512-BF16 CPU (1.5 s a step). VGG16 weights cannot be had on our
    # machines, so stage 2 runs without the perceptual term; 256 crops of 512 images keep the test-time scale.
    # With PyTorch's default init, lr 1e-3 diverged at the end of its warm-up here and 3e-4 sat near
    # the mean image for 400 steps. From the identity, 5e-4 lost structure (SSIM 0.83 -> 0.57 by
    # step 250) before learning colour; starting at the colour baseline, 2e-4 refines it.
    "cpu": TrainConfig(
        out="runs/cpu", max_steps=1600, stage2_step=1100, lr=2e-4, warmup_steps=100, grad_clip=1.0,
        perceptual_weight=0.0, eval_every=250, eval_images=10, checkpoint_every=100,
    ),
    # Weights v2: a warm restart from the shipped weights (the v1 weights when it first ran) on whole 512x512
    # images of both generators, stage 2 throughout. SSIM weighs 10x the paper's 5e-3: the v1 weights blurred
    # textures (SSIM below the identity's). weights/README.md lists the legs and overrides behind the v2 weights.
    "v2": TrainConfig(
        data="data/synth2,data/synth", out="runs/v2", init_weights="weights/stacked_dmshn.safetensors", crop=None,
        max_steps=900, stage2_step=0, lr=1e-4, warmup_steps=20, grad_clip=1.0, ssim_weight=-0.05,
        perceptual_weight=0.0, eval_every=200, eval_images=10, checkpoint_every=100,
    ),
    # Weights v3: a warm restart from the live weights on generator v3's physically rendered scenes (a point light;
    # black where it does not reach), in 256x256 crops of the 512x512 renders (the renders' scale kept): on an
    # AVX2-only CPU a crop step takes 9-10 s where a whole-image one takes 32 s, and 120 crop steps already took
    # real VIDIT renders from below doing nothing to above it (issue 31). The loss of the v2 weights' last leg,
    # L2 - 5e-3 SSIM with SSIM on [0, 1], plus L1 where the target is unlit, which L2 alone left at 10/255.
    # Eager: the compiled step measured 0.98x at 256x256, batch 2, on AVX2-only and AVX512-BF16 CPUs alike, after
    # 100 s of compiling (bench/RESULTS.md, "Training step").
    "v3": TrainConfig(
        data="data/synth3", out="runs/v3", init_weights="weights/stacked_dmshn.safetensors", crop=256,
        max_steps=3000, stage2_step=0, lr=1.5e-4, warmup_steps=20, grad_clip=1.0, l1_weight=0.0, l2_weight=1.0,
        ssim_weight=-0.005, dark_weight=0.5, perceptual_weight=0.0, eval_every=300, eval_images=10,
        checkpoint_every=50, compile="off", ema_decay=0.998,
    ),
}  # fmt: skip


def parse_args(argv: list[str] | None) -> TrainConfig:
    """The preset with the options given on top ("none" sets an optional field to None); with --resume, the
    configuration saved in OUT/checkpoint.pt instead of the preset, so a run started with overrides resumes with
    them. Raises ConfigError for settings that cannot train (TrainConfig.__post_init__)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    for field in dataclasses.fields(TrainConfig):
        # The field's own name, and the hyphenated spelling the relight command and model.convert use.
        flags = dict.fromkeys([f"--{field.name}", f"--{field.name.replace('_', '-')}"])
        # SUPPRESS: an option not given is absent, so "--crop none" (None) still overrides the preset.
        if field.type is bool:
            parser.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS)  # fmt: skip
        else:
            parser.add_argument(*flags, dest=field.name, type=parse_field(field.type), default=argparse.SUPPRESS,
                                metavar=field.name.upper())  # fmt: skip
    overrides = vars(parser.parse_args(argv))
    base = PRESETS[overrides.pop("preset")]
    if overrides.get("resume"):
        saved = saved_config(Path(overrides.get("out", base.out)) / "checkpoint.pt")
        if saved is not None:
            base = saved
    return dataclasses.replace(base, **overrides)


def saved_config(checkpoint_path: Path) -> TrainConfig | None:
    """The configuration a checkpoint was written with (fields added since take their defaults); None without
    a checkpoint. mmap: the 170 MB of tensors beside it are not read. Raises ConfigError for a file that is not a
    checkpoint of ours (truncated, another tool's)."""
    if not checkpoint_path.is_file():
        return None
    try:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
        saved = state["config"]
    except Exception as error:  # torch.load raises many types for a damaged or foreign file
        raise ConfigError(f"cannot resume from {checkpoint_path}: not a readable checkpoint ({error})") from None
    return config_from_saved(saved)


def config_from_saved(saved: dict) -> TrainConfig:
    """A checkpoint's saved configuration (asdict of the TrainConfig that wrote it): fields added since take their
    defaults, fields removed since are dropped."""
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in saved.items() if name in known})


def check_resumable(cfg: TrainConfig, checkpoint_path: Path, saved: dict) -> None:
    """Raise ConfigError naming each setting, outside RESUME_MAY_CHANGE, where cfg differs from the checkpoint's
    saved configuration: a resumed run continues the same optimisation (a different average, loss or data
    would silently be another experiment under the old one's name)."""
    saved = asdict(config_from_saved(saved))
    differ = [
        f"{name} {saved[name]!r} (given {value!r})"
        for name, value in asdict(cfg).items()
        if name not in RESUME_MAY_CHANGE and saved[name] != value
    ]
    if differ:
        raise ConfigError(
            f"{checkpoint_path} was written with other settings: {', '.join(differ)}; resume with its own "
            "settings (--resume alone takes them) or start another run in another --out"
        )


def parse_field(kind):
    base = {"int | None": int, "str | None": str}.get(str(kind), kind)
    if str(kind).endswith("| None"):
        return lambda text: None if text.lower() == "none" else base(text)
    return base


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    """torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this is one process."""
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp, fast_autocast_dtype(device))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine from lr down to min_lr over the remaining steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def stage_of(cfg: TrainConfig, step: int) -> int:
    return 2 if cfg.loss == "two-stage" and step >= cfg.stage2_step else 1


def build_loss(cfg: TrainConfig, stage: int, value_range, device) -> torch.nn.Module:
    if cfg.loss == "sobel":
        return CombinedSobelLoss(cfg.sobel_weight)
    if cfg.loss == "l2" or stage == 1:
        return L2Loss()
    vgg = VGG16Features(cfg.vgg_weights).to(device) if cfg.perceptual_weight else None
    return CombinedLoss(
        value_range, cfg.l1_weight, cfg.ssim_weight, cfg.perceptual_weight, cfg.tv_weight, vgg, cfg.l2_weight,
        cfg.dark_weight,
    )  # fmt: skip


class TrainingStep:
    """One optimisation step on a batch in the network's value range, (N, 3, H, W): the forward pass under
    autocast (`amp_dtype`, None for fp32), the loss in fp32, backward (scaled where fp16 needs it), the
    gradient-norm clip (0: none) and the optimizer step. Returns the loss, a 0-dim tensor.

    compiled: the forward pass and the loss are one torch.compile graph (Inductor; AOTAutograd compiles its
    backward too), built at the first step of each shape and again when `set_loss` changes the loss (the
    stage switch). The parameters stay the eager model's, so checkpoints and weight files do not change.
    """

    def __init__(self, net: nn.Module, optimizer, scaler, amp_dtype: torch.dtype | None, grad_clip: float,
                 compiled: bool):  # fmt: skip
        self.net, self.optimizer, self.scaler = net, optimizer, scaler
        self.amp_dtype, self.grad_clip, self.compiled = amp_dtype, grad_clip, compiled
        self.device_type = next(net.parameters()).device.type
        self.loss_of = None

    def set_loss(self, loss_fn: nn.Module) -> None:
        def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device_type, self.amp_dtype, enabled=self.amp_dtype is not None):
                output = self.net(x)
            return loss_fn(output, y)

        self.loss_of = torch.compile(loss_of, dynamic=False) if self.compiled else loss_of

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss_of(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def data_roots(cfg: TrainConfig) -> list[Path]:
    """The data roots of cfg.data, 'A,B': training reads every root's train split, validation the first's."""
    return [Path(root) for root in cfg.data.split(",")]


def data_description(root: Path) -> dict:
    meta = root / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else {"path": str(root)}


def warm_restart_record(path: str, metadata: dict) -> dict:
    """What a warm restart started from, its own training (and so its whole chain of restarts) included."""
    return {"weights": path, "sha256": metadata["sha256"], "training": metadata.get("training")}


def training_summary(
    cfg: TrainConfig, step: int, elapsed: float, metrics: dict, device: torch.device, start: dict | None = None
) -> dict:
    roots = data_roots(cfg)
    if cfg.loss == "two-stage":
        weights = {
            "l1": cfg.l1_weight, "l2": cfg.l2_weight, "ssim": cfg.ssim_weight, "perceptual": cfg.perceptual_weight,
            "tv": cfg.tv_weight, "dark": cfg.dark_weight,
        }  # fmt: skip
        stages = [
            {"stage": 1, "loss": "L2", "steps": min(step, cfg.stage2_step)},
            {"stage": 2, "loss": "combined", "weights": weights, "ssim_on": "[0, 1]",
             "steps": max(0, step - cfg.stage2_step)},
        ]  # fmt: skip
    else:
        stages = [{"stage": 1, "loss": cfg.loss, "steps": step}]
    restart = {"warm_restart_from": start} if start else {}
    return restart | {
        "data": data_description(roots[0]) if len(roots) == 1 else [data_description(root) for root in roots],
        "stages": stages,
        "steps": step,
        "wall_time_s": round(elapsed, 1),
        "metrics": metrics,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "device": str(device), "torch": torch.__version__},
        "command": "python -m training.train " + " ".join(sys.argv[1:]),
        "config": asdict(cfg),
    }  # fmt: skip


def save_checkpoint(path: Path, **state) -> None:
    """Written beside and renamed into place, so an interrupted save never leaves a broken checkpoint."""
    write_whole(path, lambda partial: torch.save(state, partial))


def train(cfg: TrainConfig) -> Path:
    """The run `cfg` describes, read top to bottom: set-up (torchrun's ranks, the data, the start: a warm restart,
    the identity init or a checkpoint with --resume), then the loop (a step, the moving average, the step log,
    validation every eval_every steps saving OUT/best.safetensors when its PSNR is the best yet, a checkpoint
    every checkpoint_every steps), then the final evaluation stored in the weight file.

    Returns OUT/best.safetensors. Raises ConfigError, DataError, WeightsError or VGGWeightsMissing before any
    step; SystemExit(130) after checkpointing, on Ctrl-C or SIGTERM.
    """
    run = setup_distributed()
    if run.device.type == "cpu":
        reuse_freed_memory()  # each step reuses the last step's activation memory instead of faulting it in
    torch.manual_seed(cfg.seed)
    value_range = parse_value_range(cfg.value_range)
    out = Path(cfg.out)
    if cfg.resume and not (out / "checkpoint.pt").is_file():  # before any work
        raise ConfigError(f"no checkpoint to resume at {out / 'checkpoint.pt'}: start without --resume")
    if cfg.loss == "two-stage" and cfg.perceptual_weight:
        find_vgg16_weights(cfg.vgg_weights)  # fail before any work, not at the stage switch
    roots = data_roots(cfg)
    train_set = RelightPairs([root / "train" for root in roots], resize=cfg.resize, crop=cfg.crop, seed=cfg.seed)
    val_set = RelightPairs(roots[0] / "validation")
    model = ARCHITECTURES[cfg.architecture]()
    start = None
    if cfg.init_weights:
        start_model, start_metadata = load_weights(cfg.init_weights)
        if start_metadata["architecture"] != cfg.architecture:
            raise ConfigError(f"{cfg.init_weights} holds {start_metadata['architecture']}, not {cfg.architecture}")
        model.load_state_dict(start_model.state_dict())
        start = warm_restart_record(cfg.init_weights, start_metadata)
    elif cfg.identity_init:
        identity_init_(model)
        if cfg.colour_init:
            # Without the offset: the baseline's offset lifts black inputs, which the network then has to unlearn.
            colour_init_(model, ColourTransfer.fit(train_set, offset=False), value_range)
    model = model.to(run.device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    # fused: one kernel for all parameters instead of ~8 operators per tensor (PyTorch's CPU default):
    # 1.18x the training step on an AVX512-BF16 CPU, 0.95-1x with AVX2 kernels (bench/training_profile.py).
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    ema = None
    if cfg.ema_decay:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    amp_dtype = autocast_dtype(cfg, run.device)
    scaler = torch.amp.GradScaler(run.device.type, enabled=amp_dtype == torch.float16)
    step, best_psnr, elapsed = 0, -math.inf, 0.0
    checkpoint_path = out / "checkpoint.pt"
    if cfg.resume:
        state = torch.load(checkpoint_path, map_location=run.device, weights_only=True)
        check_resumable(cfg, checkpoint_path, state["config"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint from before the fused optimizer carries fused=None
            group.update(fused=optimizer.defaults["fused"], foreach=optimizer.defaults["foreach"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        scaler.load_state_dict(state["scaler"])
        step, best_psnr, elapsed = state["step"], state["best_psnr"], state["elapsed_s"]
    net = DistributedDataParallel(model) if run.world > 1 else model
    compiled = compile_wanted(cfg.compile, run.device)
    training_step = TrainingStep(net, optimizer, scaler, amp_dtype, cfg.grad_clip, compiled)
    sampler = DistributedSampler(train_set, run.world, run.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_set)} training pairs cannot fill one batch of {cfg.batch_size}")
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{cfg.architecture} on {run.device} x{run.world}, autocast {amp_dtype}, "
              f"{'compiled' if compiled else 'eager'}, {len(train_set)} train pairs, "
              f"{steps_per_epoch} steps/epoch, from step {step} to {cfg.max_steps}")  # fmt: skip

    def checkpoint() -> None:
        if run.main:
            save_checkpoint(checkpoint_path, model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scaler=scaler.state_dict(), step=step, best_psnr=best_psnr,
                            elapsed_s=elapsed + time.perf_counter() - started, config=asdict(cfg),
                            **({"ema": ema.state_dict()} if ema is not None else {}))  # fmt: skip

    served = model if ema is None else ema.module  # what validation scores and best.safetensors holds

    def validate() -> dict:
        served.eval()
        images = range(min(cfg.eval_images or len(val_set), len(val_set)))
        metrics = evaluate(network_method(served, value_range, amp_dtype, cfg.channels_last), val_set, images)
        served.train()
        return metrics

    # One JSON line per step: the loss curve, and what the resume test compares. Line-buffered, so a killed run
    # keeps its lines; a resumed one first drops those past its checkpoint, which it is about to run again.
    step_log = None
    if run.main:
        log_path = out / "train_log.jsonl"
        if cfg.resume and log_path.exists():
            kept = [line for line in log_path.read_text().splitlines(keepends=True) if line.endswith("\n")
                    and json.loads(line)["step"] <= step]  # fmt: skip
            log_path.write_text("".join(kept))
        step_log = log_path.open("a", buffering=1)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not run.main, dynamic_ncols=True)
    started = time.perf_counter()
    stage = 0
    # SIGTERM (a cluster pre-empting the job) is treated like Ctrl-C: checkpoint, then stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while step < cfg.max_steps:
            epoch, done_in_epoch = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            order = list(sampler)[done_in_epoch * cfg.batch_size : steps_per_epoch * cfg.batch_size]
            loader = DataLoader(train_set, cfg.batch_size, sampler=order, drop_last=True, num_workers=cfg.num_workers)
            for source, target in loader:
                if stage_of(cfg, step) != stage:
                    stage = stage_of(cfg, step)
                    loss_fn = build_loss(cfg, stage, value_range, run.device)
                    training_step.set_loss(loss_fn)
                    if run.main:
                        bar.write(f"step {step}: stage {stage}, loss {type(loss_fn).__name__}")
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, step)
                tick = time.perf_counter()
                x = to_network(source, value_range).to(run.device, memory_format=memory_format)
                y = to_network(target, value_range).to(run.device, memory_format=memory_format)
                loss = training_step(x, y)
                if ema is not None:
                    ema.update_parameters(model)
                step += 1
                if run.main:
                    step_log.write(json.dumps({"step": step, "loss": loss.item(), "lr": learning_rate(cfg, step - 1),
                                          "stage": stage}) + "\n")  # fmt: skip
                images_per_s = cfg.batch_size * run.world / (time.perf_counter() - tick)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{learning_rate(cfg, step - 1):.2e}",
                                img_s=f"{images_per_s:.2f}", stage=stage)  # fmt: skip
                bar.update()
                if run.main and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                    metrics = validate()
                    black = "" if metrics["blacks_kept"] is None else f", blacks at {metrics['blacks_kept']:.1f}/255"
                    black += "" if metrics["unlit"] is None else f", unlit at {metrics['unlit']:.1f}/255"
                    bar.write(f"step {step}: validation PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
                              f"sSSIM {metrics['structural_ssim']:.4f}{black}")  # fmt: skip
                    if metrics["psnr"] > best_psnr:
                        best_psnr = metrics["psnr"]
                        now = elapsed + time.perf_counter() - started
                        summary = training_summary(cfg, step, now, {"validation_subset": metrics}, run.device, start)
                        save_weights(served, out / "best.safetensors", value_range, summary, cfg.storage_dtype)
                if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                    checkpoint()
                if step >= cfg.max_steps:
                    break
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        if step_log:
            step_log.close()
        if run.main:
            print(f"interrupted at step {step}; checkpoint saved to {checkpoint_path}, continue with --resume")
        raise SystemExit(130) from None
    bar.close()
    if run.main:
        step_log.close()
        wall = elapsed + time.perf_counter() - started
        best = out / "best.safetensors"
        if not best.exists():
            summary = training_summary(cfg, step, wall, {}, run.device, start)
            save_weights(served, best, value_range, summary, cfg.storage_dtype)
        try:
            record_final_evaluation(cfg, best, roots, run.device, amp_dtype, wall)
        except KeyboardInterrupt:
            print(f"interrupted in the final evaluation; {best} is whole, --resume evaluates it again")
            raise SystemExit(130) from None
    if run.world > 1:
        dist.destroy_process_group()
    return out / "best.safetensors"


def record_final_evaluation(cfg, best: Path, roots: list[Path], device, amp_dtype, wall: float) -> None:
    """Evaluate the best weights on each data root's whole validation split beside both baselines (the colour
    transfer fitted on that root's train split); store the tables in the file. A root listed twice (to weigh its
    draws) is scored once; a train-only root (no validation images) is named and skipped."""
    model, metadata = load_weights(best, device)
    tables = {}
    for root in dict.fromkeys(roots):
        if not split_images(root / "validation"):
            print(f"{root / 'validation'}: no images, not scored (a train-only set)")
            continue
        colour_transfer = ColourTransfer.fit(RelightPairs(root / "train"))
        validation = RelightPairs(root / "validation")
        tables[str(root)] = evaluation_table(model, validation, metadata["value_range"], colour_transfer, amp_dtype,
                                             cfg.channels_last)  # fmt: skip
        print(f"{root / 'validation'}:\n{format_table(tables[str(root)], None, dark_pixels(validation))}")
    summary = metadata["training"] | {"validation": tables[str(roots[0])], "total_wall_time_s": round(wall, 1)}
    if len(roots) > 1:
        summary["validation_sets"] = tables
    save_weights(model, best, metadata["value_range"], summary, cfg.storage_dtype)
    print(f"wrote {best}")


def main(argv: list[str] | None = None) -> None:
    try:
        train(parse_args(argv))
    except (VGGWeightsMissing, DataError, ConfigError, WeightsError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
