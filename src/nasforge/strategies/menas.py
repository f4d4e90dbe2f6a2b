"""MENAS's generational search with lottery tickets (Wei et al., *Multi-trial Neural Architecture Search with
Lottery Tickets*, menas.txt "Overview" steps 1-5, "Large Model Regularization", "Experimental Details").

One generation ``g`` is a set of *nets* followed by their *lottery tickets*:

1. nets: generation 0 is ``population_size`` random architectures within the constraints (step 1: "randomly
   sampling 60 networks within the computation budget"; the FLOPs budget is a :class:`~.base.Constraint`);
   later generations are ``num_children`` children of the parents chosen at the end of the previous one (step 4);
2. tickets: when a net is told *complete*, its evaluator has ranked its pruning proposals (step 2(a)-(d)) and
   written the ranked list, best first, to ``result.info["lottery_tickets"]`` (:class:`~nasforge.eval.menas.
   MenasEvaluator`). The first ``lottery_tickets`` of them that were never asked become candidates of kind
   ``"ticket"`` with ``parents=(net id,)`` in the same generation (step 2(d): "select the top-2 candidate as the
   Lottery Tickets"); they are fine-tuned by the evaluator (step 2(e)). Tickets are exempt from the constraints:
   they are derived by pruning, not proposed.
3. barrier: when every trial of the generation (nets and tickets; failed ones count as done) has been told, the
   parents of the next generation are chosen (step 3 and "Large Model Regularization"): the
   ``round((1 - large_model_ratio) * parent_size)`` best complete lottery tickets of the generation by the metric,
   then the rest of ``parent_size`` filled with the LARGEST complete models of the generation (by
   ``size_metric`` from the result costs, else from the cost function) not already chosen. The paper's 80% / 20%
   is ``large_model_ratio=0.2``; ``0`` is the Table 6 ablation "without large model regularization". With
   ``lottery_tickets=0`` (the "without lottery tickets" ablation), or when a generation produced no complete
   ticket, the best part is taken from the generation's nets instead.
4. children (step 4): ``child = mutate(crossover(a, b))`` with probability ``crossover_prob``, else
   ``mutate(a)``, with ``a``, ``b`` drawn uniformly from the parents and ``mutation_genes`` genes changed
   (:meth:`SearchSpace.mutate`). ``parents = (a, b)`` or ``(a,)``: ``parents[0]`` is the one whose weights the
   child inherits (individual weight sharing, "Individual Weight Sharing"). Children must satisfy the
   constraints and be new (the base class's dedup + feasibility machinery); when none turns up, the base
   class's uniform fallback gives a random net, recorded as kind ``"init"`` (trained from scratch). The paper
   gives no crossover probability or mutation rate: 0.5 and one gene are our choices.
5. repeat until ``generations`` generations (step 5); then :meth:`can_ask` stays False and a
   :class:`~nasforge.study.Study` stops.

:meth:`can_ask` is False while the generation waits for trials in flight (nothing left to ask) and after the last
generation. A driver that calls :meth:`ask` anyway (e.g. :func:`~.loop.run_loop`) starts the next generation
early, with parents chosen from the trials told so far (late trials of the previous generation are still told
but queue no tickets).

Budget: :attr:`MenasStrategy.budget` is the nominal number of trials, ``population_size * (1 + lottery_tickets) +
(generations - 1) * num_children * (1 + lottery_tickets)``. With the paper's settings it is 60*3 + 4*30*3 = 540,
exactly the "N=540 evaluated networks" of menas.txt Table 4 ("the evaluated networks include normally trained
networks and fine-tuned Lottery Tickets"). Fewer trials run when nets fail or their tickets were seen before.

Every candidate's :attr:`Candidate.info` records ``kind`` (``"init"``, ``"ticket"``, ``"child"``), and for
tickets ``ticket_rank`` (position in the net's ranked list) and ``proxy_accuracy`` (its BN-calibrated accuracy
before fine-tuning); tickets and children record ``inherit_from`` (the trial whose weights they start from) and
``parents_role`` (per parent: ``"pruned"``, ``"inherit"``, ``"crossover"``); children record ``selected_as``
(per parent: ``"ticket"``/``"net"`` for the best part, ``"large"`` for large-model regularisation) and ``op``.
"""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from ..arch import Architecture
from ..errors import InvalidArchitecture, InvalidValue, ParseError
from ..io import write_json
from ..spaces.base import SearchSpace
from ..trial import INTERRUPTED, Candidate, Trial, TrialState
from .base import Hyper, Strategy, register_strategy

__all__ = ["MenasStrategy", "KINDS", "ranked_tickets", "nominal_budget", "menas_summary", "SUMMARY_NAME"]

#: trial kinds of a MENAS search
KINDS = ("init", "ticket", "child")


def ranked_tickets(space: SearchSpace, info: Mapping[str, Any]) -> list[tuple[Architecture, dict[str, Any]]]:
    """The ranked pruning proposals an evaluator wrote to ``result.info["lottery_tickets"]``, as architectures.

    Each entry is a mapping with the architecture as ``arch`` (the space's compact string) or ``genes`` (a
    mapping), plus optional ``accuracy``, ``flops``, ``params``; entries are best first. An entry the space
    rejects raises :class:`InvalidValue` naming it.
    """
    entries = info.get("lottery_tickets") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise InvalidValue("result.info['lottery_tickets']", type(entries).__name__, "a list of {arch, accuracy}")
    out = []
    for i, entry in enumerate(entries):
        field = f"result.info['lottery_tickets'][{i}]"
        genes, text = (entry.get("genes"), entry.get("arch")) if isinstance(entry, Mapping) else (None, None)
        if not isinstance(genes, Mapping) and not isinstance(text, str):
            raise InvalidValue(field, entry, "a mapping with 'arch' (compact string) or 'genes'")
        try:
            arch = space.make(genes) if isinstance(genes, Mapping) else space.parse(text)
        except (InvalidArchitecture, ParseError) as exc:
            raise InvalidValue(field, genes or text, f"an architecture of space {space.name!r} ({exc})") from None
        out.append((arch, dict(entry)))
    return out


def nominal_budget(population_size: int = 60, num_children: int = 30, generations: int = 5,
                   lottery_tickets: int = 2) -> int:
    """Trials of a full MENAS schedule: ``P (1 + T) + (G - 1) C (1 + T)``; the paper's defaults give
    60*3 + 4*30*3 = 540, the N of menas.txt Table 4."""
    per_net = 1 + lottery_tickets
    return population_size * per_net + (generations - 1) * num_children * per_net


def _cand_to_dict(c: Candidate) -> dict[str, Any]:
    return {"genes": c.arch.to_dict(), "parents": list(c.parents), "generation": c.generation, "info": dict(c.info)}


@register_strategy("menas")
class MenasStrategy(Strategy):
    """MENAS evolution with lottery tickets and large-model regularisation (see the module docstring).

    Hyper-parameters (menas.txt "Overview" and "Experimental Details"; paper defaults): ``population_size`` 60,
    ``parent_size`` 30, ``num_children`` 30, ``generations`` 5, ``lottery_tickets`` 2 (top-k per trained net; 0
    disables), ``large_model_ratio`` 0.2 (0 disables, Table 6), ``size_metric`` ``"params"`` (what "largest"
    means), and our choices ``crossover_prob`` 0.5 and ``mutation_genes`` 1 (not given by the paper).
    """

    hyper = {
        "population_size": Hyper(60, int, 1, None, doc="random nets of generation 0 (Overview step 1: 60)"),
        "parent_size": Hyper(30, int, 1, None, doc="parents per generation (step 3: 30)"),
        "num_children": Hyper(30, int, 1, None, doc="children per later generation (step 4: 30)"),
        "generations": Hyper(5, int, 1, None, doc="generations, the initial one included (Exp. Details: 5)"),
        "lottery_tickets": Hyper(2, int, 0, None, doc="tickets per trained net (step 2(d): top-2; 0 disables)"),
        "large_model_ratio": Hyper(0.2, float, 0.0, 1.0, doc="share of largest models among parents (20%)"),
        "size_metric": Hyper("params", str, doc="cost that ranks model size for large-model regularisation"),
        "crossover_prob": Hyper(0.5, float, 0.0, 1.0, doc="probability of crossover before mutation (ours)"),
        "mutation_genes": Hyper(1, int, 1, None, doc="genes changed per mutation (ours)"),
    }

    def __init__(self, space: SearchSpace, **kw: Any) -> None:
        super().__init__(space, **kw)
        self._gen = 0
        self._nets_asked = 0  # nets (init / child) of the current generation asked so far
        self._done = False
        self._tickets: list[Candidate] = []  # queued tickets of the current generation, asked first
        self._tickets_asked: dict[int, int] = {}  # net trial id -> tickets asked for it
        self._asked: dict[str, dict[str, Any]] = {}  # arch key -> {"kind", "generation"} of asks in flight
        self._kinds: dict[int, str] = {}  # told trial id -> kind
        self._parents: list[int] = []  # parent trial ids of the current generation
        self._roles: dict[int, str] = {}  # parent id -> "ticket" | "net" | "large"
        self._selections: list[dict[str, Any]] = []  # per finished generation: the parents it gave
        self._incoming: list[tuple[Architecture, dict[str, Any]]] = []

    @staticmethod
    def check_search(search: Any) -> None:
        """Search-config rule: MENAS needs its evaluator (kind ``menas``: inheritance and lottery tickets live
        there), and the top-k tickets come from at most K proposals."""
        evaluator = search.evaluator
        if evaluator.kind != "menas":
            raise InvalidValue("evaluator.kind", evaluator.kind, "'menas' with strategy 'menas' (the evaluator "
                               "inherits parent weights and explores the lottery tickets)")
        tickets = search.strategy.params.get("lottery_tickets", 2)
        if isinstance(tickets, int) and tickets > evaluator.proposals:
            raise InvalidValue("strategy.params.lottery_tickets", tickets,
                               f"an int <= evaluator.proposals ({evaluator.proposals}): the top-k of K pruning "
                               "proposals")
        names = search.reported_names()  # (metrics, costs, cost function) or None: undeclared
        size = search.strategy.params.get("size_metric", MenasStrategy.hyper["size_metric"].default)
        if names is not None:  # the trial's result costs, else the cost function's (built for constraints)
            allowed = names[1] | (names[2] if search.constraints else set())
            if not isinstance(size, str) or size not in allowed:
                raise InvalidValue("strategy.params.size_metric", size,
                                   ", ".join(repr(n) for n in sorted(allowed)) + " (a cost the evaluator reports"
                                   + (" or the constraints' cost function gives)" if search.constraints else ")"))

    def _check_hyper(self, where: str) -> None:
        if not self.hp["size_metric"]:
            raise InvalidValue("size_metric", "", "a cost name, e.g. 'params' or 'flops'", where=where)

    # ------------------------------------------------------------------------------------------- schedule
    @property
    def budget(self) -> int:
        """Nominal trials: ``P (1 + T) + (G - 1) C (1 + T)`` (paper: 60*3 + 4*30*3 = 540 = Table 4's N)."""
        hp = self.hp
        return nominal_budget(hp["population_size"], hp["num_children"], hp["generations"], hp["lottery_tickets"])

    @property
    def generation(self) -> int:
        """The generation being asked (0 = initial population)."""
        return self._gen

    @property
    def _generation(self) -> int:
        return self._gen

    @property
    def finished(self) -> bool:
        """Whether every generation of the schedule has been told."""
        return self._done

    @property
    def parents(self) -> list[Trial]:
        """Parents of the current generation (best part first, then the largest models)."""
        return [self._trials[i] for i in self._parents]

    @property
    def selections(self) -> list[dict[str, Any]]:
        """Per finished generation: ``{"generation", "best": [ids], "large": [ids]}`` (parents it gave)."""
        return [dict(s) for s in self._selections]

    def kind(self, trial_id: int) -> str | None:
        """The kind (``init`` / ``ticket`` / ``child``) of a told trial."""
        return self._kinds.get(trial_id)

    def _target(self) -> int:
        return self.hp["population_size"] if self._gen == 0 else self.hp["num_children"]

    def write_outputs(self, study: Any) -> dict[str, Any]:
        """Study output hook: ``menas.json`` (lineage, per-generation statistics, Pareto fronts of accuracy vs
        FLOPs / params, lottery-ticket cost; :func:`menas_summary`) in the run folder."""
        path = study.run_dir / SUMMARY_NAME
        write_json(path, menas_summary(study))
        return {"menas": path}

    def can_ask(self) -> bool:
        """True while the current generation has tickets queued or nets left to ask (module docstring)."""
        return not self._done and (bool(self._tickets) or self._nets_asked < self._target())

    def _next_candidate(self) -> Candidate:
        if not self.can_ask():  # a driver ignoring the barrier: start the next generation now
            self._advance()
        if self._tickets:  # already deduplicated when queued; exempt from the constraints (derived by pruning)
            return self._tickets.pop(0)
        return super()._next_candidate()

    def _propose(self) -> Candidate:
        if self._gen == 0 or not self._parents:
            return Candidate(self.space.sample(self._rng), (), self._gen, {"kind": "init"})
        ids, rng = self._parents, self._rng
        a = self._trials[ids[int(rng.integers(len(ids)))]]
        if len(ids) >= 2 and rng.random() < self.hp["crossover_prob"]:
            i, j = rng.choice(len(ids), size=2, replace=False)
            a, b = self._trials[ids[int(i)]], self._trials[ids[int(j)]]
            base, parents, op = self.space.crossover(a.arch, b.arch, rng), (a.id, b.id), "crossover+mutation"
        else:
            base, parents, op = a.arch, (a.id,), "mutation"
        child = self.space.mutate(base, rng, n=self.hp["mutation_genes"])
        info = {"kind": "child", "op": op, "inherit_from": a.id,
                "parents_role": ["inherit", "crossover"][:len(parents)],
                "selected_as": [self._roles.get(p, "best") for p in parents]}
        return Candidate(child, parents, self._gen, info)

    def _on_ask(self, cand: Candidate) -> None:
        kind = cand.info.setdefault("kind", "init")  # the base's uniform fallback is a random (init) net
        if cand.generation > self._gen:  # only while rebuilding: generations come from the stored trials
            self._gen, self._nets_asked, self._parents, self._roles = cand.generation, 0, [], {}
        if kind == "ticket":
            net = int(cand.parents[0])
            self._tickets_asked[net] = self._tickets_asked.get(net, 0) + 1
        elif cand.generation == self._gen:
            self._nets_asked += 1
        self._asked[cand.arch.key()] = {"kind": kind, "generation": int(cand.generation)}

    # ------------------------------------------------------------------------------------------- tell
    def tell(self, trial: Trial) -> None:
        """Record a finished trial; a complete net's ranked ``result.info["lottery_tickets"]`` queues its tickets."""
        incoming: list[tuple[Architecture, dict[str, Any]]] = []
        if isinstance(trial, Trial) and TrialState(trial.state) is TrialState.COMPLETE and trial.result is not None:
            incoming = ranked_tickets(self.space, trial.result.info)
        self._incoming = incoming  # the base keeps only metrics and costs: read the info before it is dropped
        try:
            super().tell(trial)
        finally:
            self._incoming = []

    def _precheck(self, trial: Trial, score: float | None) -> None:
        if score is not None and self.hp["large_model_ratio"] > 0:
            self._size(trial)  # a size_metric no result or cost function provides fails at the first tell

    def _observe(self, trial: Trial, score: float | None) -> None:
        asked = self._asked.pop(trial.arch.key(), None)
        kind = asked["kind"] if asked else ("init" if not trial.parents else "child")
        self._kinds[trial.id] = kind
        if kind != "ticket" and score is not None and trial.generation == self._gen and not self._done:
            self._queue_tickets(trial, self._incoming)
        self._maybe_advance()

    def _queue_tickets(self, net: Trial, ranked: list[tuple[Architecture, dict[str, Any]]]) -> None:
        """Queue the first ``lottery_tickets`` never-asked proposals of ``net`` (minus those already asked)."""
        want = self.hp["lottery_tickets"] - self._tickets_asked.get(net.id, 0)
        queued = {c.arch.key() for c in self._tickets}
        for rank, (arch, entry) in enumerate(ranked):
            if want <= 0:
                break
            key = arch.key()
            if key in self._seen or key in queued:
                continue
            info = {"kind": "ticket", "ticket_rank": rank, "inherit_from": net.id, "parents_role": ["pruned"]}
            if isinstance(entry.get("accuracy"), (int, float)):
                info["proxy_accuracy"] = float(entry["accuracy"])
            self._tickets.append(Candidate(arch, (net.id,), net.generation, info))
            queued.add(key)
            want -= 1

    def _maybe_advance(self) -> None:
        """Start the next generation once every trial of this one is told (the generational barrier)."""
        if self._done or self._tickets or self._nets_asked < self._target():
            return
        if any(a["generation"] == self._gen for a in self._asked.values()):
            return
        if self._gen + 1 >= self.hp["generations"]:
            self._done = True
            return
        self._advance()

    def _advance(self) -> None:
        self._parents, self._roles = self._select_parents(self._gen)
        self._selections.append(self._selection(self._gen))
        self._gen, self._nets_asked, self._tickets = self._gen + 1, 0, []

    def _selection(self, gen: int) -> dict[str, Any]:
        return {"generation": gen, "best": [i for i in self._parents if self._roles[i] != "large"],
                "large": [i for i in self._parents if self._roles[i] == "large"]}

    # ------------------------------------------------------------------------------------------- parents
    def _size(self, trial: Trial) -> float:
        name = self.hp["size_metric"]
        costs = trial.result.costs if trial.result is not None else {}
        if name not in costs and self.cost_fn is not None:
            costs = self.costs(trial.arch)
        if name not in costs:
            raise InvalidValue("size_metric", name, sorted(costs) or "a cost the evaluator reports",
                               where=f"strategy {self.name!r}")
        return float(costs[name])

    def _select_parents(self, gen: int) -> tuple[list[int], dict[int, str]]:
        """Parents from generation ``gen``: best tickets (or nets), then the largest models ("Large Model
        Regularization": 80% best-performing Lottery Tickets + 20% largest models)."""
        hp = self.hp
        done = [(t, s) for t, s in self._complete() if t.generation == gen]
        tickets = [(t, s) for t, s in done if self._kinds.get(t.id) == "ticket"]
        pool, role = (tickets, "ticket") if tickets and hp["lottery_tickets"] > 0 else (
            [(t, s) for t, s in done if self._kinds.get(t.id) != "ticket"], "net")
        n_best = min(hp["parent_size"], int(round((1.0 - hp["large_model_ratio"]) * hp["parent_size"])))
        n_large = hp["parent_size"] - n_best  # the regularisation share is fixed: 0 with large_model_ratio 0
        best = [t.id for t, _ in sorted(pool, key=lambda ts: (-ts[1], ts[0].id))[:n_best]]
        roles = dict.fromkeys(best, role)
        if len(best) < n_best:  # too few tickets: the next best-performing networks of the generation fill in
            others = [(t, s) for t, s in done if t.id not in roles]
            fill = [t.id for t, _ in sorted(others, key=lambda ts: (-ts[1], ts[0].id))[:n_best - len(best)]]
            roles.update(dict.fromkeys(fill, "net"))
            best += fill
        rest = [t for t, _ in done if t.id not in roles]
        large = [t.id for t in sorted(rest, key=lambda t: (-self._size(t), t.id))[:n_large]] if n_large else []
        roles.update(dict.fromkeys(large, "large"))
        return best + large, roles

    # ------------------------------------------------------------------------------------------- state
    def _extra_state(self) -> dict[str, Any]:
        return {"gen": self._gen, "nets_asked": self._nets_asked, "done": self._done,
                "tickets": [_cand_to_dict(c) for c in self._tickets],
                "tickets_asked": {str(k): v for k, v in self._tickets_asked.items()},
                "asked": {k: dict(v) for k, v in self._asked.items()},
                "kinds": {str(k): v for k, v in self._kinds.items()},
                "parents": list(self._parents), "roles": {str(k): v for k, v in self._roles.items()},
                "selections": [dict(s) for s in self._selections]}

    def _load_extra_state(self, d: Mapping[str, Any]) -> None:
        self._gen, self._nets_asked, self._done = int(d["gen"]), int(d["nets_asked"]), bool(d["done"])
        self._tickets = [Candidate(self.space.make(c["genes"]), tuple(int(p) for p in c["parents"]),
                                   int(c["generation"]), dict(c["info"])) for c in d["tickets"]]
        self._tickets_asked = {int(k): int(v) for k, v in d["tickets_asked"].items()}
        self._asked = {k: dict(v) for k, v in d["asked"].items()}
        self._kinds = {int(k): str(v) for k, v in d["kinds"].items()}
        self._parents = [int(i) for i in d["parents"]]
        self._roles = {int(k): str(v) for k, v in d["roles"].items()}
        self._selections = [dict(s) for s in d["selections"]]

    def _after_rebuild(self) -> None:
        """Re-derive every generation's parents from the stored trials (the selection is deterministic), then
        start the next generation if the last one was complete when the run stopped."""
        self._selections = []
        for gen in range(self._gen):
            self._parents, self._roles = self._select_parents(gen)
            self._selections.append(self._selection(gen))
        self._maybe_advance()


# ================================================================================================== menas.json
#: the MENAS summary file written into the run folder
SUMMARY_NAME = "menas.json"


def _row(t: Trial, by_id: Mapping[int, Trial]) -> dict[str, Any]:
    """One trial's lineage record."""
    res = t.result
    row: dict[str, Any] = {"id": t.id, "kind": t.info.get("kind"), "generation": t.generation,
                           "parents": list(t.parents), "state": t.state.value, "arch": t.arch.to_dict(),
                           "accuracy": res.metrics.get("accuracy") if res else None,
                           "params": res.costs.get("params") if res else None,
                           "flops": res.costs.get("flops") if res else None,
                           "checkpoint": t.checkpoint, "checkpoint_sha256": t.checkpoint_sha256, "error": t.error}
    for key in ("ticket_rank", "proxy_accuracy", "op", "selected_as", "inherit_from"):
        if key in t.info:
            row[key] = t.info[key]
    if t.parents:
        row["parent_kinds"] = [by_id[p].info.get("kind") if p in by_id else None for p in t.parents]
    if res is not None and "inherited_from" in res.info:
        row["inherited_from"] = res.info["inherited_from"]
    return row


def _generation_stats(trials: list[Trial]) -> dict[str, Any]:
    """Fig. 5 / Fig. 6 in miniature for one generation: sizes, epoch times, best accuracy."""
    done = [t for t in trials if t.state is TrialState.COMPLETE and t.result is not None]
    epoch_s = [t.result.info["train_seconds"] / t.result.info["epochs"] for t in done
               if t.result.info.get("epochs") and t.result.info.get("train_seconds") is not None]
    kinds = [t.info.get("kind") for t in trials]
    return {"nets": sum(k in ("init", "child") for k in kinds), "tickets": kinds.count("ticket"),
            "failed": sum(t.state is TrialState.FAILED and t.error != INTERRUPTED for t in trials),
            "interrupted": sum(t.error == INTERRUPTED for t in trials),
            "mean_params": statistics.fmean(t.result.costs["params"] for t in done) if done else None,
            "mean_flops": statistics.fmean(t.result.costs["flops"] for t in done) if done else None,
            "mean_epoch_seconds": statistics.fmean(epoch_s) if epoch_s else None,
            "best_accuracy": max((t.result.metrics["accuracy"] for t in done), default=None)}


def menas_summary(study: Any) -> dict[str, Any]:
    """Lineage, per-generation statistics, evaluated networks and lottery-ticket cost of a MENAS study."""
    trials = [t for t in study.trials() if t.state is not TrialState.RUNNING]
    by_id = {t.id: t for t in trials}
    generations: dict[int, list[Trial]] = {}
    for t in trials:
        generations.setdefault(t.generation, []).append(t)
    selections = {s["generation"]: s for s in getattr(study.strategy, "selections", [])}
    per_gen = {str(g): {**_generation_stats(ts), "parents_chosen": selections.get(g)}
               for g, ts in sorted(generations.items())}
    costs = [t.result.info["lottery_cost"] for t in trials if t.result is not None and "lottery_cost" in t.result.info]
    # the measure: a net's exploration time over its OWN training time (E_init or E_child epochs)
    per_net = [c["explore_s"] / c["train_seconds"] for c in costs if c.get("train_seconds")]
    explore = sum(c["explore_s"] for c in costs)
    train = sum(t.result.info.get("train_seconds") or 0.0 for t in trials if t.result is not None)
    finished = [t for t in trials if t.state is TrialState.COMPLETE or t.error != INTERRUPTED]
    pareto = study.pareto() or {}
    return {"evaluated_networks": len(finished), "best": study.summary()["best"], "generations": per_gen,
            "pareto": pareto.get("fronts", {}),
            "lottery_cost": {"explore_s": explore, "train_s": train,
                             "share_of_search": explore / (explore + train) if explore + train > 0 else None,
                             "per_net_fraction_median": statistics.median(per_net) if per_net else None,
                             "per_net_fraction_max": max(per_net) if per_net else None},
            "lineage": [_row(t, by_id) for t in trials]}
