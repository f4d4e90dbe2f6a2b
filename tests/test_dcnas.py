"""DCNAS (nasforge.methods.dcnas, dcnas.txt Algorithm 1): the Eq. 8 pair update and the Eq. 12 meta step on a
hand-checked pair, a tiny end-to-end run (NB201 C=4 N=1 on scikit-learn's digits) through the command line with
its run folder (assignments, clusters, matching matrices) read back by ``supernet rank``, exact resume after a
crash, the pool-restricted evolution, and the config's one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge import get_space
from nasforge.cli import main
from nasforge.errors import InvalidValue
from nasforge.io import load_checkpoint
from nasforge.methods import dcnas as D
from nasforge.strategies import get_strategy
from nasforge.supernet.run import open_supernet
from nasforge.trial import Result, Trial, TrialState

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG = {"name": "dcnas-tiny", "method": "dcnas", "space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}},
          "data": {"source": "digits", "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
          "train": {"batch_size": 64}, "lr": 2.0, "N": 12, "M": 2, "L": 18, "K": 5,
          "T_w": 0.12, "T_f": 0.12, "T": 0.12, "tau": 1, "matching_anchors": 4, "representatives": 2,
          "feature_images": 32, "population_size": 4, "max_iterations": 2, "top_k": 2, "calib_images": 64,
          "score_images": 64, "eval_batch_size": 64, "kendall_n": 0, "seed": 0, "device": "cpu", "threads": 1,
          "progress": False}


def _config(**changes):
    return D.dcnas_config_from_dict({**CONFIG, **changes})


def test_pair_step_is_eq8_and_the_meta_step_moves_only_the_layers_meta_network(tmp_path, monkeypatch):
    # momentum and weight decay off, so the optimizer step is exactly W <- W - gamma * grad (Eq. 8)
    config = _config(train={"batch_size": 64, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0})
    ctx = D._setup(config, tmp_path)
    layer = 9  # cell 1, edge e3 (node 3 <- node 0): always reaches the cell output; its input differs
    ops = ctx.ops
    i = next(m for m in range(len(ctx.pool)) if ctx.meta.has(layer, ops[m, layer]))
    k = ops[i, layer]
    j = len(ctx.pool)  # a partner with the same ops as alpha_i except one layer: add it to the pool
    genes = ctx.pool[i].to_dict()
    genes["e0"] = "nor_conv_3x3" if genes["e0"] != "nor_conv_3x3" else "nor_conv_1x1"
    ctx.pool.append(ctx.space.make(genes))
    ctx.ops = np.vstack([ops, [str(ctx.pool[j][lab]) for _, lab in ctx.net.layers()]])
    ctx.state.assign = np.vstack([ctx.state.assign, ctx.state.assign[:1]])
    ctx.state.assign[i] = 0  # alpha_i on copy 0 everywhere, alpha_j on copy 1: no tensor is shared
    ctx.state.assign[j] = 1
    x, y = ctx.features
    before = {n: p.detach().clone() for n, p in ctx.net.named_parameters()}
    meta_before = {n: p.detach().clone() for n, p in ctx.meta.named_parameters()}
    # the expected update, computed independently (training-mode BN, as the step runs)
    ctx.net.train()
    loss_i, h_i = D._forward(ctx, i, [0] * 18, x, y)
    g_i = torch.autograd.grad(loss_i, list(ctx.net.parameters()), allow_unused=True)
    loss_j, h_j = D._forward(ctx, j, [1] * 18, x, y)
    g_j = torch.autograd.grad(loss_j, list(ctx.net.parameters()), allow_unused=True)
    names = [n for n, _ in ctx.net.named_parameters()]
    g_i, g_j = dict(zip(names, g_i)), dict(zip(names, g_j))
    lr = ctx.base_lr * (1 - ctx.state.step / ctx.total_steps)
    expected = {n: before[n] - lr * g_i[n] if g_i[n] is not None else before[n] for n in names}
    shared = [f for f in range(18) if ops[i, f] == ctx.ops[j, f] and ctx.meta.has(f, ops[i, f])]
    assert layer in shared and not {0, 6, 12} & set(shared)
    table = D._layer_names(ctx)
    for f in shared:
        with torch.no_grad():
            lam = float(ctx.meta(f, ops[i, f], D._pooled(h_i[f]) - D._pooled(h_j[f])))
        assert lam == pytest.approx(0.5)  # meta networks start at lambda = 0.5
        for mine, theirs in zip(table[(f, ops[i, f], 0)], table[(f, ops[i, f], 1)]):
            expected[mine] = expected[mine] - lr * lam * g_j[theirs]
    ctx.net.zero_grad(set_to_none=True)
    monkeypatch.setattr(D, "_pick_pair", lambda ctx_, layer_: (k, i, j))
    out = D._pair_step(ctx, layer, 1, x, y)
    after = dict(ctx.net.named_parameters())
    for n in names:
        assert torch.allclose(after[n], expected[n], atol=1e-6), n
    copy1 = [n for f in shared for n in table[(f, ops[i, f], 1)]]
    assert copy1 and all(torch.equal(after[n], before[n]) for n in copy1)  # alpha_j's own copy is not updated
    changed = {n for n, p in ctx.meta.named_parameters() if not torch.equal(p, meta_before[n])}
    assert changed == {f"nets.l{layer}_{k}.weight", f"nets.l{layer}_{k}.bias"}  # tau = 1: Eq. 12 on M_{C_{l,k}}
    assert set(out) >= {"loss", "loss_j", "lambda", "lookahead_loss"}


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """One tiny run through the command line (shared by the two tests below): (folder, printed row)."""
    import contextlib
    import io

    import yaml

    folder = tmp_path_factory.mktemp("dcnas")
    cfg = folder / "dcnas.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["supernet", "train", str(cfg), "--out", str(folder / "run"), "--format", "json"]) == 0
    return folder / "run", json.loads(buf.getvalue())


def test_tiny_run_through_the_cli_stores_its_assignments_and_ranks_inside_the_pool(whole_run):
    out, row = whole_run
    assert row["method"] == "dcnas" and row["L"] == 18 and row["best_arch"]
    for name in ("assignments.json", "clusters.json", "log.jsonl", "search.json", "supernet.pt", "state.pt"):
        assert (out / name).is_file(), name
    banks = json.loads((out / "assignments.json").read_text())
    assert len(banks["pool"]) == 12 and len(banks["layers"]) == 18
    space = get_space("nb201", C=4, N=1)
    pool = [space.parse(a) for a in banks["pool"]]
    rows = np.array([banks["assignments"][a.key()] for a in pool])  # pool order (member indices)
    assert rows.shape == (12, 18) and set(np.unique(rows)) <= {0, 1}
    # the copy each member got at a layer is the copy of its K-means cluster (matching/layerNN.npz)
    files = sorted((out / "matching").glob("layer*.npz"))
    assert files
    for path in files:
        layer = int(path.stem[5:])
        with np.load(path) as z:
            for op in {key.rsplit("_", 1)[0] for key in z.files if key.endswith("_members")}:
                members, cluster = z[f"{op}_members"], z[f"{op}_cluster"]
                assert z[f"{op}_matrix"].shape == (len(members), min(4, len(members)))
                assert all(str(pool[m][banks["layers"][layer].split(".")[1]]) == op for m in members)
                assert (rows[members, layer] == z[f"{op}_copy_of_cluster"][cluster]).all()
    assert len(json.loads((out / "clusters.json").read_text())) == 18
    search = json.loads((out / "search.json").read_text())["evaluations"]
    assert len(search) == 8 and {e["arch"] for e in search} <= set(banks["pool"])  # the search stays in A
    # any reader gets the assigned copies
    run = open_supernet(out)
    assert run.net.copies == 2 and len(run.pool) == 12
    assert run.net.copies_of(pool[3]) == tuple(rows[3])
    # supernet rank samples inside the pool (the packaged NB201 table has every cell)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["supernet", "rank", str(out), "--n", "5", "--calib-images", "64", "--score-images", "64",
                     "--format", "json"]) == 0
    rank = json.loads((out / "rank.json").read_text())
    assert rank["pool"] == 12 and {r["arch"] for r in rank["architectures"]} <= set(banks["pool"])
    # supernet eval / export of the searched architecture, on its assigned copies
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["supernet", "eval", str(out), "--arch", "best", "--format", "json"]) == 0
    ev = json.loads(buf.getvalue())
    best = pool[banks["pool"].index(row["best_arch"])]
    assert ev["in_pool"] and ev["copies"] == "".join(map(str, rows[banks["pool"].index(row["best_arch"])]))
    assert ev["arch"] == space.format(best)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", str(out), "--arch", "best", "--out", str(out.parent / "exported"), "--no-onnx"]) == 0
    assert (out.parent / "exported").is_dir()
    # and nasforge search scores candidates with it (one-shot evaluator on the run folder)
    import yaml

    search_cfg = out.parent / "search.yaml"
    search_cfg.write_text(yaml.safe_dump({
        "name": "dcnas-search", "space": "nb201", "budget": 3, "strategy": {"name": "random"},
        "evaluator": {"kind": "one-shot", "run": str(out), "calib_images": 64, "score_images": 64}}))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["search", str(search_cfg), "--out", str(out.parent / "search"), "--format", "json"]) == 0


def test_a_crashed_run_resumes_to_the_same_supernet(whole_run, tmp_path, monkeypatch):
    config = _config()
    calls = {"n": 0}
    real = D._run_phase

    def crashing(ctx, bar):
        calls["n"] += 1
        if calls["n"] == 23:  # in layer 7's phases
            raise KeyboardInterrupt
        real(ctx, bar)

    monkeypatch.setattr(D, "_run_phase", crashing)
    with pytest.raises(KeyboardInterrupt):
        D.run_dcnas(config, tmp_path / "cut")
    monkeypatch.setattr(D, "_run_phase", real)
    with pytest.raises(InvalidValue, match="--resume"):
        D.run_dcnas(config, tmp_path / "cut")
    D.run_dcnas(config, tmp_path / "cut", resume=True)
    whole = whole_run[0]
    a = load_checkpoint(whole / "supernet.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "supernet.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("assignments.json", "search.json"):
        assert json.loads((whole / name).read_text()) == json.loads((tmp_path / "cut" / name).read_text())


def test_spos_evolution_with_a_pool_only_proposes_members():
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    pool = [space.sample(rng) for _ in range(15)]
    keys = {a.key() for a in pool}
    strategy = get_strategy("spos-evolution", space, seed=0, pool=pool, population_size=6, max_iterations=3,
                            top_k=3, mutation_num=3, crossover_num=3)
    for n in range(strategy.budget):
        cand = strategy.ask(1)[0]
        assert cand.arch.key() in keys
        strategy.tell(Trial(id=n, arch=cand.arch, state=TrialState.COMPLETE,
                            result=Result({"accuracy": float(len(space.format(cand.arch)) % 7)}),
                            generation=cand.generation, parents=cand.parents))


@pytest.mark.parametrize("change, field", [({"L": 16}, "L"), ({"K": 6}, "K"), ({"N": 10**6}, "N"),
                                           ({"kendall_n": 20}, "kendall_n"), ({"space": "bignas"}, "space"),
                                           ({"train": {"lr": 1.0}}, "train.lr"), ({"top_k": 9}, "top_k"),
                                           ({"sharing": "global"}, "sharing")])
def test_config_errors_name_the_field(change, field):
    with pytest.raises(InvalidValue) as err:
        _config(**change)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_shipped_configs_validate_and_the_paper_defaults_are_the_paper_values():
    paper = D.load_dcnas_config(CONFIGS / "dcnas.yaml")
    assert (paper.N, paper.M, paper.L, paper.K, paper.T_w, paper.T_f, paper.T, paper.tau) == \
        (10000, 2, 16, 6, 10, 44, 3, 20)
    assert paper.total_epochs(paper.L) == 150
    tc = paper.train_config()
    assert (tc.optimizer, tc.momentum, tc.weight_decay, tc.effective_lr, tc.schedule) == ("sgd", 0.9, 4e-5, 0.5,
                                                                                          "linear")
    defaults = D.DcnasConfig.model_fields
    assert {k: defaults[k].default for k in ("N", "M", "L", "K", "T_w", "T_f", "T", "tau", "lr")} == \
        {"N": 10000, "M": 2, "L": 16, "K": 6, "T_w": 10.0, "T_f": 44.0, "T": 3.0, "tau": 20, "lr": 0.5}
    cpu = D.load_dcnas_config(CONFIGS / "dcnas-nb201-cpu.yaml")
    assert cpu.space.name == "nb201" and cpu.L == 18
    assert get_space("dcnas-mbconv").cardinality() == 6 ** 16
