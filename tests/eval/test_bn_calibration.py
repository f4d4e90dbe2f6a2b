"""BN calibration before scoring (issue 12): a short-trained network scores at chance with the running statistics
training left and well above chance once they are re-estimated; the evaluator records it, saves the calibrated
statistics with the checkpoint, and ``calibrate_bn: auto | true | false`` decides when it happens."""
from __future__ import annotations

import pytest
import torch

from nasforge import get_space
from nasforge.config import config_from_dict
from nasforge.data import load_data
from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import TrainEvaluator
from nasforge.export import build_with_state
from nasforge.io import load_checkpoint
from nasforge.train import TrainConfig, evaluate
from nasforge.train.bn import AUTO_CALIB_EPOCHS, check_calibrate_mode, wants_calibration

#: three NB201 cells per stage (13 BatchNorm layers deep) on 8x8 digits: after 12 SGD steps at lr 0.1 the running
#: statistics (momentum 0.1) still hold ~30 % of their initial mean 0 / variance 1, and the network predicts one
#: class for every image (measured for seeds 0-5: 9.7-16.7 % stale, 40-63 % calibrated)
SPACE = get_space("nb201", C=8, N=3)
ARCH = SPACE.parse("|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
RECIPE = TrainConfig.from_recipe("nb201", batch_size=64, lr=0.1)
CHANCE = 10.0  # ten balanced classes


@pytest.fixture(scope="module")
def splits():
    return load_data({"source": "digits", "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0})


def _evaluator(splits, mode, **kw) -> TrainEvaluator:
    return TrainEvaluator(SPACE, splits, epochs=0.5, train_config=RECIPE, device="cpu", threads=1,
                          calibrate_bn=mode, calib_batches=8, **kw)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_short_trained_net_scores_chance_stale_and_well_above_chance_calibrated(splits, seed):
    on = _evaluator(splits, True, checkpoints=False).evaluate(ARCH, seed=seed)
    off = _evaluator(splits, False, checkpoints=False).evaluate(ARCH, seed=seed)
    assert on.info["steps"] == off.info["steps"] == 12  # half an epoch of 1,438 images at batch 64
    # the same seed trains the same weights: with calibration off the score is the stale one ...
    stale = off.metrics["accuracy"]
    assert on.info["accuracy_uncalibrated"] == stale
    assert stale < CHANCE + 8  # ~chance: the net predicts (almost) one class
    assert off.info["bn_calibrated"] is False and off.info["bn_calib_images"] == 0
    # ... and re-estimating the statistics on 8 training batches makes the same weights score well above chance
    assert on.metrics["accuracy"] > 35.0 and on.metrics["accuracy"] - stale > 25.0
    assert on.info["bn_calibrated"] is True
    assert on.info["bn_calib_batches"] == 8 and on.info["bn_calib_images"] == 8 * 64


def test_the_calibrated_statistics_are_saved_with_the_checkpoint(splits, tmp_path):
    res = _evaluator(splits, "auto").evaluate(ARCH, seed=4, context={"trial_dir": str(tmp_path)})
    assert res.info["bn_calibrated"] is True and res.info["bn_calib_reason"] == "auto: trained 0.522 < 5 epochs"
    ckpt = load_checkpoint(res.artifacts["checkpoint"], sha256=res.info["checkpoint_sha256"])
    assert ckpt["bn_calibration"]["bn_calib_images"] == 512
    net = build_with_state(SPACE, ARCH, splits.input_shape, splits.num_classes, ckpt["model"])
    tracked = {int(v) for k, v in ckpt["model"].items() if k.endswith("num_batches_tracked")}
    assert tracked == {8}  # every BN layer holds the cumulative average of the 8 calibration batches
    score = evaluate(net, splits.loader("val", 512), "cpu")["accuracy"]
    assert score == pytest.approx(res.metrics["accuracy"], abs=1e-9)  # the saved net scores what was recorded
    assert score > res.info["accuracy_uncalibrated"] + 25.0


def test_auto_calibrates_short_trainings_and_changed_weights_only():
    assert AUTO_CALIB_EPOCHS == 5.0
    assert wants_calibration("auto", epochs=0.5) == (True, "auto: trained 0.5 < 5 epochs")
    assert wants_calibration("auto", epochs=4.99)[0] is True
    assert wants_calibration("auto", epochs=5.0) == (False, "auto: trained 5 >= 5 epochs")
    assert wants_calibration("auto", epochs=None)[0] is True
    for how in ("pruned", "inherited", "sliced"):
        assert wants_calibration("auto", epochs=30.0, modified=how) == (True, f"auto: weights {how}")
    assert wants_calibration(True, epochs=30.0) == (True, "calibrate_bn: true")
    assert wants_calibration(False, epochs=0.1, modified="pruned") == (False, "calibrate_bn: false")
    with pytest.raises(InvalidValue, match="^modified: got 'grown'"):
        wants_calibration("auto", epochs=1.0, modified="grown")


def test_bad_calibrate_bn_values_are_one_line_errors(splits):
    assert [check_calibrate_mode(v) for v in ("auto", True, False, "true", "False")] == \
        ["auto", True, False, True, False]
    for bad in ("yes", 1, 0, None, "on"):
        with pytest.raises(InvalidValue, match=r"^calibrate_bn: got .*; allowed: 'auto', true or false$"):
            check_calibrate_mode(bad)
    with pytest.raises(InvalidValue, match=r"^calibrate_bn: got 'sometimes'"):
        TrainEvaluator(SPACE, splits, calibrate_bn="sometimes")
    with pytest.raises(InvalidValue, match=r"^calib_batches: got 0; allowed: a positive int$"):
        TrainEvaluator(SPACE, splits, calib_batches=0)
    for kind in ("train", "menas"):
        with pytest.raises(InvalidValue, match=r"^evaluator\.calibrate_bn: got 'maybe'; allowed: 'auto', true or "
                                               r"false$"):
            config_from_dict({"space": "menas-ws", "evaluator": {"kind": kind, "calibrate_bn": "maybe"}})
        with pytest.raises(InvalidValue, match=r"^evaluator\.calib_batches: got 0"):
            config_from_dict({"space": "menas-ws", "evaluator": {"kind": kind, "calib_batches": 0}})
    cfg = config_from_dict({"space": "menas-ws", "evaluator": {"kind": "train", "calibrate_bn": False}})
    assert cfg.evaluator.calibrate_bn is False and cfg.evaluator.calib_batches == 20


def test_a_network_without_batchnorm_is_not_calibrated():
    from nasforge.train.bn import calibrate_for_scoring

    record = calibrate_for_scoring(torch.nn.Linear(4, 2), [torch.zeros(3, 4)], 5, reason="r")
    assert record == {"bn_calibrated": False, "bn_calib_batches": 0, "bn_calib_images": 0, "bn_calib_reason": "r"}
