"""The BigNAS family values (nasforge.supernet.family): budgets and the JSON round trip of a family."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasforge.errors import DataError, InvalidValue, ParseError
from nasforge.registry import get_space
from nasforge.spaces.bignas import BigNASSpace, BigNASStage
from nasforge.strategies.base import Constraint
from nasforge.supernet.family import FAMILY_FORMAT, Budget, Entry, Family, Member, member_names


def test_budget_forms_and_errors() -> None:
    assert Budget.coerce(("params", 5e4), 1e6) == Budget("params", 5e4)
    assert Budget.coerce(0.5, 1e6) == Budget("flops", 5e5, 0.5)
    assert Budget.coerce({"fraction": 0.25}, 4e6) == Budget("flops", 1e6, 0.25)
    b = Budget("latency_ms", 3.0)
    assert Budget.coerce(b.to_dict(), 1.0) == b and b.satisfied({"latency_ms": 3.0})
    assert not b.satisfied({"latency_ms": 3.01})
    assert Budget.coerce(Constraint("flops", None, 2e6), 1.0) == Budget("flops", 2e6)
    for bad, match in [(1.5, "fraction"), (0, "fraction"), (Constraint("flops", 1.0, 2.0), "upper bound"),
                       (("flops",), "budget"), (("energy", 3.0), "cost.*energy"), (("flops", -1), "max"),
                       (True, "budget"), ({"cost": "flops"}, "budget")]:
        with pytest.raises(InvalidValue, match=match):
            Budget.coerce(bad, 1e6)
    with pytest.raises(InvalidValue, match="budget cost.*flops"):
        Budget("flops", 1.0).satisfied({"params": 1})
    assert member_names(6) == ["S", "M", "L", "XL", "XXL", "XXXL"]


def _tiny() -> BigNASSpace:
    return BigNASSpace(stages=(BigNASStage((8, 16), (1, 2), (3, 5), (1,), 1),), resolutions=(24, 32),
                       stem_widths=(8,), head_widths=(32,))


def test_family_json_round_trip_needs_the_space_of_a_custom_table(tmp_path: Path) -> None:
    space = _tiny()
    small, large = space.smallest(), space.largest()
    e_small = Entry(small, space.format(small), 31.5, {"flops": 1000, "params": 50})
    e_large = Entry(large, space.format(large), 40.25, {"flops": 9000, "params": 80})
    fam = Family("bignas", [e_small, e_large],
                 [Member("S", Budget("flops", 2000.0), e_small, e_small, 0),
                  Member("M", Budget("flops", 9000.0, 1.0), e_large, e_small, 3)], {"seed": 0})
    data = json.loads(json.dumps(fam.to_dict()))
    assert data["format"] == FAMILY_FORMAT and data["coarse"][1] == {
        "arch": space.format(large), "genes": large.to_dict(), "accuracy": 40.25, "flops": 9000, "params": 80}
    assert data["members"][1]["skeleton"]["arch"] == space.format(small)
    back = Family.from_dict(data, space)
    assert back == fam and back.member("M").entry.costs == {"flops": 9000, "params": 80}
    assert back.member("M").accuracy == 40.25 and back.member("S").arch == small
    assert Family.from_dict(data) == fam  # genes taken as stored without a space
    fam.save(tmp_path / "family.json")
    assert Family.load(tmp_path / "family.json", space) == fam
    with pytest.raises(InvalidValue, match="gene"):
        Family.from_dict(data, get_space("bignas"))  # validated against the given space: Table 1 lacks 24 px
    with pytest.raises(InvalidValue, match="family member"):
        fam.member("XL")
    with pytest.raises(ParseError, match="family"):
        Family.from_dict({**data, "format": "other/1"})
    with pytest.raises(ParseError, match="family entry"):
        Family.from_dict({**data, "coarse": [{"arch": "x"}]})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ParseError, match="family file"):
        Family.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="does not exist"):
        Family.load(tmp_path / "missing.json")
