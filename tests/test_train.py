import copy
import dataclasses
import json
import shutil

import pytest
import torch
from torch import nn

import training.train as train_module
from model.precision import compile_wanted
from model.weights import load_weights, read_metadata
from training.evaluate import main as evaluate_main
from training.losses import CombinedLoss, L2Loss
from training.synth.raycast import write_dataset
from training.train import PRESETS, TrainingStep, parse_args, train
from training.vgg import VGG16_LAYERS, VGG16Features


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, train=4, val=2, size=32, seed=3, supersample=1)
    return root


def tiny_config(data, out, **overrides):
    base = dataclasses.replace(
        PRESETS["cpu"], data=str(data), out=str(out), crop=None, amp="off", compile="off", eval_every=1000,
        eval_images=0, checkpoint_every=1000, warmup_steps=0, lr=5e-4,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def read_log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_a_few_steps_lower_the_loss_and_switch_stage(tiny_set, tmp_path):
    cfg = tiny_config(tiny_set, tmp_path, architecture="DMSHN", max_steps=24, stage2_step=16)
    weights = train(cfg)
    log = read_log(tmp_path)
    stage1 = [entry["loss"] for entry in log if entry["stage"] == 1]
    assert [entry["stage"] for entry in log] == [1] * 16 + [2] * 8
    assert sum(stage1[-4:]) / 4 < sum(stage1[:4]) / 4
    metadata = read_metadata(weights)
    assert [stage["steps"] for stage in metadata["training"]["stages"]] == [16, 8]
    assert set(metadata["training"]["validation"]) == {"DMSHN", "colour transfer", "identity"}


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_after_ctrl_c_continues_exactly(tiny_set, tmp_path, monkeypatch, ema_decay):
    cfg = tiny_config(tiny_set, tmp_path / "straight", max_steps=6, stage2_step=3, ema_decay=ema_decay)
    train(cfg)
    straight = read_log(tmp_path / "straight")

    interrupted = dataclasses.replace(cfg, out=str(tmp_path / "resumed"))
    real_learning_rate = train_module.learning_rate

    def ctrl_c_before_step_4(cfg, step):
        if step == 4:
            raise KeyboardInterrupt
        return real_learning_rate(cfg, step)

    monkeypatch.setattr(train_module, "learning_rate", ctrl_c_before_step_4)
    with pytest.raises(SystemExit) as stopped:
        train(interrupted)
    assert stopped.value.code == 130
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 4
    with (tmp_path / "resumed" / "train_log.jsonl").open("a") as log:  # as a SIGKILL after the checkpoint leaves it
        log.write(json.dumps({"step": 5, "loss": 1.0, "lr": 0.0, "stage": 2}) + '\n{"step": 6, "lo')
    monkeypatch.setattr(train_module, "learning_rate", real_learning_rate)
    train(dataclasses.replace(interrupted, resume=True))
    resumed = read_log(tmp_path / "resumed")
    assert [entry["step"] for entry in resumed] == [1, 2, 3, 4, 5, 6]
    assert resumed == straight
    straight_state, resumed_state = (torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)
                                     for run in ("straight", "resumed"))  # fmt: skip
    for part in ("model", "ema") if ema_decay else ("model",):
        assert straight_state[part].keys() == resumed_state[part].keys()
        assert all(torch.equal(straight_state[part][k], resumed_state[part][k]) for k in straight_state[part])


def test_the_averaged_weights_are_validated_and_saved(tiny_set, tmp_path):
    """With ema_decay, best.safetensors holds the moving average (updated each step), not the last step's weights."""
    cfg = tiny_config(tiny_set, tmp_path, architecture="DMSHN", max_steps=3, stage2_step=0, ema_decay=0.5)
    best, _ = load_weights(train(cfg))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    averaged = {key.removeprefix("module."): value for key, value in state["ema"].items() if key.startswith("module.")}
    assert state["ema"]["n_averaged"] == 3
    for name, saved in best.state_dict().items():
        assert torch.allclose(saved.float(), averaged[name].float(), atol=2e-3), name  # stored as float16
    differs = [not torch.allclose(averaged[name], state["model"][name], atol=1e-4) for name in averaged]
    assert any(differs)  # the last step's weights are not what was saved


def test_missing_vgg_stops_before_training_with_directions(tiny_set, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SystemExit) as stopped:
        train_module.main(["--data", str(tiny_set), "--out", str(tmp_path / "run"), "--perceptual_weight", "0.006"])
    message = str(stopped.value.code)
    assert "vgg16-397923af.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--perceptual_weight 0" in message
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def fake_vgg16_file(path):
    """A VGG16 state dict in torchvision's key layout, random values: enough to exercise loading and the loss."""
    layers, channels = [], 3
    for spec in VGG16_LAYERS:
        layers += [nn.MaxPool2d(2)] if spec == "M" else [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU()]
        channels = channels if spec == "M" else spec
    torch.save({f"features.{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}, path)


def test_perceptual_term_loads_vgg_and_passes_gradients(tmp_path):
    fake_vgg16_file(tmp_path / "vgg.pth")
    vgg = VGG16Features(tmp_path / "vgg.pth")
    only_perceptual = CombinedLoss((-0.5, 0.5), l1_weight=0, ssim_weight=0, perceptual_weight=1, tv_weight=0, vgg=vgg)
    output = (torch.rand(1, 3, 64, 64) - 0.5).requires_grad_()
    target = torch.rand(1, 3, 64, 64) - 0.5
    loss = only_perceptual(output, target)
    loss.backward()
    assert loss.item() > 0
    assert output.grad.abs().sum() > 0
    assert only_perceptual(target, target).item() == 0


def test_l2_term_scores_the_mean_better_than_the_median():
    """Where a shadow is there half the time, L2 (like PSNR) prefers the half-shadow; L1 is indifferent."""
    target = torch.stack([torch.full((3, 16, 16), -0.5), torch.full((3, 16, 16), 0.5)])
    mean, median = torch.zeros_like(target), target.flip(0)[:1].expand_as(target)
    only_l1 = CombinedLoss((-0.5, 0.5), l1_weight=1, ssim_weight=0, perceptual_weight=0, tv_weight=0)
    only_l2 = CombinedLoss((-0.5, 0.5), l1_weight=0, ssim_weight=0, perceptual_weight=0, tv_weight=0, l2_weight=1)
    assert only_l1(mean, target).item() == pytest.approx(only_l1(median, target).item())
    assert only_l2(mean, target).item() == pytest.approx(0.25)
    assert only_l2(median, target).item() == pytest.approx(0.5)


def test_ssim_term_scores_a_lifted_black_as_the_metric_does():
    """On [0, 1] (0 black), a black region lifted by 30/255 has SSIM C1 / (mu^2 + C1) = 0.0072, as on 0..255."""
    only_ssim = CombinedLoss((-0.5, 0.5), l1_weight=0, ssim_weight=-1, perceptual_weight=0, tv_weight=0)
    black = torch.full((1, 3, 32, 32), -0.5)
    assert only_ssim(black + 30 / 255, black).item() == pytest.approx(-1e-4 / ((30 / 255) ** 2 + 1e-4), rel=1e-3)
    assert only_ssim(black, black).item() == pytest.approx(-1.0)


def test_dark_term_pulls_a_lifted_black_down_as_hard_as_any_lift_and_leaves_lit_pixels_alone():
    """Half the frame unlit in the target: the term is the mean lift there, halved (averaged over every pixel),
    its gradient the same at a lift of 2/255 as at 30/255, and zero on the lit half."""
    only_dark = CombinedLoss((-0.5, 0.5), l1_weight=0, ssim_weight=0, perceptual_weight=0, tv_weight=0, dark_weight=1)
    target = torch.full((1, 3, 8, 8), -0.5)
    target[..., 4:] = 0.2
    for lift in (2 / 255, 30 / 255):
        output = (target + lift).requires_grad_()
        loss = only_dark(output, target)
        loss.backward()
        assert loss.item() == pytest.approx(lift / 2)
        assert output.grad[..., :4].unique().tolist() == pytest.approx([1 / target.numel()])
        assert output.grad[..., 4:].abs().max().item() == 0
    assert only_dark(target, target).item() == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor compiles C++ on the CPU")
def test_the_compiled_step_takes_the_same_steps_as_the_eager_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    x, y = torch.rand(2, 3, 32, 32) - 0.5, torch.rand(2, 3, 32, 32) - 0.5
    losses, weights = {}, {}
    for compiled in (False, True):
        model = copy.deepcopy(net)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        step = TrainingStep(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), None, 1.0, compiled)
        step.set_loss(CombinedLoss((-0.5, 0.5), ssim_weight=-0.05, perceptual_weight=0))
        losses[compiled] = [step(x, y).item() for _ in range(3)]
        step.set_loss(L2Loss())  # the stage switch
        losses[compiled].append(step(x, y).item())
        weights[compiled] = torch.cat([parameter.detach().flatten() for parameter in model.parameters()])
    assert losses[False][2] < losses[False][0]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert torch.allclose(weights[True], weights[False], atol=1e-5)
    assert not torch.allclose(weights[False], torch.cat([p.flatten() for p in net.parameters()]))


def test_compile_flag():
    cpu = torch.device("cpu")
    assert compile_wanted("on", cpu) and not compile_wanted("off", cpu)
    assert not compile_wanted("auto", torch.device("cuda"))
    with pytest.raises(ValueError, match="auto, on or off"):
        compile_wanted("yes", cpu)
    assert parse_args(["--compile", "off"]).compile == "off"


def test_command_line_overrides_the_preset():
    cfg = parse_args(["--preset", "paper", "--max_steps", "10", "--crop", "none", "--no-channels_last"])
    assert (cfg.max_steps, cfg.crop, cfg.channels_last, cfg.lr, cfg.batch_size) == (10, None, False, 2e-3, 2)
    v3 = parse_args(["--preset", "v3", "--crop", "none", "--init_weights", "none"])  # both set in the preset
    assert (v3.crop, v3.init_weights, v3.ema_decay) == (None, None, 0.998)
    hyphens = parse_args(["--preset", "paper", "--max-steps", "10", "--crop", "none", "--no-channels-last"])
    assert hyphens == cfg


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ema_decay", "1"], "ema_decay must be at least 0 and below 1, not 1.0"),
        (["--ema_decay", "nan"], "ema_decay must be at least 0 and below 1, not nan"),
        (["--batch_size", "0"], "batch_size must be at least 1"),
        (["--lr=-1e-4"], "lr must be a positive number, not -0.0001"),
        # A typo trained L2 throughout and recorded "l1" in the weight file; the others failed later in a traceback.
        (["--loss", "l1"], "loss must be one of two-stage, l2, sobel, not 'l1'"),
        (["--amp", "bf61"], "amp must be one of auto, off, bf16, fp16, not 'bf61'"),
        (["--compile", "yes"], "compile must be one of auto, on, off, not 'yes'"),
        (["--storage_dtype", "bf16"], "storage_dtype must be one of float16, float32, not 'bf16'"),
        (["--value_range", "1,0"], "value range must have low < high, got '1,0'"),  # was a traceback in train()
        (["--resume", "--out", "{tmp}/nothing"], "no checkpoint to resume at {tmp}/nothing/checkpoint.pt"),
        (["--resume", "--out", "{tmp}/damaged"], "cannot resume from {tmp}/damaged/checkpoint.pt: not a readable"),
    ],
)
def test_settings_that_cannot_train_end_with_a_message(tmp_path, argv, message):
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)  # a cut-off zip
    with pytest.raises(SystemExit) as stopped:
        train_module.main([arg.format(tmp=tmp_path) for arg in argv])
    assert str(stopped.value.code).startswith(f"error: {message.format(tmp=tmp_path)}")


def test_a_start_that_cannot_train_on_the_data_ends_with_a_message_before_any_step(tiny_set, tmp_path):
    stacked = tmp_path / "stacked.safetensors"
    train(tiny_config(tiny_set, tmp_path / "start", max_steps=0))
    shutil.copy(tmp_path / "start" / "best.safetensors", stacked)
    cases = {
        f"--architecture DMSHN --init_weights {stacked}": f"error: {stacked} holds StackedDMSHN, not DMSHN",
        "--batch_size 8": "error: 4 training pairs cannot fill one batch of 8",
    }
    for options, message in cases.items():
        with pytest.raises(SystemExit) as stopped:
            train_module.main(
                ["--data", str(tiny_set), "--out", str(tmp_path / "run"), "--crop", "none", *options.split()]
            )
        assert stopped.value.code == message
        assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_resume_takes_the_checkpoints_settings_and_refuses_others(tiny_set, tmp_path):
    """--resume alone continued a run started with --ema_decay without its average (helper's finding)."""
    cfg = tiny_config(tiny_set, tmp_path, architecture="DMSHN", max_steps=2, stage2_step=1, ema_decay=0.5)
    train(cfg)
    resumed = parse_args(["--preset", "v3", "--out", str(tmp_path), "--resume", "--max_steps", "3"])
    assert resumed == dataclasses.replace(cfg, max_steps=3, resume=True)
    train(resumed)
    assert [entry["step"] for entry in read_log(tmp_path)] == [1, 2, 3]
    assert "ema" in torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (tmp_path / "best.safetensors").stat().st_mode & 0o777 == 0o644  # the container's user reads it
    with pytest.raises(SystemExit) as stopped:
        train_module.main(["--out", str(tmp_path), "--resume", "--ema_decay", "0", "--lr", "1e-3"])
    assert "was written with other settings: lr 0.0005 (given 0.001), ema_decay 0.5 (given 0.0)" in str(
        stopped.value.code
    )


def test_a_train_only_set_and_a_set_listed_twice_train_and_the_final_tables_score_each_validation_once(
    tiny_set, tmp_path, capsys
):
    train_only = tmp_path / "extra"
    write_dataset(train_only, train=2, val=0, size=32, seed=4, supersample=1)
    cfg = tiny_config(f"{tiny_set},{train_only},{tiny_set}", tmp_path / "run", architecture="DMSHN", max_steps=1,
                      stage2_step=0)  # fmt: skip
    training = read_metadata(train(cfg))["training"]
    assert list(training["validation_sets"]) == [str(tiny_set)]
    assert f"{train_only / 'validation'}: no images, not scored" in capsys.readouterr().out


def test_evaluate_prints_the_table(tiny_set, tmp_path, capsys):
    weights = train(tiny_config(tiny_set, tmp_path, architecture="DMSHN", max_steps=2, stage2_step=1))
    capsys.readouterr()
    evaluate_main(["--weights", str(weights), "--data", str(tiny_set)])
    table = capsys.readouterr().out
    for row in ("method", "DMSHN", "colour transfer", "identity", "LPIPS n/a:"):
        assert row in table
    evaluate_main(["--weights", str(weights), "--data", str(tiny_set), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows["identity"]["psnr"] > 0


def test_warm_restart_on_two_generators_records_both_validation_sets(tiny_set, tmp_path):
    second = tmp_path / "v2"
    write_dataset(second, train=4, val=2, size=32, seed=3, supersample=1, version="2")
    start = train(tiny_config(tiny_set, tmp_path / "start", architecture="DMSHN", max_steps=2, stage2_step=1))
    cfg = tiny_config(
        f"{second},{tiny_set}", tmp_path / "warm", architecture="DMSHN", max_steps=0, stage2_step=0,
        init_weights=str(start),
    )  # fmt: skip
    training = read_metadata(train(cfg))["training"]
    start_model, start_metadata = load_weights(start)
    warm_model, _ = load_weights(tmp_path / "warm" / "best.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(start_model.parameters(), warm_model.parameters(), strict=True))
    assert [data["generator_version"] for data in training["data"]] == ["2", "1"]
    assert set(training["validation_sets"]) == {str(second), str(tiny_set)}
    started_from = training["warm_restart_from"]
    assert started_from["sha256"] == start_metadata["sha256"]
    assert started_from["training"]["steps"] == 2 and "warm_restart_from" not in started_from["training"]
    assert training["validation"] == training["validation_sets"][str(second)]
