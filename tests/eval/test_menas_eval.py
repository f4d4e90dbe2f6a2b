"""MenasEvaluator: lottery-ticket exploration after training, children inheriting their parent's checkpoint,
tickets fine-tuned from truncated weights, and a missing or corrupt parent checkpoint failing the trial."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasforge import get_space
from nasforge.errors import InvalidValue
from nasforge.eval.menas import INHERITANCE_NAME, MenasEvaluator, MenasEvaluatorConfig
from nasforge.eval.train_eval import init_weights
from nasforge.io import CheckpointError, load_checkpoint
from nasforge.strategies import get_strategy
from nasforge.study import Study
from nasforge.train import TrainConfig, calibrate_bn, lr_lambda
from nasforge.trial import TrialState

SPACE = get_space("menas-mt", base_channels=(16, 24), depths=(1, 2), kernels=(3, 5), expands=(1, 3, 6),
                  widths=(0.5, 1.0))
DATA = {"source": "embedded", "limit": 300, "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0}
RECIPE = TrainConfig.from_recipe("menas", batch_size=32, warmup_epochs=0.01, nan_check_interval=5)
#: an architecture whose expansion layers can be pruned
NET = SPACE.make({"s1.depth": 2, "s1.width": 1.0, "s1.down": True, "s1.l0.kernel": 3, "s1.l0.expand": 6,
                  "s1.l0.se": True, "s1.l0.prune": 1.0, "s1.l1.kernel": 5, "s1.l1.expand": 3, "s1.l1.se": False,
                  "s1.l1.prune": 1.0, "s2.depth": 1, "s2.width": 1.0, "s2.down": True, "s2.l0.kernel": 3,
                  "s2.l0.expand": 6, "s2.l0.se": False, "s2.l0.prune": 0.9})


def _counted_flops(net: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(torch.zeros(1, 1, 28, 28))
    return counter.get_total_flops()


def evaluator(**kw) -> MenasEvaluator:
    opts = dict(epochs_init=0.15, epochs_child=0.1, epochs_finetune=0.1, proposals=3, calib_batches=2,
                rank_images=40, train_config=RECIPE, device="cpu", eval_batch_size=64, threads=1)
    return MenasEvaluator(SPACE, DATA, **{**opts, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained init net: (evaluator, result, trial dir)."""
    ev = evaluator()
    folder = tmp_path_factory.mktemp("net") / "00000"
    res = ev.evaluate(NET, seed=1, context={"trial_dir": str(folder), "candidate": {"kind": "init"}})
    return ev, res, folder


def parent_context(res, folder: Path, kind: str, parent=NET) -> dict:
    return {"trial_dir": str(folder), "candidate": {"kind": kind, "inherit_from": 0}, "parent_arch": parent,
            "parent_checkpoint": res.artifacts["checkpoint"], "parent_checkpoint_sha256": res.info["checkpoint_sha256"]}


def test_a_trained_net_reports_its_ranked_lottery_tickets(trained):
    ev, res, folder = trained
    assert res.info["kind"] == "init" and res.info["epochs"] == pytest.approx(0.15, abs=0.1)
    ranked = res.info["lottery_tickets"]
    assert len(ranked) == 3  # k proposals, all ranked
    accs = [(-r["accuracy"], r["flops"]) for r in ranked]
    assert accs == sorted(accs)  # best first, ties: fewer FLOPs
    net_flops = _counted_flops(SPACE.build(NET, (1, 28, 28), 10))
    for r in ranked:  # each is a valid pruning of the net: narrower expansion layers, and the FLOPs it removes
        arch = SPACE.parse(r["arch"])  # are those torch counts on the network built for it
        mids, net_mids = ([b.mid_ch for b in SPACE.spec(a).blocks] for a in (arch, NET))
        assert all(m <= n for m, n in zip(mids, net_mids)) and mids != net_mids
        assert r["flops"] == _counted_flops(SPACE.build(arch, (1, 28, 28), 10)) < net_flops
        assert r["params"] == SPACE.params(arch, (1, 28, 28), 10)
    cost = res.info["lottery_cost"]
    assert cost["proposals"] == 3 and cost["train_seconds"] == res.info["train_seconds"]
    assert cost["explore_s"] >= cost["truncate_s"] + cost["calibrate_s"] + cost["rank_s"]
    assert cost["calib_images"] == 3 * 2 * 32 and cost["rank_images"] == 3 * 40
    again = evaluator().evaluate(NET, seed=1, context={"trial_dir": str(folder.parent / "again")})
    assert again.info["lottery_tickets"] == ranked  # seeded from the trial seed


def test_a_child_inherits_its_parents_weights(trained, tmp_path):
    ev, res, _ = trained
    child = SPACE.make({**NET.to_dict(), "s1.l1.kernel": 3, "s2.width": 0.5})  # a cropped kernel, a narrower stage
    ctx = parent_context(res, tmp_path / "00005", "child")
    run = ev._trial_run(child, 7, ctx)
    model, epochs = ev._start_model(run)
    assert epochs == 0.1  # E_child
    parent = load_checkpoint(res.artifacts["checkpoint"], sha256=res.info["checkpoint_sha256"])["model"]
    report = json.loads((tmp_path / "00005" / INHERITANCE_NAME).read_text())["tensors"]
    state = model.state_dict()
    assert set(report) == set(state)
    for name, kind in report.items():
        if kind == "copy":
            assert torch.equal(state[name], parent[name]), name
    assert report["blocks.1.dw.conv.weight"] == "crop"  # kernel 5 -> 3: the parent's centre taps
    assert torch.equal(state["blocks.1.dw.conv.weight"], parent["blocks.1.dw.conv.weight"][:, :, 1:4, 1:4])
    assert "truncate" in report.values()
    out = ev.evaluate(child, seed=7, context=ctx)
    assert out.info["kind"] == "child"
    assert out.info["inherited_from"] == {"trial": 0, "checkpoint": res.artifacts["checkpoint"],
                                          "sha256": res.info["checkpoint_sha256"]}
    assert sum(out.info["inheritance"].values()) == len(report) and out.info["inheritance"]["copy"] > 0
    assert len(out.info["lottery_tickets"]) == 3  # children explore their tickets too
    # inherited weights: scored after BN calibration on calib_batches (2) training batches of 32, whatever the epochs
    assert out.info["bn_calib_reason"] == "auto: weights inherited" and out.info["bn_calib_images"] == 64
    saved = load_checkpoint(out.artifacts["checkpoint"], sha256=out.info["checkpoint_sha256"])
    assert saved["bn_calibration"]["bn_calibrated"] is True
    assert {int(v) for k, v in saved["model"].items() if k.endswith("num_batches_tracked")} == {2}


def test_without_weight_sharing_a_child_trains_from_scratch(trained, tmp_path):
    _, res, _ = trained
    ev = evaluator(weight_sharing=False, proposals=0)
    child = SPACE.mutate(NET, np.random.default_rng(0))
    ctx = parent_context(res, tmp_path / "c", "child")
    run = ev._trial_run(child, 3, ctx)
    model, epochs = ev._start_model(run)
    fresh = init_weights(SPACE.build(child, (1, 28, 28), 10), torch.Generator().manual_seed(run.init_seed))
    assert epochs == 0.1 and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                     fresh.state_dict().values()))
    out = ev.evaluate(child, seed=3, context=ctx)
    assert "inherited_from" not in out.info and "lottery_tickets" not in out.info
    assert not (tmp_path / "c" / INHERITANCE_NAME).exists()


def test_a_ticket_is_truncated_recalibrated_and_fine_tuned(trained, tmp_path):
    ev, res, _ = trained
    ticket = SPACE.parse(res.info["lottery_tickets"][0]["arch"])
    ctx = parent_context(res, tmp_path / "00001", "ticket")
    model, epochs = ev._start_model(ev._trial_run(ticket, 2, ctx))
    assert epochs == 0.1  # epochs_finetune
    parent = load_checkpoint(res.artifacts["checkpoint"])["model"]
    report = json.loads((tmp_path / "00001" / INHERITANCE_NAME).read_text())["tensors"]
    assert set(report.values()) <= {"copy", "truncate"} and "truncate" in report.values()
    state = model.state_dict()
    for name, kind in report.items():
        if name.endswith("weight") or name.endswith("bias"):  # Eq. 1: the leading channels of the parent
            src = parent[name][tuple(slice(0, n) for n in state[name].shape)]
            assert torch.equal(state[name], src), name
    # step 2(c): EVERY BatchNorm layer re-calibrated, from reset statistics, on calib_batches (2) training
    # batches of the trial's calibration seed: the statistics equal those of a fresh calibration of the same
    # weights on those batches, and none is the parent's (truncated) statistics any more
    bns = [n.rsplit(".", 1)[0] for n in report if n.endswith("running_mean")]
    assert len(bns) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 5
    reference = copy.deepcopy(model)
    run = ev._trial_run(ticket, 2, ctx)
    calib = run.splits.loader("train", RECIPE.batch_size, seed=ev._seeds(run)[0])
    assert calibrate_bn(reference, calib, 2) == 2
    ref = reference.state_dict()
    for bn in bns:
        for buffer in ("running_mean", "running_var"):
            name = f"{bn}.{buffer}"
            assert torch.allclose(state[name], ref[name], rtol=1e-5, atol=1e-6), name
            assert not torch.equal(state[name], parent[name][: state[name].shape[0]]), name
        assert int(state[f"{bn}.num_batches_tracked"]) == 2, bn
    out = ev.evaluate(ticket, seed=2, context=ctx)
    assert out.info["kind"] == "ticket" and out.info["bn_calibration_batches"] == 2
    assert out.info["bn_calibrated"] is True and out.info["bn_calib_reason"] == "auto: weights pruned"
    assert out.info["inheritance"]["fresh"] == 0 and "lottery_tickets" not in out.info
    assert out.artifacts["checkpoint"].startswith(str(tmp_path / "00001"))


def test_a_ticket_fine_tunes_with_the_recipes_warm_up_scaled_to_the_fine_tune(trained, tmp_path):
    """Step 2(e) with "Experimental Details"' recipe ("first warmed up from 0 to 0.064, then decayed"): a ticket
    fine-tunes epochs_finetune epochs starting from lr 0, not at the peak rate (issue 16). Its warm-up takes the share
    of the fine-tune that the recipe's takes of E_init: 0.5 * 1 / 2 = 0.25 epochs = 2 of 8 steps here."""
    _, res, _ = trained
    recipe = RECIPE.model_copy(update={"warmup_epochs": 0.5})
    ev = evaluator(train_config=recipe, epochs_init=2.0, epochs_finetune=1.0)
    ticket = SPACE.parse(res.info["lottery_tickets"][0]["arch"])
    out = ev.evaluate(ticket, seed=2, context=parent_context(res, tmp_path / "t", "ticket"))
    ckpt = load_checkpoint(out.artifacts["checkpoint"])
    spe = -(-240 // 32)  # 8 steps per epoch
    assert out.info["steps"] == ckpt["steps"] == spe == len(ckpt["history"]) * spe  # one epoch
    assert out.info["epochs"] == pytest.approx(1.0)
    assert ckpt["config"] == {**recipe.model_dump(), "warmup_epochs": 0.25}
    f = lr_lambda(TrainConfig(**ckpt["config"]), spe, spe)
    assert [f(s) for s in range(spe)] == [0.0, 0.5] + [1.0] * (spe - 2)  # from 0, at the peak after the warm-up
    assert ckpt["history"][-1]["lr"] == pytest.approx(recipe.effective_lr)
    init = ev._trial_run(NET, 1, {"candidate": {"kind": "init"}})
    assert ev._train_config(init) == recipe  # init (and child) nets keep the recipe's warm-up as it is


def test_ticket_warm_up_with_the_papers_numbers_and_its_option():
    """E_init 30, fine-tune 3, the menas recipe's 5 warm-up epochs: a ticket warms up 0.5 epochs. warmup_finetune
    sets the length (0: the old no-warm-up behaviour; 5: the recipe's unscaled), also from a search config."""
    paper = MenasEvaluator(SPACE, DATA, device="cpu")  # the paper's 30 / 20 / 3 epochs and the menas recipe
    assert paper.train_config.warmup_epochs == 5.0 and paper.ticket_warmup_epochs == pytest.approx(0.5)
    run = paper._trial_run(NET, 1, {"candidate": {"kind": "ticket"}})
    assert paper._train_config(run).warmup_epochs == pytest.approx(0.5)
    for epochs in (0.0, 5.0):
        ev = MenasEvaluator(SPACE, DATA, device="cpu", warmup_finetune=epochs)
        assert ev._train_config(ev._trial_run(NET, 1, {"candidate": {"kind": "ticket"}})).warmup_epochs == epochs
    assert MenasEvaluator(SPACE, DATA, epochs_init=1.0, epochs_finetune=3.0).ticket_warmup_epochs == 5.0  # capped
    with pytest.raises(InvalidValue, match="^warmup_finetune: got -1"):
        MenasEvaluator(SPACE, DATA, warmup_finetune=-1)
    cfg = MenasEvaluatorConfig(warmup_finetune=0.0)
    assert cfg.build(SPACE, data=DATA, device="cpu", input_shape=None, num_classes=None).ticket_warmup_epochs == 0.0


def test_missing_or_corrupt_parent_checkpoints_fail_the_trial_through_the_study(tmp_path):
    class Sabotage:
        """The MENAS evaluator, but the parent's checkpoint is corrupted before the first ticket and deleted
        before the second."""

        name = "sabotage"

        def __init__(self) -> None:
            self.inner, self.tickets = evaluator(proposals=2), 0

        def evaluate(self, arch, *, seed=None, context=None):
            if context["candidate"]["kind"] == "ticket":
                path = Path(context["parent_checkpoint"])
                if self.tickets == 0:
                    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
                else:
                    path.unlink()
                self.tickets += 1
            return self.inner.evaluate(arch, seed=seed, context=context)

    strategy = get_strategy("menas", SPACE, seed=0, population_size=2, lottery_tickets=1, generations=1)
    study = Study(SPACE, strategy, Sabotage(), budget=strategy.budget, run_dir=tmp_path, report=False).run()
    trials = study.trials()
    assert [t.info["kind"] for t in trials] == ["init", "ticket", "init", "ticket"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAILED] * 2 and study.n_finished == 4
    assert "sha256" in trials[1].error and "does not match" in trials[1].error and "corrupt" in trials[1].error
    assert "does not exist" in trials[3].error and trials[0].checkpoint in trials[1].error
    study.close()


def test_no_parent_checkpoint_and_bad_arguments_raise_naming_the_field(trained, tmp_path):
    ev, res, _ = trained
    ctx = parent_context(res, tmp_path, "child")
    del ctx["parent_checkpoint"]
    with pytest.raises(CheckpointError, match="parent trial 0 has none recorded.*never falls back"):
        ev.evaluate(NET, seed=0, context=ctx)
    with pytest.raises(InvalidValue, match="parent_arch"):
        ev.evaluate(NET, seed=0, context={"candidate": {"kind": "ticket"}})
    with pytest.raises(InvalidValue, match="candidate kind"):
        ev.evaluate(NET, seed=0, context={"candidate": {"kind": "grandchild"}})
    other = SPACE.make({**NET.to_dict(), "s2.depth": 2, "s2.l1.kernel": 3, "s2.l1.expand": 1, "s2.l1.se": False})
    with pytest.raises(InvalidValue, match="checkpoint .* of parent trial 0"):  # weights of another network
        ev.evaluate(NET, seed=0, context=parent_context(res, tmp_path, "ticket", parent=other))
    for bad, field in [({"epochs_child": 0}, "epochs_child"), ({"proposals": -1}, "proposals"),
                       ({"calib_batches": 0}, "calib_batches"), ({"rank_images": 0}, "rank_images"),
                       ({"weight_sharing": "yes"}, "weight_sharing")]:
        with pytest.raises(InvalidValue, match=field):
            evaluator(**bad)
    with pytest.raises(InvalidValue, match="space"):
        MenasEvaluator(get_space("nb201"), DATA)
