"""The foundation CLI commands (spaces, sample, cost, data, train) end to end through ``nasforge.cli.main``:
machine-readable output, and bad input as one line on stderr with exit status 2."""
from __future__ import annotations

import json

import pytest

from nasforge import get_space, parse
from nasforge.cli import main

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_lists_every_space_with_its_cardinality(capsys) -> None:
    code, out, _ = run(capsys, "spaces", "--format", "json")
    rows = {r["space"]: r for r in json.loads(out)}
    assert code == 0 and rows["nb201"]["cardinality"] == 15625
    assert set(rows) >= {"menas-mt", "menas-ws", "bignas", "proxyless-basic", "proxyless-large", "nb201"}


def test_sample_is_seeded_and_parses_back(capsys) -> None:
    _, a, _ = run(capsys, "sample", "menas-ws", "-n", "3", "--seed", "4")
    _, b, _ = run(capsys, "sample", "menas-ws", "-n", "3", "--seed", "4")
    lines = a.split()
    assert a == b and len(lines) == 3
    assert all(parse(s, "menas-ws").space == "menas-ws" for s in lines)


def test_cost_reports_analytic_params_and_flops(capsys) -> None:
    code, out, _ = run(capsys, "cost", "nb201", BEST_C10, "--format", "json")
    row = json.loads(out)
    space = get_space("nb201")
    assert code == 0 and row["params"] == 1_073_466 == space.params(parse(BEST_C10, "nb201"))
    code, out, _ = run(capsys, "cost", "nb201", BEST_C10, "--input", "1x28x28", "--classes", "3", "--format", "json")
    assert json.loads(out)["params"] == space.params(parse(BEST_C10, "nb201"), (1, 28, 28), 3)


def test_data_describes_a_real_source(capsys, shared_data) -> None:
    code, out, _ = run(capsys, "data", str(shared_data / "cifar10_jpeg"), "--limit", "500", "--format", "json")
    info = json.loads(out)
    assert code == 0 and info["input_shape"] == "3x32x32" and info["classes"] == 10 and info["format"] == "npz"


@pytest.mark.slow
def test_train_writes_result_and_checkpoint(capsys, tmp_path) -> None:
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    code, out, _ = run(capsys, "train", "nb201", cell, "--data", "digits", "--epochs", "2", "--batch-size", "32",
                       "--out", str(tmp_path), "--format", "json")
    row = json.loads(out)
    assert code == 0 and row["test accuracy"] > 20  # 10 classes: chance is 10 %
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["arch_str"] == cell and (tmp_path / "checkpoint.pt").is_file()
    # 2 < 5 epochs: BN re-calibrated (auto) on 20 training batches of 32 before the score, and recorded
    assert row["bn calibrated"] is True and row["bn calib images"] == 20 * 32
    info = saved["result"]["info"]
    assert info["bn_calibrated"] is True and info["bn_calib_images"] == 640
    assert row["test accuracy before calibration"] == info["accuracy_uncalibrated"]


@pytest.mark.parametrize("argv,needle", [
    (["sample", "nope"], "space: got 'nope'"),
    (["sample", "nb201", "--seed", "-1"], "--seed: got '-1'"),
    (["sample", "nb201", "-n", "0"], "-n: got '0'"),
    (["cost", "nb201", "|bad~0|"], "cannot parse"),
    (["cost", "menas-mt", "r9_s2"], "menas-mt"),
    (["cost", "nb201", BEST_C10, "--input", "3x32"], "--input: got '3x32'"),
    (["cost", "nb201", BEST_C10, "--latency", "--backend", "tpu"], "backend: got 'tpu'"),
    (["data", "/no/such/path"], "data.source"),
    (["train", "nb201", BEST_C10, "--data", "digits", "--device", "cuda:7"], "device"),
    (["train", "nb201", BEST_C10, "--data", "digits", "--recipe", "adam"], "recipe: got 'adam'"),
    (["train", "nb201", BEST_C10, "--data", "digits", "--calibrate-bn", "maybe"],
     "--calibrate-bn: got 'maybe'; allowed: 'auto', true or false"),
    (["train", "nb201", BEST_C10, "--data", "digits", "--calib-batches", "0"], "--calib-batches: got '0'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects option types itself (also status 2)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err.strip().splitlines()[-1] and "Traceback" not in err
