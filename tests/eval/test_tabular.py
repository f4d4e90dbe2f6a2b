"""Tabular evaluation (nasforge.eval.tabular) on the packaged NAS-Bench-201 table and on user tables."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from nasforge import get_space
from nasforge.errors import DataError, InvalidArchitecture, InvalidValue, UnknownName
from nasforge.eval.base import Evaluator, SupportsEvaluate
from nasforge.eval.tabular import TabularEvaluator, read_table
from nasforge.trial import Result

SPACE = get_space("nb201")
A6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def c10() -> TabularEvaluator:
    return TabularEvaluator.nb201("cifar10", "hp12-valid")


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[dict[str, str]]:
    with gzip.open(shared_data / "nb201_accuracy" / "nb201_accuracy.csv.gz", "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# ------------------------------------------------------------------------------------------------ NAS-Bench-201
def test_known_rows(c10: TabularEvaluator) -> None:
    r = c10.evaluate(SPACE.from_index(6111), seed=3)
    assert r.metrics == {"accuracy": pytest.approx(84.384, abs=1e-6), "test_accuracy": pytest.approx(94.3733, abs=1e-4)}
    assert r.metrics["test_accuracy"] == 94.37333333333333  # the CSV's float, exactly
    assert r.info["arch_index"] == 6111 and r.info["table"] == "nb201_accuracy.csv.gz"
    assert r.costs == {"params": 1_073_466, "flops": SPACE.flops(SPACE.parse(A6111))}
    assert c10.evaluate(SPACE.parse(A6111), seed=None) == r  # the table is a mean over seeds: seed has no effect
    assert isinstance(c10, Evaluator) and isinstance(c10, SupportsEvaluate)
    assert c10.name == "tabular:nb201-cifar10-hp12-valid" and len(c10) == 15625
    assert Result.from_dict(r.to_dict()) == r


def test_every_row_matches_the_shared_csv(rows: list[dict[str, str]]) -> None:
    archs = [SPACE.parse(row["arch_str"]) for row in rows]
    for dataset in ("cifar10", "cifar100"):
        ev = TabularEvaluator.nb201(dataset, "hp12-valid", costs=False)
        for row, arch in zip(rows, archs):
            r = ev.evaluate(arch)
            assert r.metrics == {"accuracy": float(row[f"{dataset}_valid_hp12"]),
                                 "test_accuracy": float(row[f"{dataset}_test_hp200"])}
            assert r.info["arch_index"] == int(row["arch_index"]) and r.costs == {}


def test_protocols_datasets_and_best() -> None:
    test200 = TabularEvaluator.nb201("cifar100", "hp200-test")
    a9930 = SPACE.from_index(9930)
    r = test200.evaluate(a9930)
    assert r.metrics["accuracy"] == r.metrics["test_accuracy"] == pytest.approx(73.5133, abs=1e-4)
    # CIFAR-100 head: 64 x 100 classifier instead of 64 x 10
    assert r.costs["params"] == 1_288_506 + 64 * 90 + 90 == SPACE.params(a9930, num_classes=100)
    assert test200.best() == (a9930, r.metrics["accuracy"])
    best10, value = TabularEvaluator.nb201("cifar10", "hp200-test").best()
    assert SPACE.index(best10) in (6111, 13714) and value == pytest.approx(94.3733, abs=1e-4)
    with pytest.raises(InvalidValue, match="dataset of nb201 table: got 'imagenet'; allowed: 'cifar10', 'cifar100'"):
        TabularEvaluator.nb201("imagenet")
    with pytest.raises(InvalidValue, match="protocol.*'hp12-valid', 'hp200-test'"):
        TabularEvaluator.nb201("cifar10", "hp200-valid")
    with pytest.raises(InvalidValue, match="metric.*'accuracy', 'test_accuracy'"):
        test200.best("loss")


def test_results_are_fresh_values(c10: TabularEvaluator) -> None:
    a = SPACE.largest()
    r1 = c10.evaluate(a)
    r1.metrics["accuracy"] = -1.0
    r1.costs["params"] = 0
    r2 = c10(a)
    assert r2.metrics["accuracy"] > 0 and r2.costs["params"] == SPACE.params(a)


def test_unknown_architectures_and_columns(c10: TabularEvaluator, tmp_path: Path) -> None:
    other = get_space("menas-mt").smallest()
    with pytest.raises(InvalidArchitecture, match="architecture of tabular:nb201-cifar10-hp12-valid.*15625"):
        c10.evaluate(other)
    with pytest.raises(InvalidArchitecture, match="architecture"):
        c10.evaluate(A6111)  # type: ignore[arg-type]  # a string, not an Architecture
    assert other not in c10 and SPACE.parse(A6111) in c10
    with pytest.raises(InvalidValue, match="column of table nb201_accuracy.csv.gz: got 'cifar10_valid_hp200'; "
                                           "allowed: 'arch_index', 'arch_str'"):
        TabularEvaluator(None, "cifar10_valid_hp200")
    with pytest.raises(InvalidValue, match="column.*'cell'"):
        TabularEvaluator(None, "cifar10_test_hp12", arch_column="cell")
    with pytest.raises(UnknownName, match="space: got 'nb999'"):
        TabularEvaluator(None, "cifar10_test_hp12", space="nb999")
    with pytest.raises(DataError, match="no_such.csv"):
        TabularEvaluator(tmp_path / "no_such.csv", "acc")


# ------------------------------------------------------------------------------------------------ user tables
@pytest.mark.parametrize("name", ["mine.csv", "mine.csv.gz"])
def test_user_table(tmp_path: Path, name: str) -> None:
    a, b = SPACE.smallest(), SPACE.largest()
    path = _write(tmp_path / name, ["cell,acc,loss,tag", f"{a},12.5,2.0,x", f'"{b}",77.25,0.5,y'])
    ev = TabularEvaluator(path, "acc", arch_column="cell", extra_metrics={"val_loss": "loss"},
                          info_columns=("tag",), costs=False)
    assert ev.evaluate(b).metrics == {"accuracy": 77.25, "val_loss": 0.5}
    assert ev.evaluate(a).info == {"table": name, "row": 0, "tag": "x"}
    assert ev.architectures() == [a, b] and ev.best("val_loss", maximize=False) == (b, 0.5)
    ev2 = TabularEvaluator(path, "loss", arch_column="cell", metric_key="loss", extra_metrics=["acc"],
                           input_shape=(1, 28, 28), num_classes=5)
    r = ev2.evaluate(a)
    assert r.metrics == {"loss": 2.0, "acc": 12.5}
    assert r.costs == {"params": SPACE.params(a, (1, 28, 28), 5), "flops": SPACE.flops(a, (1, 28, 28), 5)}
    with pytest.raises(InvalidArchitecture, match="one of the 2 architectures of table " + name.replace(".", r"\.")):
        ev.evaluate(SPACE.from_index(0))
    assert read_table(path)["acc"] == ("12.5", "77.25")


@pytest.mark.parametrize("lines, match", [
    (["cell,acc", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,n/a"], r"column 'acc', row 0: got 'n/a'"),
    (["cell,acc", "|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|,1"], r"column 'cell', row 0: .*conv"),
    (["cell,acc", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1",
      " |none~0|+|none~0|none~1|+|none~0|none~1|none~2|,2"], r"row 1: got .* again \(first in row 0\)"),
    (["cell,acc", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,3"], r"line 2: got 3 fields; allowed: 2"),
    (["cell,acc,acc", "x,1,2"], "duplicate column names"),
    ([""], "empty file"),
])
def test_bad_user_tables(tmp_path: Path, lines: list[str], match: str) -> None:
    path = _write(tmp_path / "bad.csv", lines)
    with pytest.raises(DataError, match=match):
        TabularEvaluator(path, "acc", arch_column="cell")


# ------------------------------------------------------------------------------------------------ latency
def test_latency_table(shared_data: Path) -> None:
    path = shared_data / "nb201_latency_help" / "nb201_latency_ms.csv.gz"
    ev = TabularEvaluator.nb201("cifar10", latency_table=path, latency_device="gold_6226")
    r = ev.evaluate(SPACE.from_index(0))
    assert r.costs["latency_ms"] == 10.524625778198242  # row 0 of the HELP table
    assert r.costs["params"] == SPACE.params(SPACE.from_index(0))
    with pytest.raises(InvalidValue, match="latency_device of table nb201_latency_ms.csv.gz: got 'tpu'.*'1080ti_1'"):
        TabularEvaluator.nb201("cifar10", latency_table=path, latency_device="tpu")
    with pytest.raises(InvalidValue, match="latency_device"):
        TabularEvaluator.nb201("cifar10", latency_table=path)
    with pytest.raises(InvalidValue, match="latency_table"):
        TabularEvaluator.nb201("cifar10", latency_device="gold_6226")
