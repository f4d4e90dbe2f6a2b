"""A constraint met by under 2 % of the space must not abort a search while feasible architectures remain."""
from __future__ import annotations

from nasforge import get_space
from nasforge.cost import AnalyticCost
from nasforge.strategies import Constraint, get_strategy, list_strategies


def test_rare_feasible_region_keeps_asking() -> None:
    space = get_space("nb201")
    cost = AnalyticCost(space)
    bound = Constraint("flops", min=2.6e8)  # about 270 of the 15,625 cells
    for name in ["random", "regularized-evolution", "local-search"]:
        assert name in list_strategies()
        s = get_strategy(name, space, seed=0, constraints=[bound], cost_fn=cost.cost)
        asked = [c.arch for _ in range(40) for c in s.ask(1)]
        assert len({a.key() for a in asked}) == 40
        assert all(cost.cost(a)["flops"] >= 2.6e8 for a in asked)
