"""MENAS end to end on real data (the embedded Fashion-MNIST, 300 images): two generations through the study,
lineage (ticket -> net, child -> parent ticket or large model), inherited checkpoints, and a resumed run that
equals a straight one."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from nasforge.config import config_from_dict
from nasforge.errors import InvalidValue
from nasforge.eval.menas import INHERITANCE_NAME
from nasforge.methods.menas import SUMMARY_NAME, run_menas
from nasforge.prune import pruning_proposals
from nasforge.study import Study, run_search
from nasforge.trial import TrialState

CONFIG = {
    "name": "menas-tiny",
    "space": {"name": "menas-mt", "kwargs": {"base_channels": [16, 24], "depths": [1, 2], "kernels": [3, 5],
                                             "expands": [3, 6], "widths": [0.5, 1.0]}},
    "data": {"source": "embedded", "limit": 300, "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
    "strategy": {"name": "menas", "params": {"population_size": 3, "parent_size": 2, "num_children": 2,
                                             "generations": 2, "lottery_tickets": 1}},
    "evaluator": {"kind": "menas", "epochs_init": 2.0, "epochs_child": 0.1, "epochs_finetune": 0.1,
                  "proposals": 3, "calib_batches": 2, "rank_images": 40, "threads": 1, "eval_batch_size": 64,
                  "train": {"batch_size": 32, "warmup_epochs": 0.01, "nan_check_interval": 5}},
    "constraints": [{"name": "flops", "min": 4.0e6, "max": 1.0e7}],
    "seed": 0, "device": "cpu", "progress": False, "report": False,
}
N_TRIALS = 3 * 2 + 1 * 2 * 2  # P (1 + T) + (G - 1) C (1 + T)
#: accuracy (%) a BN-calibrated network must reach on the 40 rank / 60 validation images: 2.5x chance (10 classes).
#: Measured: lottery rankings 36-48%, tickets 37-47%; with the ticket's BN re-calibration skipped tickets score 10%.
ABOVE_CHANCE = 25.0


def decisions(trials) -> list:
    """What a search decided and measured, trial by trial."""
    return [(t.id, t.arch.key(), t.info.get("kind"), t.parents, t.generation, t.state,
             t.result.metrics["accuracy"] if t.result else None) for t in trials]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("menas") / "run"
    study = run_menas(CONFIG, run_dir)
    yield study, run_dir
    study.close()


@pytest.mark.slow
def test_two_generations_record_lineage_and_inherited_checkpoints(straight):
    study, run_dir = straight
    trials = study.trials()
    assert len(trials) == N_TRIALS == study.budget and all(t.state is TrialState.COMPLETE for t in trials)
    by_id = {t.id: t for t in trials}
    kinds = [(t.generation, t.info["kind"]) for t in trials]
    assert kinds.count((0, "init")) == 3 and kinds.count((0, "ticket")) == 3
    assert kinds.count((1, "child")) == 2 and kinds.count((1, "ticket")) == 2
    for t in trials:
        if t.info["kind"] in ("init", "child"):  # nets satisfy the FLOPs budget and rank their tickets
            distinct = len(pruning_proposals(study.space, t.arch, 40, np.random.default_rng(0)))  # <= 40: all
            assert 4.0e6 <= t.result.costs["flops"] <= 1.0e7
            assert len(t.result.info["lottery_tickets"]) == min(3, distinct)
            # the trained weights (E_init = 2 epochs, or inherited) are above chance once BN is re-calibrated:
            # the lottery ranking (step 2(c)-(d)) of every net; a net's own score uses the BN statistics training
            # left, at chance after 14 steps (TrainEvaluator's documented limitation), so it is not checked
            assert t.result.info["lottery_tickets"][0]["accuracy"] >= ABOVE_CHANCE, t.result.info["lottery_tickets"]
            cost = t.result.info["lottery_cost"]
            n = len(t.result.info["lottery_tickets"])
            assert (cost["proposals"], cost["calib_images"], cost["rank_images"]) == (n, n * 2 * 32, n * 40)
        else:  # a ticket: truncated, BN re-calibrated, fine-tuned from a trained net; exempt from the FLOPs window
            assert t.result.metrics["accuracy"] >= ABOVE_CHANCE, (t.id, t.result.metrics)
            parent = by_id[t.parents[0]]
            ranked = {r["arch"]: r for r in parent.result.info["lottery_tickets"]}
            assert t.result.costs["flops"] == ranked[study.space.format(t.arch)]["flops"] < parent.result.costs["flops"]
    selection = study.strategy.selections[0]
    assert len(selection["best"]) == 2 - round(0.2 * 2) and len(selection["best"] + selection["large"]) == 2
    for t in trials:
        if not t.parents:
            assert t.info["kind"] == "init" and "inherited_from" not in t.result.info
            continue
        parent = by_id[t.parents[0]]
        if t.info["kind"] == "ticket":  # ticket -> the net it was pruned from, in the same generation
            assert parent.info["kind"] in ("init", "child") and parent.generation == t.generation
            ranked = [r["arch"] for r in parent.result.info["lottery_tickets"]]
            assert ranked.index(str(study.space.format(t.arch))) == t.info["ticket_rank"]
        else:  # child -> a best lottery ticket or a large model of the previous generation
            assert t.generation == 1 and parent.generation == 0
            assert t.parents[0] in selection["best"] + selection["large"]
            assert parent.info["kind"] == "ticket" or t.parents[0] in selection["large"]
        inherited = t.result.info["inherited_from"]  # the exact checkpoint the parent's trial stored
        assert inherited == {"trial": parent.id, "checkpoint": parent.checkpoint, "sha256": parent.checkpoint_sha256}
        report = json.loads((run_dir / "trials" / f"{t.id:05d}" / INHERITANCE_NAME).read_text())
        assert report["parent_trial"] == parent.id and report["summary"] == t.result.info["inheritance"]
    summary = json.loads((run_dir / SUMMARY_NAME).read_text())
    assert summary["evaluated_networks"] == N_TRIALS
    assert summary["generations"]["0"]["nets"] == 3 and summary["generations"]["1"]["tickets"] == 2
    assert summary["generations"]["0"]["parents_chosen"] == selection
    # the lottery cost is the nets' exploration time against all training time, as the trials recorded them
    costs = [t.result.info["lottery_cost"] for t in trials if "lottery_cost" in t.result.info]
    explore, train = sum(c["explore_s"] for c in costs), sum(t.result.info["train_seconds"] for t in trials)
    assert len(costs) == 5 and summary["lottery_cost"]["explore_s"] == pytest.approx(explore)
    assert summary["lottery_cost"]["train_s"] == pytest.approx(train)
    assert summary["lottery_cost"]["share_of_search"] == pytest.approx(explore / (explore + train))
    assert summary["lottery_cost"]["per_net_fraction_median"] == pytest.approx(
        statistics.median(c["explore_s"] / c["train_seconds"] for c in costs))
    done = [t for t in trials if t.result is not None]
    for cost in ("flops", "params"):  # the Pareto front of accuracy vs cost: no finished trial dominates a member
        front = summary["pareto"][cost]
        assert front and [p[cost] for p in front] == sorted(p[cost] for p in front)
        for p in front:
            assert not any(t.result.costs[cost] <= p[cost] and t.result.metrics["accuracy"] > p["accuracy"]
                           for t in done)
    rows = {r["id"]: r for r in summary["lineage"]}
    assert all(rows[t.id]["parent_kinds"] == [by_id[p].info["kind"] for p in t.parents] for t in trials if t.parents)


@pytest.mark.slow
def test_resume_after_an_interruption_equals_the_straight_run(straight, tmp_path):
    study, _ = straight
    config = config_from_dict(CONFIG, ["budget=4"])  # stops mid-generation 0: two nets and their tickets
    first = run_search(config, tmp_path / "run")
    assert first.n_finished == 4 and first.strategy.can_ask()
    first.close()
    resumed = Study.resume(tmp_path / "run", overrides=[f"budget={N_TRIALS}"]).run()
    assert decisions(resumed.trials()) == decisions(study.trials())
    resumed.close()


def test_run_menas_rejects_other_strategies_and_evaluators(tmp_path):
    with pytest.raises(InvalidValue, match="strategy.name"):
        run_menas({**CONFIG, "strategy": "random"}, tmp_path / "a")
    with pytest.raises(InvalidValue, match="evaluator.kind"):
        run_menas({**CONFIG, "evaluator": {"kind": "train"}}, tmp_path / "b")
    assert not Path(tmp_path / "a").exists() and not Path(tmp_path / "b").exists()
