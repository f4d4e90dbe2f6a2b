"""TrainEvaluator: seeded train-from-scratch evaluation, checkpoints with checksums, divergence, pickling."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from nasforge import get_space
from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import TrainEvaluator, init_weights
from nasforge.execute import evaluate_trial
from nasforge.io import CheckpointError, load_checkpoint
from nasforge.study import build_study
from nasforge.train import TrainConfig
from nasforge.trial import TrialState

SPACE = get_space("nb201", C=4, N=1)
ARCH = SPACE.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
DATA = {"source": "embedded", "limit": 300, "val_fraction": 0.3, "test_fraction": 0.0, "seed": 1}
FAST = TrainConfig.from_recipe("nb201", batch_size=32, lr=0.05)


def test_init_weights_is_seeded_and_keeps_norm_defaults():
    a, b, c = (SPACE.build(ARCH, (1, 28, 28), 10) for _ in range(3))
    init_weights(a, torch.Generator().manual_seed(3))
    init_weights(b, torch.Generator().manual_seed(3))
    init_weights(c, torch.Generator().manual_seed(4))
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert all(not torch.equal(pa[k], pc[k]) for k in pa if pa[k].dim() > 1)  # another seed: every weight differs
    norms = [m for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    conv = next(m for m in a.modules() if isinstance(m, torch.nn.Conv2d))
    bound = 1 / np.sqrt(conv.weight[0].numel())  # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), ...)
    assert conv.weight.abs().max() <= bound + 1e-6


@pytest.fixture(scope="module")
def evaluator() -> TrainEvaluator:
    return TrainEvaluator(SPACE, DATA, epochs=1.0, train_config=FAST, device="cpu", threads=1)


@pytest.mark.slow
def test_evaluate_trains_reproducibly_and_saves_a_checksummed_checkpoint(tmp_path, evaluator):
    r1 = evaluator.evaluate(ARCH, seed=11, context={"trial_dir": str(tmp_path / "t1")})
    r2 = evaluator.evaluate(ARCH, seed=11, context={"trial_dir": str(tmp_path / "t2")})
    assert 0.0 <= r1.metrics["accuracy"] <= 100.0 and r1.metrics == r2.metrics  # same seed, same result
    assert r1.costs == {"params": SPACE.params(ARCH, (1, 28, 28), 10), "flops": SPACE.flops(ARCH, (1, 28, 28), 10)}
    assert r1.info["steps"] == 210 // 32 + 1 and r1.info["device"] == "cpu"
    sha = r1.info["checkpoint_sha256"]
    ckpt = load_checkpoint(r1.artifacts["checkpoint"], sha256=sha)
    other = load_checkpoint(r2.artifacts["checkpoint"], sha256=r2.info["checkpoint_sha256"])
    assert ckpt["model"].keys() == other["model"].keys()
    assert all(torch.equal(ckpt["model"][k], other["model"][k]) for k in ckpt["model"])  # identical weights
    with open(r1.artifacts["checkpoint"], "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x00" if fh.read(1) != b"\x00" else b"\x01")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(r1.artifacts["checkpoint"], sha256=sha)
    r3 = evaluator.evaluate(ARCH, seed=12)
    assert r3.artifacts == {} and "checkpoint_sha256" not in r3.info  # no trial folder, no file


def test_picklable_without_its_data(evaluator):
    evaluator.splits()
    clone = pickle.loads(pickle.dumps(evaluator))
    assert clone._splits is None and clone.data_config == evaluator.data_config
    assert clone.input_spec == ((1, 28, 28), 10)


def test_divergence_becomes_a_failed_trial():
    hot = TrainConfig.from_recipe("nb201", batch_size=32, lr=1e8, nan_check_interval=1)
    ev = TrainEvaluator(SPACE, DATA, epochs=1.0, train_config=hot, device="cpu", threads=1)
    out = evaluate_trial(ev, ARCH, 0, {}, ("accuracy",))
    assert out.kind == "diverged" and out.reason.startswith("diverged: DivergedError")


def test_bad_arguments_name_the_field():
    with pytest.raises(InvalidValue, match="epochs"):
        TrainEvaluator(SPACE, DATA, epochs=0)
    with pytest.raises(InvalidValue, match="threads"):
        TrainEvaluator(SPACE, DATA, threads=0)
    with pytest.raises(InvalidValue, match=r"input_shape: got \[3, 32, 32\]"):
        _ = TrainEvaluator(SPACE, DATA, input_shape=(3, 32, 32)).input_spec
    for classes in (1000, 9):  # a head wider than the data's labels is refused too, not only a narrower one
        with pytest.raises(InvalidValue, match=rf"^num_classes: got {classes}; allowed: the data's 10 classes"):
            _ = TrainEvaluator(SPACE, DATA, num_classes=classes).input_spec
    assert TrainEvaluator(SPACE, DATA, num_classes=10).input_spec == ((1, 28, 28), 10)
    with pytest.raises(InvalidValue, match="data.limit"):
        TrainEvaluator(SPACE, {"source": "embedded", "limit": -5})


def test_study_with_the_train_evaluator_records_checkpoints(tmp_path):
    config = config_from_dict({
        "space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}}, "data": DATA, "budget": 3, "progress": False,
        "strategy": {"name": "regularized-evolution", "params": {"population_size": 2, "sample_size": 2}},
        "evaluator": {"kind": "train", "epochs": 0.5, "train": {"batch_size": 32, "lr": 0.05}, "threads": 1},
        "device": "cpu", "report": False})
    with build_study(config, tmp_path) as study:
        study.run()
        done = study.trials(TrialState.COMPLETE)
        assert len(done) == 3
        for t in done:
            assert t.checkpoint and study.store.verify_checkpoint(t)
            assert t.checkpoint.startswith(str(tmp_path / "trials" / f"{t.id:05d}"))
            assert isinstance(study.load_checkpoint(t), dict)


def test_dropout_networks_reproduce_for_a_seed_whatever_ran_before() -> None:
    """menas-ws has dropout 0.2: its masks come from torch's default generator, which the evaluator scopes to the
    trial's seed, so the same seed gives the same training however much global RNG was used in between."""
    from nasforge import get_space
    from nasforge.data import load_data
    from nasforge.eval.train_eval import TrainEvaluator
    from nasforge.train import TrainConfig

    space = get_space("menas-ws")
    ev = TrainEvaluator(space, load_data({"source": "digits", "limit": 300}), epochs=0.5, device="cpu",
                        train_config=TrainConfig.from_recipe("nb201", batch_size=64), checkpoints=False)
    a = space.smallest()
    first = ev.evaluate(a, seed=5).info["train_loss"]
    torch.rand(1000)  # move the global generator on
    assert ev.evaluate(a, seed=5).info["train_loss"] == first
    assert ev.evaluate(a, seed=6).info["train_loss"] != first


def test_trial_checkpoints_hold_weights_and_bn_statistics_only(tmp_path):
    """Issue 12 item 4: weight inheritance and export read weights only and an interrupted trial is evaluated
    again from the start, so a trial's checkpoint keeps no optimizer / scheduler / generator state. With RMSProp
    (two buffers per parameter) it is about a third of the resumable training checkpoint of the same network."""
    from nasforge.eval.train_eval import init_weights as init
    from nasforge.train import train
    from nasforge.train.checkpoint import WEIGHTS_FORMAT, load_training_state

    recipe = TrainConfig.from_recipe("menas", batch_size=32, warmup_epochs=0.01)
    ev = TrainEvaluator(SPACE, DATA, epochs=0.2, train_config=recipe, device="cpu", threads=1)
    res = ev.evaluate(ARCH, seed=3, context={"trial_dir": str(tmp_path / "trial")})
    ckpt = load_checkpoint(res.artifacts["checkpoint"], sha256=res.info["checkpoint_sha256"])
    assert ckpt["format"] == WEIGHTS_FORMAT
    assert set(ckpt) == {"format", "model", "config", "steps", "epochs", "history", "bn_calibration"}
    assert ckpt["model"].keys() == SPACE.build(ARCH, (1, 28, 28), 10).state_dict().keys()  # BN buffers included
    assert ckpt["steps"] == res.info["steps"] and ckpt["bn_calibration"]["bn_calibrated"] is True
    full = tmp_path / "full.pt"  # the same network trained by the loop with a resumable checkpoint
    net = init(SPACE.build(ARCH, (1, 28, 28), 10), torch.Generator().manual_seed(0))
    splits = ev.splits()
    train(net, splits.loader("train", 32, seed=0), config=recipe, epochs=0.2, progress=False, checkpoint_path=full)
    weights_size, full_size = (tmp_path / "trial" / "checkpoint.pt").stat().st_size, full.stat().st_size
    assert weights_size < 0.4 * full_size
    with pytest.raises(CheckpointError, match="not a nasforge training checkpoint"):
        load_training_state(res.artifacts["checkpoint"], recipe, steps_per_epoch=7)
