"""``nasforge supernet train / eval`` end to end on the embedded Fashion-MNIST subset (nasforge.cli.supernet)."""
from __future__ import annotations

import json

import pytest
import yaml

from nasforge.cli import main
from nasforge.cost import AnalyticCost
from nasforge.io import sha256_file
from nasforge.methods.bignas import build_supernet_space, load_supernet_config

TINY = {
    "name": "tiny",
    "method": "bignas",
    "space": {"name": "bignas", "kwargs": {
        "resolutions": [12, 16], "stem_widths": [4, 8], "head_widths": [16],
        "stages": [{"widths": [4, 8], "depths": [1, 2], "kernels": [3, 5], "expands": [1], "stride": 1},
                   {"widths": [8, 12], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3], "stride": 2}]}},
    "data": {"source": "embedded", "limit": 200, "image_size": 16, "val_fraction": 0.2, "test_fraction": 0.2},
    "train": {"batch_size": 24, "warmup_epochs": 0.2},
    "epochs": 1,
    "calib_batches": 2,
    "eval_batch_size": 20,
    "eval_batches": 2,
    "checkpoint_every": 2,
    "device": "cpu",
}


#: TINY trained long enough to learn: 500 images (300 train, 100 test), 5 epochs of 15 sandwich steps at a learning
#: rate that moves the tiny supernet (~5 s). Measured on the test split: smallest 40%, largest 46% (chance 10%);
#: with BN calibration skipped 11% / 12%; with the soft targets misaligned (teacher of another image) the smallest
#: child, which learns only from them, 3%.
TRAINED = {**TINY, "epochs": 5, "data": {**TINY["data"], "limit": 500},
           "train": {**TINY["train"], "batch_size": 20, "lr": 0.15}}
#: accuracy (%) a trained child must reach on the 100 test images: 2.5x chance (P(>= 25 of 100) < 1e-5 by chance)
ABOVE_CHANCE = 25.0


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A supernet trained by the CLI on TRAINED (shared by the tests below; they do not modify it)."""
    folder = tmp_path_factory.mktemp("supernet")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TRAINED))
    run_dir = folder / "run"
    code = main(["supernet", "train", str(config), "--out", str(run_dir), "--no-progress", "--format", "json"])
    assert code == 0
    return config, run_dir


def test_train_writes_the_run_folder(trained):
    _, run_dir = trained
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "supernet.pt", "train_log.jsonl", "result.json"}
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [15, 30, 45, 60, 75]  # 300 training images / 20 per epoch
    assert all(set(r["loss"]) == {"largest", "smallest", "random"} for r in rows)
    # it learned: every role's loss fell from the first epoch to the last, and the per-epoch log (BN-calibrated
    # children on 40 validation images) is clearly above chance at the end
    assert all(rows[-1]["loss"][k] < rows[0]["loss"][k] - 0.1 for k in rows[0]["loss"]), rows
    assert rows[-1]["acc_smallest"] >= 20.0 and rows[-1]["acc_largest"] >= 20.0, rows[-1]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 75 and result["checkpoint_sha256"] == sha256_file(run_dir / "supernet.pt")
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["sandwich"] is True and resolved["recipe"] == "bignas" and resolved["epochs"] == 5.0


def test_eval_prints_accuracy_params_and_flops(trained, capsys):
    config, run_dir = trained
    space = build_supernet_space(load_supernet_config(config))
    arch = space.sample(__import__("numpy").random.default_rng(3))
    code, out, _ = run(capsys, "supernet", "eval", str(run_dir), "--arch", space.format(arch), "--calib-batches",
                       "2", "--format", "json")
    assert code == 0
    row = json.loads(out)
    costs = AnalyticCost(space, (1, 16, 16), 10).cost(arch)
    assert row["arch"] == space.format(arch) and row["split"] == "test" and row["calib_batches"] == 2
    assert (row["params"], row["flops"]) == (costs["params"], costs["flops"])
    # the trained children beat chance (10%) clearly on the 100 test images: the largest learns from the labels,
    # the smallest only from the largest's soft labels (inplace distillation), and both are scored after BN
    # calibration (the supernet's running statistics are never trained: without calibration they score ~10%)
    for name in ("smallest", "largest"):
        code, out, _ = run(capsys, "supernet", "eval", str(run_dir), "--arch", name, "--format", "json")
        row = json.loads(out)
        assert code == 0 and row["arch"] == space.format(getattr(space, name)())
        assert row["accuracy"] >= ABOVE_CHANCE, (name, row)


def test_resume_continues_a_run(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    assert run(capsys, "supernet", "train", str(config), "--out", str(run_dir), "--no-progress")[0] == 0
    code, _, err = run(capsys, "supernet", "train", str(config), "--out", str(run_dir), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "--out" in err and "--resume" in err
    code, out, _ = run(capsys, "supernet", "train", "--resume", "--out", str(run_dir), "--set", "epochs=2",
                       "--no-progress", "--format", "json")
    assert code == 0 and json.loads(out)["steps"] == 10
    assert len((run_dir / "train_log.jsonl").read_text().splitlines()) == 2
    code, _, err = run(capsys, "supernet", "train", "--resume", "--out", str(run_dir), "--set", "seed=5")
    assert code == 2 and "config.seed" in err and "must match the checkpoint" in err


@pytest.mark.parametrize("argv,needle", [
    (["supernet", "eval"], "RUN_DIR"),
    (["supernet", "eval", "{run}"], "--arch"),
    (["supernet", "eval", "{run}", "--arch", "r9_c9"], "cannot parse"),
    (["supernet", "eval", "{run}", "--arch", "smallest", "--set", "epochs=2"], "--set"),
    (["supernet", "train", "{config}", "--set", "sandwitch=false"], "sandwitch: got False; allowed: no such field"),
    (["supernet", "train", "{config}", "--arch", "smallest"], "--arch"),
    (["supernet", "train", "missing.yaml"], "does not exist"),
    (["supernet", "select", "{run}"], "--budgets"),
    (["supernet", "train", "{config}", "--resume"], "--resume: got True"),
    (["supernet", "train", "{config}", "--device", "cuda:3"], "--device"),
    (["supernet", "select", "{run}", "--budgets", "half"], "--budgets: got 'half'"),
    (["supernet", "select", "{run}", "--budgets", "0.5", "--arch", "S"], "--arch"),
    (["supernet", "eval", "{run}", "--arch", "smallest", "--mutation", "any"], "--mutation"),
    (["supernet", "select", "{run}", "--budgets", "0.5", "--mutation", "far"], "--mutation: got 'far'"),
])
def test_errors_are_one_line(trained, capsys, argv, needle):
    config, run_dir = trained
    argv = [a.format(run=run_dir, config=config) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_select_writes_a_family_and_export_takes_a_member_name(trained, tmp_path, capsys):
    import shutil

    _, run_dir = trained
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)  # select adds family.json: keep the shared run folder untouched
    code, out, err = run(capsys, "supernet", "select", str(folder), "--budgets", "0.5,1.0", "--n-fine", "2",
                         "--format", "json")
    assert code == 0, err
    members = json.loads(out)["members"]
    assert [m["member"] for m in members] == ["S", "M"]
    assert members[0]["flops"] <= members[1]["flops"]
    family = json.loads((folder / "family.json").read_text())
    assert [m["name"] for m in family["members"]] == ["S", "M"]
    assert family["info"]["mutation"] == "neighbour"  # BigNAS Sec. 4.4 "slightly": one-step mutations by default
    code, out, _ = run(capsys, "export", str(folder), "--arch", "S", "--out", str(tmp_path / "exp"), "--no-onnx",
                       "--format", "json")
    assert code == 0
    exported = json.loads((tmp_path / "exp" / "arch.json").read_text())
    assert exported["arch_str"] == family["members"][0]["arch"]
    code, _, err = run(capsys, "supernet", "select", str(folder), "--budgets", "1.0", "--n-fine", "1", "--mutation",
                       "any", "--format", "json")  # the old redraw-to-any-value mutations, on request
    assert code == 0, err
    assert json.loads((folder / "family.json").read_text())["info"]["mutation"] == "any"


@pytest.mark.slow
def test_select_on_measured_latency_budgets(trained, tmp_path, capsys):
    """Issue 12: --budgets latency_ms:MAX times every child's standalone network on --device (batch 1, one thread).
    A budget below the cheapest skeleton names its measured latency; budgets above it give members within them."""
    import re
    import shutil

    _, run_dir = trained
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    code, _, err = run(capsys, "supernet", "select", str(folder), "--budgets", "latency_ms:1e-6")
    assert code == 2 and err.count("\n") == 1
    cheapest = float(re.search(r"allowed: latency_ms >= ([0-9.e+-]+) \(the cheapest skeleton\)", err).group(1))
    assert 0 < cheapest < 1000
    small = 20 * cheapest  # far above timing noise, below the 1 s budget of M
    code, out, err = run(capsys, "supernet", "select", str(folder), "--budgets", f"latency_ms:1000,latency_ms:{small}",
                         "--n-fine", "2", "--format", "json")
    assert code == 0, err
    members = json.loads(out)["members"]
    assert [m["member"] for m in members] == ["S", "M"]
    assert members[0]["latency_ms"] <= small and members[1]["latency_ms"] <= 1000
    family = json.loads((folder / "family.json").read_text())
    assert family["info"]["latency"] == {"source": "measured", "device": "cpu", "threads": 1, "warmup": 3,
                                         "repeats": 5, "min_run_time": 0.02}
    assert all("latency_ms" in e for e in family["coarse"])


@pytest.mark.parametrize("argv,needle", [
    (["--budgets", "latency_ms:5", "--lut", "help:pixel3"],
     "--lut: got 'help:pixel3'; allowed: a table of space 'bignas' (this one holds 'nb201' latencies)"),
    (["--budgets", "latency_ms:5", "--lut", "help:no-such-device"], "--lut help:DEVICE: got 'no-such-device'"),
    (["--budgets", "latency_ms:5", "--lut", "missing.json"], "--lut: got 'missing.json'"),
    (["--budgets", "0.5", "--lut", "help:pixel3"], "--lut: got 'help:pixel3'; allowed: only with latency_ms budgets"),
])
def test_select_latency_table_errors_are_one_line(trained, capsys, argv, needle):
    _, run_dir = trained
    code, _, err = run(capsys, "supernet", "select", str(run_dir), *argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (run_dir / "family.json").exists()


def test_menas_spaces_train_without_transition_skips(tmp_path, capsys):
    """The pipeline trains any nesting MBConv space (menas-ws here); the bignas-only transition_skip switch
    resolves to false for it and is an error when set explicitly."""
    from nasforge.methods.bignas import supernet_config_from_dict

    raw = {**TINY, "space": {"name": "menas-ws", "kwargs": {"base_channels": [8, 16], "downsample": [True, True],
                                                             "kernels": [3, 5]}}}
    config = supernet_config_from_dict(raw)
    assert config.resolved()["transition_skip"] is False
    assert build_supernet_space(config).name == "menas-ws"
    with pytest.raises(Exception, match="transition_skip: got True"):
        supernet_config_from_dict({**raw, "transition_skip": True})
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump({**raw, "epochs": 0.2}))
    code, out, err = run(capsys, "supernet", "train", str(path), "--out", str(tmp_path / "run"), "--no-progress",
                         "--format", "json")
    assert code == 0, err
    code, out, err = run(capsys, "supernet", "eval", str(tmp_path / "run"), "--arch", "largest", "--format", "json")
    assert code == 0 and json.loads(out)["params"] > 0, err
