"""Guards around a run folder: a rejected resume changes nothing, one process per folder, config errors that
would fail every trial are caught before the first one."""
from __future__ import annotations

import pytest

from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue, NasforgeError
from nasforge.study import Study, build_study

NB201 = {"name": "t", "space": "nb201", "strategy": {"name": "regularized-evolution"},
         "evaluator": {"kind": "tabular", "dataset": "cifar10", "protocol": "hp12-valid"},
         "budget": 12, "seed": 0, "progress": False, "report": False}


def test_resume_accepts_budget_but_rejects_overrides_that_change_the_run(tmp_path) -> None:
    run = tmp_path / "r"
    with build_study(config_from_dict(NB201), run) as study:
        study.run()
    before = (run / "config.yaml").read_text()
    with pytest.raises(InvalidValue, match="seed"):
        Study.resume(run, overrides=["seed=3"])
    assert (run / "config.yaml").read_text() == before
    with Study.resume(run, overrides=["budget=20"]) as study:
        study.run()
        assert study.n_finished == 20


def test_a_run_folder_in_use_is_refused(tmp_path) -> None:
    run = tmp_path / "r"
    first = build_study(config_from_dict({**NB201, "budget": 3}), run)
    first.run()
    try:
        with pytest.raises(InvalidValue, match="no other nasforge process"):
            Study.resume(run, overrides=["budget=6"]).run()
    finally:
        first.close()
    with Study.resume(run, overrides=["budget=6"]) as again:  # released on close
        again.run()
        assert again.n_finished == 6


def test_bad_device_or_data_fail_before_any_trial(tmp_path) -> None:
    train_cfg = {**NB201, "space": {"name": "nb201", "kwargs": {"C": 8, "N": 1}},
                 "evaluator": {"kind": "train", "epochs": 0.1}, "data": {"source": "digits"}}
    with pytest.raises(InvalidValue, match="device"):
        build_study(config_from_dict({**train_cfg, "device": "cuda:9"}), tmp_path / "a")
    with pytest.raises(NasforgeError, match="data.source"):
        build_study(config_from_dict({**train_cfg, "data": {"source": str(tmp_path / "missing")}}), tmp_path / "b")
    assert not (tmp_path / "a" / "trials.sqlite").exists()
