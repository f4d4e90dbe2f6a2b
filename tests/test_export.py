"""export_model / load_exported round trips, ONNX parity, and ``nasforge export`` on a real (tiny) search run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue
from nasforge.eval.train_eval import init_weights
from nasforge.export import export_model, load_exported, onnx_available
from nasforge.spaces.mobilenet import MobileNet3Space
from nasforge.store import SQLiteStore
from nasforge.study import run_search

SHAPE, CLASSES = (1, 28, 28), 10
KWARGS = {"base_channels": [16, 24], "depths": [1, 2]}
SPACE = MobileNet3Space(**KWARGS)
needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnx / onnxruntime not installed")


@pytest.fixture(scope="module")
def trained():
    """A network of a sampled architecture with seeded weights and non-default BN statistics."""
    arch = SPACE.sample(np.random.default_rng(4))
    net = init_weights(SPACE.build(arch, SHAPE, CLASSES), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return arch, net.train()


def _x(n: int = 3, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_round_trip_reproduces_the_outputs(trained, tmp_path) -> None:
    arch, net = trained
    files = export_model(net, arch, tmp_path / "exp", input_shape=SHAPE, onnx=False, meta={"note": "hi"},
                         space_kwargs=KWARGS)
    assert sorted(files) == ["arch", "meta", "model"] and not (tmp_path / "exp" / "model.onnx").exists()
    assert net.training  # the caller's model is left as it was
    state = torch.load(files["model"], weights_only=True)
    assert set(state) == set(net.state_dict())
    info = json.loads(Path(files["arch"]).read_text())
    assert info["space"] == "menas-mt" and info["space_kwargs"] == KWARGS and info["num_classes"] == CLASSES
    assert info["input_shape"] == list(SHAPE) and info["arch"] == json.loads(arch.to_json())
    meta = json.loads(Path(files["meta"]).read_text())
    assert meta["meta"] == {"note": "hi"} and meta["onnx"]["exported"] is False
    model, arch2 = load_exported(tmp_path / "exp")
    assert arch2 == arch and not model.training
    with torch.no_grad():
        assert torch.equal(model(_x()), net.eval()(_x()))
    net.train()


@needs_onnx
def test_onnx_matches_torch_at_any_batch_size(trained, tmp_path) -> None:
    import onnxruntime as ort

    arch, net = trained
    files = export_model(net, arch, tmp_path / "exp", input_shape=SHAPE, onnx=True, space_kwargs=KWARGS,
                         example_input=_x(4, seed=2))
    meta = json.loads(Path(files["meta"]).read_text())
    assert meta["onnx"]["exported"] and meta["onnx"]["max_abs_diff"] <= 1e-3 and meta["onnx"]["parity_batch"] == 4
    session = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
    x = _x(5, seed=9)  # another batch size: the batch axis is dynamic
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = net.eval()(x).numpy()
    net.train()
    assert got.shape == (5, CLASSES) and np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("kw, needle", [
    ({"space_kwargs": None}, "space_kwargs: got {}; allowed: the constructor arguments of the space 'menas-mt'"),
    ({"input_shape": (3, 28, 28)}, "input_shape: got (3, 28, 28); allowed: a shape the model accepts"),
    ({"example_input": torch.zeros(2, 1, 14, 14)}, "example_input: got (2, 1, 14, 14); allowed: a float tensor"),
    ({"onnx": "yes"}, "onnx: got 'yes'; allowed: None"),
])
def test_bad_exports_are_one_line_errors(trained, tmp_path, kw, needle) -> None:
    arch, net = trained
    args = {"input_shape": SHAPE, "onnx": False, "space_kwargs": KWARGS, **kw}
    with pytest.raises(InvalidValue) as err:
        export_model(net, arch, tmp_path / "exp", **args)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_model_of_another_architecture_is_rejected(trained, tmp_path) -> None:
    arch, net = trained
    other = SPACE.make({**arch.to_dict(), "s1.l0.kernel": 5 if arch["s1.l0.kernel"] == 3 else 3})
    with pytest.raises(InvalidValue, match="^model: got 'a state dict of another network"):
        export_model(net, other, tmp_path / "exp", input_shape=SHAPE, onnx=False, space_kwargs=KWARGS)


# ------------------------------------------------------------------------------------------------ the CLI
RUN_CONFIG = {
    "name": "export-test",
    "space": {"name": "menas-ws", "kwargs": {"base_channels": [16, 24], "depths": [1],
                                             "downsample": [True, True], "expands": [3]}},
    "data": {"source": "embedded", "limit": 200, "val_fraction": 0.2, "test_fraction": 0.0},
    "strategy": {"name": "random"},
    "evaluator": {"kind": "train", "epochs": 0.1, "recipe": "nb201", "train": {"batch_size": 32}},
    "budget": 2, "seed": 0, "device": "cpu", "progress": False, "report": False,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real search run: menas-ws reduced to two one-layer stages, 2 trials of 0.1 epoch on 200 images (~4 s,
    so the tests that use it are marked slow)."""
    run = tmp_path_factory.mktemp("search") / "run"
    run_search(config_from_dict(RUN_CONFIG), run).close()
    return run


@pytest.mark.slow
def test_cli_exports_the_best_trial_of_a_search(run_dir, capsys) -> None:
    assert main(["export", str(run_dir), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    best = json.loads((run_dir / "best.json").read_text())["best"]
    assert row["trial"] == best["trial_id"] and row["accuracy"] == pytest.approx(best["value"])
    out = Path(row["out"])
    assert out == run_dir / "export" / f"trial-{best['trial_id']:05d}"
    expected = {"model.pt", "arch.json", "meta.json"} | ({"model.onnx"} if onnx_available() else set())
    assert {p.name for p in out.iterdir()} == expected
    with SQLiteStore(run_dir / "trials.sqlite") as store:
        trial = store.get(best["trial_id"])
    ckpt = torch.load(trial.checkpoint, weights_only=True)
    model, arch = load_exported(out)
    assert arch == trial.arch
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["meta"]["trial"] == best["trial_id"] and meta["meta"]["checkpoint_sha256"] == trial.checkpoint_sha256
    # 0.1 epochs: the trial was scored after BN calibration (auto), and those statistics are what is exported
    assert row["bn calibrated"] is True and meta["meta"]["bn_calibration"]["source"] == "trial checkpoint"
    assert meta["meta"]["bn_calibration"]["bn_calib_images"] == ckpt["bn_calibration"]["bn_calib_images"] == 160


@pytest.mark.slow
def test_export_calibrates_bn_statistics_that_were_not(tmp_path, run_dir, capsys) -> None:
    """A run scored without calibration (calibrate_bn: false): export re-estimates the statistics of its 0.1-epoch
    network (auto), --calibrate-bn false keeps them, and --calibrate-bn true on a calibrated run reproduces the
    trial's own statistics (same calibration batches)."""
    run = tmp_path / "stale"
    config = {**RUN_CONFIG, "budget": 1, "evaluator": {**RUN_CONFIG["evaluator"], "calibrate_bn": False}}
    run_search(config_from_dict(config), run).close()
    with SQLiteStore(run / "trials.sqlite") as store:
        trial = store.get(0)
    assert trial.result.info["bn_calibrated"] is False
    saved = torch.load(trial.checkpoint, weights_only=True)["model"]
    stats = [k for k in saved if k.endswith("running_mean")]
    for flag, calibrated in (("auto", True), ("false", False)):
        out = tmp_path / flag
        assert main(["export", str(run), "--out", str(out), "--no-onnx", "--calibrate-bn", flag,
                     "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["bn calibrated"] is calibrated
        state = load_exported(out)[0].state_dict()
        record = json.loads((out / "meta.json").read_text())["meta"]["bn_calibration"]
        if calibrated:  # 160 training images in 5 batches of 32 (fewer than calib_batches: the split ran out)
            assert record == {"bn_calibrated": True, "bn_calib_batches": 5, "bn_calib_images": 160,
                              "bn_calib_reason": "auto: trained 0.2 < 5 epochs", "source": "export"}
            assert all(not torch.equal(state[k], saved[k]) for k in stats)
            assert {int(v) for k, v in state.items() if k.endswith("num_batches_tracked")} == {5}
        else:
            assert record == {"bn_calibrated": False, "bn_calib_reason": "calibrate_bn: false"}
            assert all(torch.equal(state[k], saved[k]) for k in saved)
    out = tmp_path / "again"
    assert main(["export", str(run_dir), "--trial", "0", "--out", str(out), "--no-onnx", "--calibrate-bn", "true"]) == 0
    with SQLiteStore(run_dir / "trials.sqlite") as store:
        scored = torch.load(store.get(0).checkpoint, weights_only=True)["model"]
    state = load_exported(out)[0].state_dict()
    assert all(torch.allclose(state[k], scored[k], rtol=1e-5, atol=1e-6) for k in scored)


@pytest.mark.slow
def test_cli_exports_a_chosen_trial_without_onnx(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "t1"
    assert main(["export", str(run_dir), "--trial", "1", "--out", str(out), "--no-onnx"]) == 0
    assert "trial" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"model.pt", "arch.json", "meta.json"}
    model, arch = load_exported(out)
    with SQLiteStore(run_dir / "trials.sqlite") as store:
        assert arch == store.get(1).arch


@pytest.mark.slow
def test_cli_fails_in_one_line_on_a_corrupted_checkpoint(run_dir, tmp_path, capsys) -> None:
    with SQLiteStore(run_dir / "trials.sqlite") as store:
        path = Path(store.get(0).checkpoint)
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"0123456789")
        assert main(["export", str(run_dir), "--trial", "0", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("nasforge: error: checkpoint") and "does not match the recorded" in err
        assert "\n" not in err and not (tmp_path / "x").exists()
        path.unlink()
        assert main(["export", str(run_dir), "--trial", "0", "--out", str(tmp_path / "x")]) == 2
        assert "does not exist" in capsys.readouterr().err
    finally:
        path.write_bytes(original)


@pytest.mark.slow
@pytest.mark.parametrize("argv, needle", [
    (["--trial", "9"], "trial_id: got 9; allowed: an existing trial id (0..1)"),
    (["--arch", "x"], "--arch: got 'x'; allowed: nothing for a search run folder"),
    (["--calibrate-bn", "often"], "--calibrate-bn: got 'often'; allowed: 'auto', true or false"),
])
def test_cli_argument_errors(run_dir, capsys, argv, needle) -> None:
    assert main(["export", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_cli_on_folders_that_are_not_search_runs(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path)]) == 2
    assert "RUN_DIR: got" in capsys.readouterr().err
    (tmp_path / "supernet.pt").write_bytes(b"")
    assert main(["export", str(tmp_path)]) == 2
    assert "--arch: got None" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--arch", "x"]) == 2  # a supernet file but no config.yaml
    err = capsys.readouterr().err
    assert "RUN_DIR: got" in err and "config.yaml" in err and "\n" not in err.strip()


@pytest.mark.slow
def test_cli_explains_that_a_table_lookup_run_has_no_weights(run_dir, tmp_path, capsys) -> None:
    run = tmp_path / "tab"
    run.mkdir()
    shutil.copy(run_dir / "trials.sqlite", run / "trials.sqlite")
    (run / "config.yaml").write_text("space: nb201\nevaluator: {kind: tabular}\nbudget: 2\n")
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "a run whose trials were trained (evaluator kind 'train'; this one is 'tabular'" in err
    assert "\n" not in err


def test_custom_bignas_table_export_reloads(tmp_path):
    """A reduced BigNAS table (BigNASStage objects) is written as plain JSON and rebuilt by load_exported."""
    from nasforge.export import export_model, load_exported
    from nasforge.spaces.bignas import BigNASSpace, BigNASStage

    stages = (BigNASStage((8, 16), (1, 2), (3,), (1,), 1), BigNASStage((16, 24), (1, 2), (3, 5), (3,), 2))
    space = BigNASSpace(stages=stages, resolutions=(24, 32), stem_widths=(8,), head_widths=(32,))
    arch = space.largest()
    net = space.build(arch, (3, 32, 32), 10).eval()
    export_model(net, arch, tmp_path / "exp", input_shape=(3, 32, 32), onnx=False,
                 space_kwargs={"stages": stages, "resolutions": (24, 32), "stem_widths": (8,), "head_widths": (32,)})
    model, loaded = load_exported(tmp_path / "exp")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert loaded == arch
    assert torch.allclose(model.eval()(x), net(x), atol=1e-6)


@pytest.mark.slow
def test_program_export_runs_without_nasforge(tmp_path):
    """model.pt2 (torch.export, dynamic batch) reproduces the network's outputs at another batch size."""
    space = MobileNet3Space(base_channels=(16,), depths=(1,), kernels=(3,), expands=(2,), se=(False,))
    arch = space.largest()
    net = init_weights(space.build(arch, (1, 28, 28), 10), torch.Generator().manual_seed(0)).eval()
    files = export_model(net, arch, tmp_path / "exp", input_shape=(1, 28, 28), onnx=False, program=True,
                         space_kwargs={"base_channels": (16,), "depths": (1,), "kernels": (3,), "expands": (2,),
                                       "se": (False,)})
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    program = torch.export.load(files["program"]).module()
    assert torch.allclose(program(x), net(x), atol=1e-5)
    assert json.loads(Path(files["meta"]).read_text())["program"]["exported"] is True
