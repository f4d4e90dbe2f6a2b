"""Supernet training (nasforge.supernet.train, nasforge.methods.bignas): BigNAS Sec. 3.1 / 4.2 and SPOS.

Every switch of the step is checked for what it claims on the real elastic supernet over a tiny BigNAS table
(embedded Fashion-MNIST resized to 16x16): the sandwich's children and forward passes, the distillation targets,
dropout and L2 on the largest child only, frozen BN statistics, the learning-rate formula, and exact resume.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from nasforge.data import DataConfig, load_data
from nasforge.device import seeded_torch
from nasforge.errors import InvalidValue, NasforgeError
from nasforge.methods.bignas import (METHOD_DEFAULTS, build_supernet_space, load_supernet_config,
                                     step_recipe_of, supernet_config_from_dict, train_config_of)
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.supernet.mbconv import ElasticMBConvSupernet
from nasforge.supernet.train import (StepRecipe, SupernetTrainer, child_losses, frozen_bn_stats, l2_penalty,
                                     plan_children, soft_cross_entropy)
from nasforge.train import TrainConfig, lr_lambda

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def tiny_space(transition_skip: bool = True) -> BigNASSpace:
    return BigNASSpace(stages=(BigNASStage((4, 8), (1, 2), (3, 5), (1,), 1),
                               BigNASStage((8, 12), (1, 2), (3, 5), (2, 3), 2)),
                       resolutions=(12, 16), stem_widths=(4, 8), head_widths=(16,), transition_skip=transition_skip)


@pytest.fixture(scope="module")
def splits():
    return load_data(DataConfig(source="embedded", limit=160, image_size=16, val_fraction=0.25, test_fraction=0.0))


@pytest.fixture(scope="module")
def space() -> BigNASSpace:
    return tiny_space()


def make_net(space: BigNASSpace, seed: int = 0) -> ElasticMBConvSupernet:
    return ElasticMBConvSupernet(space, (1, 16, 16), 10, generator=torch.Generator().manual_seed(seed))


def batch(splits, n: int = 16):
    x, y = next(iter(splits.loader("train", n, seed=0)))
    return x, y


def trainer(space, splits, tmp_path=None, recipe: StepRecipe | None = None, epochs: float = 1.0, seed: int = 0,
            **kw) -> SupernetTrainer:
    tc = TrainConfig.from_recipe("bignas", batch_size=16, warmup_epochs=0.5, min_lr_ratio=0.05)
    return SupernetTrainer(make_net(space), space, splits, recipe=recipe or StepRecipe.bignas(), train_config=tc,
                           epochs=epochs, seed=seed, calib_batches=1, eval_batches=1, eval_batch_size=20,
                           checkpoint_path=None if tmp_path is None else tmp_path / "supernet.pt", **kw)


# ------------------------------------------------------------------------------------------------ children
def test_sandwich_plans_largest_smallest_and_n_random(space):
    rng = np.random.default_rng(0)
    kids = plan_children(space, rng, StepRecipe.bignas(sandwich_n=3))
    assert [c.role for c in kids] == ["largest", "smallest", "random", "random", "random"]
    assert kids[0].arch == space.largest() and kids[1].arch == space.smallest()
    assert [c.target for c in kids] == ["labels"] + ["teacher"] * 4
    assert [c.regularized for c in kids] == [True, False, False, False, False]
    single = plan_children(space, rng, StepRecipe.bignas(sandwich=False, inplace_distillation=False))
    assert [(c.role, c.target) for c in single] == [("random", "labels")]


def test_children_come_from_the_seeded_generator(space):
    def draw(seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [c.arch.key() for _ in range(5) for c in plan_children(space, rng, StepRecipe.bignas())]

    assert draw(1) == draw(1) and draw(1) != draw(2)


def test_distillation_without_sandwich_is_rejected():
    with pytest.raises(InvalidValue, match="inplace_distillation: got True; allowed: false when sandwich is false"):
        StepRecipe(sandwich=False, inplace_distillation=True)


@pytest.mark.parametrize("sandwich,expected", [(True, 4), (False, 1)])
def test_forward_passes_per_step(space, splits, sandwich, expected):
    recipe = StepRecipe.bignas(sandwich=sandwich, inplace_distillation=sandwich)
    tr = trainer(space, splits, recipe=recipe)
    calls = []
    tr.net.register_forward_pre_hook(lambda m, a: calls.append(m.active_arch))
    x, y = batch(splits)
    tr.train_step(x, y)
    assert len(calls) == expected
    if sandwich:
        assert calls[0] == space.largest() and calls[1] == space.smallest()


# ------------------------------------------------------------------------------------------------ targets
def _logits(net, arch, x):
    """Deterministic logits of a child in training mode (BN batch statistics, no dropout), no state change."""
    p, net.head_dropout.p = net.head_dropout.p, 0.0
    try:
        with torch.no_grad(), frozen_bn_stats(net), net.activate(arch):
            return net(x)
    finally:
        net.head_dropout.p = p


def test_inplace_distillation_targets_are_teacher_soft_labels(space, splits):
    net = make_net(space).train()
    x, y = batch(splits)
    recipe = StepRecipe.bignas(dropout=0.0, weight_decay=0.0)
    kids = plan_children(space, np.random.default_rng(0), recipe)
    with frozen_bn_stats(net):
        records = child_losses(net, x, y, kids, recipe)
    teacher = F.softmax(_logits(net, space.largest(), x), dim=1)
    assert torch.allclose(records[0].loss, F.cross_entropy(_logits(net, space.largest(), x), y, label_smoothing=0.1))
    for kid, rec in zip(kids[1:], records[1:]):
        student = _logits(net, kid.arch, x)
        assert rec.target == "teacher"
        assert torch.allclose(rec.loss, soft_cross_entropy(student, teacher), atol=1e-6)
        assert not torch.allclose(rec.loss, F.cross_entropy(student, y, label_smoothing=0.1), atol=1e-4)


def test_distillation_with_teacher_dropout_uses_the_same_forward_pass_detached(space, splits):
    """The real setting (Sec. 3.1 / 4.2): the teacher (largest child) runs with head dropout 0.2, and the students'
    soft targets are softmax of THAT forward pass's logits (not of a second, dropout-free or re-sampled pass),
    detached: the students' losses send no gradient through the targets into the weights. Reference: the same step
    written out with torch.autograd.grad under the same dropout seed."""
    net = make_net(space).train()
    x, y = batch(splits)
    recipe = StepRecipe.bignas()  # dropout 0.2 on the teacher, L2 1e-5 on the teacher, label smoothing 0.1
    assert recipe.dropout == 0.2 and recipe.weight_decay > 0
    kids = plan_children(space, np.random.default_rng(0), recipe)
    with seeded_torch(7), frozen_bn_stats(net):
        records = child_losses(net, x, y, kids, recipe)
    params = [p for p in net.parameters()]
    got = [p.grad.clone() for p in params]

    p0 = net.head_dropout.p
    try:
        with seeded_torch(7), frozen_bn_stats(net):  # the teacher's pass is the only one drawing dropout masks
            net.head_dropout.p = recipe.dropout
            with net.activate(kids[0].arch):
                teacher_logits = net(x)
            total = F.cross_entropy(teacher_logits, y, label_smoothing=0.1)
            total = total + l2_penalty([p for p in params if p.ndim >= 2], recipe.weight_decay)
            targets = F.softmax(teacher_logits, dim=1).detach()
            net.head_dropout.p = 0.0
            students = []
            for kid in kids[1:]:
                with net.activate(kid.arch):
                    students.append(net(x))
            total = total + sum(soft_cross_entropy(s, targets) for s in students)
    finally:
        net.head_dropout.p = p0
    want = torch.autograd.grad(total, params)
    # the teacher's dropout matters: its targets differ from a dropout-free pass's
    clean = F.softmax(_logits(net, space.largest(), x), dim=1)
    assert (clean - targets).abs().max() > 1e-3
    assert torch.allclose(records[0].loss, F.cross_entropy(teacher_logits, y, label_smoothing=0.1), atol=1e-6)
    for rec, student in zip(records[1:], students):
        assert rec.target == "teacher" and rec.dropout == 0.0
        assert torch.allclose(rec.loss, soft_cross_entropy(student, targets), atol=1e-6)
        assert not torch.allclose(rec.loss, soft_cross_entropy(student, clean), atol=1e-5)
    for (name, _), g, w in zip(net.named_parameters(), got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6), name


def test_without_distillation_every_child_learns_from_labels(space, splits):
    net = make_net(space).train()
    x, y = batch(splits)
    recipe = StepRecipe.bignas(inplace_distillation=False, dropout=0.0, weight_decay=0.0, label_smoothing=0.0)
    kids = plan_children(space, np.random.default_rng(0), recipe)
    with frozen_bn_stats(net):
        records = child_losses(net, x, y, kids, recipe)
    for kid, rec in zip(kids, records):
        assert rec.target == "labels"
        assert torch.allclose(rec.loss, F.cross_entropy(_logits(net, kid.arch, x), y), atol=1e-6)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), F.softmax(torch.randn(5, 7, generator=g), 1)
    kl = F.kl_div(F.log_softmax(s, 1), t, reduction="batchmean")
    entropy = -(t * t.log()).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(s, t), kl + entropy, atol=1e-6)


# ------------------------------------------------------------------------------------------------ regularisation
def _grads(space, splits, recipe):
    net = make_net(space).train()
    x, y = batch(splits)
    rates = []
    net.head_dropout.register_forward_pre_hook(lambda m, a: rates.append(m.p))
    with frozen_bn_stats(net):
        records = child_losses(net, x, y, plan_children(space, np.random.default_rng(0), recipe), recipe)
    assert net.head_dropout.p == make_net(space).head_dropout.p  # restored
    return net, {n: p.grad.clone() for n, p in net.named_parameters()}, rates, records


def test_dropout_and_l2_only_on_the_largest_child(space, splits):
    wd = 0.5
    _, only, rates, records = _grads(space, splits, StepRecipe.bignas(weight_decay=wd))
    assert rates == [0.2, 0.0, 0.0, 0.0]
    assert records[0].l2 > 0 and [r.l2 for r in records[1:]] == [0.0, 0.0, 0.0]
    _, _, rates_all, records_all = _grads(space, splits, StepRecipe.bignas(weight_decay=wd,
                                                                           regularize_largest_only=False))
    assert rates_all == [0.2] * 4 and all(r.l2 > 0 for r in records_all)
    # without dropout, regularising every child adds (children - 1) more L2 gradients wd * p on >= 2-D weights
    net, g1, _, _ = _grads(space, splits, StepRecipe.bignas(weight_decay=wd, dropout=0.0))
    _, g4, _, _ = _grads(space, splits, StepRecipe.bignas(weight_decay=wd, dropout=0.0,
                                                         regularize_largest_only=False))
    for name, p in net.named_parameters():
        extra = 3 * wd * p.detach() if p.ndim >= 2 else torch.zeros_like(p)
        assert torch.allclose(g4[name] - g1[name], extra, atol=1e-5), name


def test_l2_penalty_and_optimizer_without_weight_decay(space, splits):
    p = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])]
    assert float(l2_penalty(p, 0.1)) == pytest.approx(0.05 * 14)
    tr = trainer(space, splits)
    assert all(g["weight_decay"] == 0.0 for g in tr.optimizer.param_groups)


# ------------------------------------------------------------------------------------------------ batch norm
def _bn_state(net):
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("accumulate", [False, True])
def test_bn_statistics_not_accumulated_during_training(space, splits, accumulate):
    tr = trainer(space, splits, recipe=StepRecipe.bignas(bn_accumulate=accumulate))
    before = _bn_state(tr.net)
    momenta = [m.momentum for m in tr.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x, y = batch(splits)
    tr.train_step(x, y)
    after = _bn_state(tr.net)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert bool(changed) == accumulate
    if accumulate:  # every BN layer the step's children ran through (the largest: all of them) accumulated
        stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        assert sorted(changed) == sorted(stats)
    assert [m.momentum for m in tr.net.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta


# ------------------------------------------------------------------------------------------------ schedule
def test_lr_schedule_warmup_exponential_decay_and_constant_ending():
    cfg = supernet_config_from_dict({"method": "bignas"})
    tc = train_config_of(cfg)
    assert tc.min_lr_ratio == 0.05 and tc.decay_rate == 0.97 and tc.decay_epochs == 2.4
    spe = 10
    f = lr_lambda(tc, spe, 400 * spe)
    warm = int(tc.warmup_epochs * spe)
    for step in (0, 7, 25, warm - 1):
        assert f(step) == pytest.approx(step / warm)
    for step in (warm, 77, 240, 1000, 2370):
        assert f(step) == pytest.approx(0.97 ** math.floor(step / (2.4 * spe)))
    first_floor = math.ceil(math.log(0.05) / math.log(0.97))  # 0.97^99 < 0.05: held from epoch 99 * 2.4
    assert f(int(first_floor * 2.4 * spe) - 1) > 0.05
    assert f(int(first_floor * 2.4 * spe)) == 0.05 and f(3999) == 0.05
    plain = lr_lambda(train_config_of(supernet_config_from_dict({"constant_ending": False})), spe, 4000)
    assert plain(3999) == pytest.approx(0.97 ** math.floor(3999 / 24)) and plain(3999) < 0.01


def test_trainer_steps_the_learning_rate_per_step(space, splits):
    tr = trainer(space, splits, epochs=2.0)
    lr0 = tr.config.effective_lr
    f = lr_lambda(tr.config, tr.steps_per_epoch, tr.total_steps)
    x, y = batch(splits)
    for step in range(1, 4):
        tr.train_step(x, y)
        assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(lr0 * f(step))


# ------------------------------------------------------------------------------------------------ resume
def _params(tr):
    return {k: v.clone() for k, v in tr.net.state_dict().items()}


def test_resume_continues_exactly(space, splits, tmp_path):
    straight = trainer(space, splits, epochs=2.0)
    assert straight.steps_per_epoch == 7
    straight.fit(stop_at=9)  # crosses the end of epoch 0 (calibrated evaluation, log row)

    first = trainer(space, splits, tmp_path, epochs=1.0)
    first.fit(stop_at=5)
    resumed = trainer(space, splits, tmp_path, epochs=2.0)  # epochs may grow on resume
    assert resumed.resume()
    assert resumed.pos.step == 5 and resumed.pos.batch == 5
    resumed.fit(stop_at=9)
    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.arch_rng.bit_generator.state == resumed.arch_rng.bit_generator.state
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]
    assert not torch.equal(_params(trainer(space, splits))["stem.conv.weight"], a["stem.conv.weight"])


def test_resume_rejects_another_recipe(space, splits, tmp_path):
    trainer(space, splits, tmp_path).fit(stop_at=1)
    other = trainer(space, splits, tmp_path, recipe=StepRecipe.bignas(sandwich_n=1))
    expected = r"recipe.sandwich_n of resume from .* \(must match the checkpoint\): got 1; allowed: 2$"
    with pytest.raises(InvalidValue, match=expected):
        other.resume()


# ------------------------------------------------------------------------------------------------ config
def test_method_presets_and_recipes():
    spos = supernet_config_from_dict({"method": "spos"})
    r = step_recipe_of(spos)
    assert (r.sandwich, r.inplace_distillation, r.regularize_largest_only) == (False, False, False)
    assert r.weight_decay == 4e-5 and train_config_of(spos).optimizer == "sgd"
    assert train_config_of(spos).min_lr_ratio == 0.0 and spos.value("epochs") == 120
    big = supernet_config_from_dict({})
    r = step_recipe_of(big)
    assert (r.sandwich, r.sandwich_n, r.inplace_distillation, r.regularize_largest_only, r.bn_accumulate) == \
        (True, 2, True, True, False)
    assert (r.weight_decay, r.label_smoothing, r.dropout) == (1e-5, 0.1, 0.2)
    assert big.resolved()["zero_init_last_bn"] is True and set(METHOD_DEFAULTS) == {"bignas", "spos"}


@pytest.mark.parametrize("raw,message", [
    ({"sandwitch": True}, "sandwitch: got True; allowed: no such field"),
    ({"sandwich": False}, "inplace_distillation: got True; allowed: false when sandwich is false"),
    ({"method": "darts"}, "method: got 'darts'"),
    ({"constant_ending": False, "train": {"min_lr_ratio": 0.1}}, "train.min_lr_ratio: got 0.1"),
    ({"recipe": "adam"}, "recipe: got 'adam'"),
    ({"space": {"name": "bignas", "kwargs": {"transition_skip": False}}}, "space.kwargs.transition_skip"),
    ({"data": {"sorce": "embedded"}}, "data.sorce"),
])
def test_config_errors_are_one_line(raw, message):
    with pytest.raises(NasforgeError, match=message) as info:
        supernet_config_from_dict(raw)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["bignas", "bignas-cpu", "spos", "spos-cpu"])
def test_shipped_configs_validate(name):
    cfg = load_supernet_config(CONFIGS / f"{name}.yaml")
    assert cfg.method == name.split("-")[0]
    space = build_supernet_space(cfg)
    assert space.transition_skip is cfg.value("transition_skip")
    train_config_of(cfg)
    if name == "bignas":
        raw = yaml.safe_load((CONFIGS / "bignas.yaml").read_text())
        assert raw.get("space") in ("bignas", {"name": "bignas"})  # the Table 1 space
        tc = train_config_of(cfg)
        assert tc.effective_lr == pytest.approx(0.256) and tc.batch_size == 4096
