"""The training loop on real Fashion-MNIST: learning, fractional epochs, callbacks, checkpoint/resume, divergence,
and early one-line errors for bad input."""
from __future__ import annotations

import gzip
from pathlib import Path
import numpy as np
import pytest
import torch
from torch import nn

from nasforge.errors import DataError, InvalidValue
from nasforge.train import Callback, DivergedError, TrainConfig, TrainState, evaluate, train

def _idx(folder: Path, prefix: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.frombuffer(gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz").read()[16:], np.uint8)
    labels = np.frombuffer(gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    x = torch.from_numpy(images.reshape(-1, 1, 28, 28)[:n].astype(np.float32) / 255.0)
    return (x - 0.286) / 0.353, torch.from_numpy(labels[:n].astype(np.int64))


@pytest.fixture(scope="module")
def fmnist(shared_data: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    folder = shared_data / "fashion_mnist"
    return {"train": _idx(folder, "train", 2048), "test": _idx(folder, "t10k", 1000)}


def _batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(x.split(size), y.split(size)))


def _net(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)  # tests may seed; src never does
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * 7 * 7, 10))


class _Shuffled:
    """A deterministic per-epoch source: ``source(epoch)`` reshuffles with a generator seeded by the epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int) -> None:
        self.x, self.y, self.size = x, y, size

    def __call__(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 + epoch))
        return _batches(self.x[perm], self.y[perm], self.size)


class _Crash(Exception):
    pass


class _CrashAfter(Callback):
    """Simulates a killed process after the checkpoint of epoch ``epoch`` was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise _Crash


class _StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0

    def on_step_end(self, state: TrainState) -> bool:
        self.seen += 1
        assert state.loss is not None and state.loss.ndim == 0
        return state.step >= self.step


def test_one_epoch_on_fashion_mnist_learns(fmnist) -> None:
    model = _net()
    val = _batches(*fmnist["test"], 250)
    before = evaluate(model, val)["accuracy"]
    result = train(model, _batches(*fmnist["train"], 64), config=TrainConfig.from_recipe("lnas"), epochs=1,
                   val_batches=val, progress=False)
    (stats,) = result.history
    assert before < 25 and result.final_val_accuracy == stats.val_accuracy > 60  # chance is 10%
    assert stats.steps == 32 and result.steps == 32 and result.epochs_run == 1.0 and not result.stopped_early
    assert stats.train_accuracy > 40 and 0 < stats.train_loss < 2.3 and stats.lr == pytest.approx(0.0)
    assert evaluate(model, val)["accuracy"] == pytest.approx(stats.val_accuracy)
    assert model.training  # evaluate restored the mode


def test_fractional_epochs_and_callbacks(fmnist) -> None:
    x, y = fmnist["train"]
    stopper = _StopAtStep(10 ** 9)
    result = train(_net(), _batches(x[:640], y[:640], 64), config=TrainConfig(lr=0.05), epochs=1.5,
                   callbacks=[stopper], progress=True)
    assert result.steps == 15 and result.epochs_run == 1.5 and stopper.seen == 15
    assert [h.steps for h in result.history] == [10, 5] and [h.epoch for h in result.history] == [0, 1]
    stop = _StopAtStep(7)
    result = train(_net(), _batches(x[:640], y[:640], 64), config=TrainConfig(lr=0.05), epochs=2,
                   callbacks=[stop], progress=False)
    assert result.steps == 7 and result.stopped_early and result.history[-1].steps == 7


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("interrupt", ["crash_after_epoch", "stop_mid_epoch"])
def test_resume_reproduces_the_uninterrupted_run(fmnist, tmp_path: Path, interrupt: str) -> None:
    x, y = fmnist["train"]
    source = _Shuffled(x[:384], y[:384], 32)  # 12 steps per epoch
    cfg = TrainConfig.from_recipe("menas", batch_size=32, warmup_epochs=0.5, decay_epochs=0.5)
    val = _batches(fmnist["test"][0][:200], fmnist["test"][1][:200], 100)
    kwargs = dict(config=cfg, epochs=2.5, val_batches=val, progress=False, steps_per_epoch=12)

    ref_model = _net(dropout=0.2)
    ref = train(ref_model, source, **kwargs)

    ckpt = tmp_path / "run.pt"
    first = _net(dropout=0.2)
    if interrupt == "crash_after_epoch":
        with pytest.raises(_Crash):
            train(first, source, checkpoint_path=ckpt, callbacks=[_CrashAfter(0)], **kwargs)
    else:
        partial = train(first, source, checkpoint_path=ckpt, callbacks=[_StopAtStep(17)], **kwargs)
        assert partial.steps == 17 and partial.stopped_early
    torch.manual_seed(12345)  # the global stream is now elsewhere: resume must restore it (dropout)
    resumed_model = _net(seed=7, dropout=0.2)
    resumed = train(resumed_model, source, checkpoint_path=ckpt, resume=True, **kwargs)

    assert resumed.steps == ref.steps == 30
    want, got = _state(ref_model), _state(resumed_model)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert resumed.final_val_accuracy == ref.final_val_accuracy
    assert resumed.history[-1].train_loss == ref.history[-1].train_loss
    if interrupt == "crash_after_epoch":
        assert [h.epoch for h in resumed.history] == [0, 1, 2]
    else:  # the stopped epoch appears as two segments: 5 steps, then the remaining 7
        assert [(h.epoch, h.steps) for h in resumed.history] == [(0, 12), (1, 5), (1, 7), (2, 6)]


def test_resume_rejects_another_config_and_missing_file_starts_fresh(fmnist, tmp_path: Path) -> None:
    x, y = fmnist["train"]
    batches = _batches(x[:256], y[:256], 64)
    ckpt = tmp_path / "c.pt"
    first = train(_net(), batches, config=TrainConfig(lr=0.05), epochs=1, checkpoint_path=ckpt, resume=True,
                  progress=False)
    assert ckpt.is_file() and first.steps == 4 and len(first.checkpoint_sha256) == 64
    with pytest.raises(InvalidValue, match=r"config.lr of resume from .*: got 0.1; allowed: 0.05"):
        train(_net(), batches, config=TrainConfig(lr=0.1), epochs=1, checkpoint_path=ckpt, resume=True)
    again = train(_net(), batches, config=TrainConfig(lr=0.05), epochs=1, checkpoint_path=ckpt, resume=True,
                  progress=False)
    assert again.steps == 4 and len(again.history) == 1  # already finished: nothing more to run


def _poisoned(fmnist, bad_batch: int, value: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = fmnist["train"]
    batches = _batches(x[:640].clone(), y[:640], 64)
    batches[bad_batch][0][0, 0, 0, 0] = value
    return batches


@pytest.mark.parametrize("interval, value", [(50, float("nan")), (1, float("inf")), (3, float("nan"))])
def test_non_finite_loss_raises_diverged_with_the_step(fmnist, interval: int, value: float) -> None:
    steps = _StopAtStep(10 ** 9)
    with pytest.raises(DivergedError, match=r"training loss at step 4 \(epoch 0\): got nan") as info:
        train(_net(), _poisoned(fmnist, 3, value), config=TrainConfig(lr=0.05, nan_check_interval=interval),
              epochs=1, callbacks=[steps], progress=False)
    assert info.value.step == 4
    # detected at the next check: step 4 itself when checking every step, else the end of the window
    assert steps.seen == {50: 10, 1: 3, 3: 5}[interval]


@pytest.mark.parametrize("interval", [1, 2, 5])
def test_finite_runs_pass_every_check_interval(fmnist, interval: int) -> None:
    x, y = fmnist["train"]
    result = train(_net(), _batches(x[:320], y[:320], 64), config=TrainConfig(lr=0.05, nan_check_interval=interval),
                   epochs=1, progress=False)
    assert result.steps == 5


def test_bad_input_fails_early_with_one_line(fmnist) -> None:
    x, y = fmnist["train"]
    cfg = TrainConfig(lr=0.05)
    cases = [
        (_batches(x[:128], y[:128].float(), 64), DataError, "y is torch.float32"),
        (_batches(x[:128].expand(-1, 3, -1, -1), y[:128], 64), DataError, "cannot take x of shape"),
        (_batches(x[:128], y[:128] + 5, 64), DataError, r"labels range over \[5, 14\]; allowed: 0..9"),
        ([x[:64]], DataError, "expected \\(x, y\\) tensor pairs"),
        ([], DataError, "0 batches"),
    ]
    for batches, exc, msg in cases:
        with pytest.raises(exc, match=msg) as info:
            train(_net(), batches, config=cfg, epochs=1, progress=False)
        assert "\n" not in str(info.value)
    good = _batches(x[:128], y[:128], 64)
    for kwargs, field in [(dict(epochs=0), "epochs"), (dict(epochs=1, device="gpu9"), "device"),
                          (dict(epochs=1, resume=True), "resume"), (dict(epochs=True), "epochs")]:
        with pytest.raises(InvalidValue, match=f"^{field}"):
            train(_net(), good, config=cfg, **kwargs)
    with pytest.raises(InvalidValue, match="^config"):
        train(_net(), good, config={"lr": 0.1}, epochs=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="^train_batches"):
        train(_net(), iter(good), config=cfg, epochs=2)
    with pytest.raises(InvalidValue, match="^steps_per_epoch"):
        train(_net(), lambda e: (b for b in good), config=cfg, epochs=1)
    with pytest.raises(InvalidValue, match=r"^precision: got 'fp16'; allowed: 'fp32' or 'bf16' on device 'cpu'"):
        train(_net(), good, config=TrainConfig(amp="fp16"), epochs=1)  # the former field name still reads
    with pytest.raises(DataError, match="evaluate batches: got no batches"):
        evaluate(_net(), [])


def test_generator_source_with_steps_per_epoch_and_bf16_autocast(fmnist) -> None:
    x, y = fmnist["train"]
    good = _batches(x[:64], y[:64], 16)
    result = train(_net(), lambda e: (b for b in good), config=TrainConfig(lr=0.05, precision="bf16"), epochs=2,
                   steps_per_epoch=4, progress=False)
    assert result.steps == 8 and all(np.isfinite(h.train_loss) for h in result.history)


def test_evaluate_matches_a_manual_count(fmnist) -> None:
    model = _net()
    x, y = fmnist["test"]
    with torch.no_grad():
        model.eval()
        logits = model(x[:300])
    model.train()
    want = 100.0 * (logits.argmax(1) == y[:300]).float().mean().item()
    loss = nn.functional.cross_entropy(logits, y[:300]).item()
    got = evaluate(model, _batches(x[:300], y[:300], 128))
    assert got["accuracy"] == pytest.approx(want) and got["loss"] == pytest.approx(loss, rel=1e-5)
    assert evaluate(model, _batches(x[:300], y[:300], 100), max_batches=1)["accuracy"] == pytest.approx(
        100.0 * (logits[:100].argmax(1) == y[:100]).float().mean().item())


def test_resume_with_nasforge_data_batches_restores_the_loader_generator(fmnist, tmp_path: Path) -> None:
    from nasforge.data import ArrayDataset, Batches

    x, y = fmnist["train"]
    images = (x[:256, 0] * 0.353 + 0.286).mul(255).round().clamp(0, 255).to(torch.uint8)
    ds = ArrayDataset(images, y[:256], layout="NHW", num_classes=10)
    kwargs = dict(config=TrainConfig(lr=0.05), epochs=2, progress=False)
    ref = _net(dropout=0.1)
    train(ref, Batches(ds, 32, train=True, seed=3), **kwargs)
    ckpt = tmp_path / "b.pt"
    with pytest.raises(_Crash):
        train(_net(dropout=0.1), Batches(ds, 32, train=True, seed=3), checkpoint_path=ckpt,
              callbacks=[_CrashAfter(0)], **kwargs)
    resumed = _net(seed=5, dropout=0.1)
    train(resumed, Batches(ds, 32, train=True, seed=3), checkpoint_path=ckpt, resume=True, **kwargs)
    want, got = _state(ref), _state(resumed)
    assert all(torch.equal(want[k], got[k]) for k in want)
