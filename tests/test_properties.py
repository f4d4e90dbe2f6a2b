"""Property-based tests (hypothesis) that keep bad input from reaching a run (issue 17):

* every registered space: random architectures round-trip through format / parse / JSON, random gene choices make
  a valid architecture or a nasforge error, and random edits of their strings (compact and JSON) parse to a valid
  architecture or raise a nasforge error with a one-line message;
* every shipped config: a random single-field change validates or raises a nasforge error (never another
  exception type), with a one-line message;
* a search on a changed config that validates never fails all its trials (tabular evaluator, a few trials each).

Derandomized (the same examples every run) and without an example database, so CI is reproducible. About 30 s on
2 CPU cores.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import nasforge
from nasforge.arch import Architecture
from nasforge.cli import main
from nasforge.config import config_from_dict
from nasforge.errors import NasforgeError
from nasforge.methods.base import METHODS
from nasforge.methods.bignas import SupernetConfig, supernet_config_from_dict
from nasforge.registry import STRATEGIES, get_space, list_spaces
from nasforge.schema import validated

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
SPACES = list_spaces()
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow])


def one_line_nasforge_error(exc: BaseException) -> None:
    """``exc`` is a nasforge error whose message is one non-empty line."""
    assert isinstance(exc, NasforgeError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message


# =========================================================================================== architectures
def architectures(name: str) -> st.SearchStrategy[Architecture]:
    """Random architectures of space ``name`` (drawn by the space's own sampler from a hypothesis seed)."""
    space = get_space(name)
    return st.integers(0, 2**32 - 1).map(lambda seed: space.sample(np.random.default_rng(seed)))


def edited(text: str) -> st.SearchStrategy[str]:
    """``text`` with one to three random edits: a character deleted, replaced or inserted, a slice dropped or
    repeated, the text truncated (characters from the text itself, separators, digits and a few oddities)."""
    alphabet = st.sampled_from(sorted(set(text)) + list("0123456789-_,|~+:.{}[]\" e") + ["\x00", "é", "\n", "9" * 30])

    @st.composite
    def edit(draw: Any, s: str) -> str:
        if not s:
            return draw(alphabet)
        i = draw(st.integers(0, len(s) - 1))
        j = draw(st.integers(i, min(len(s), i + 12)))
        kind = draw(st.sampled_from(["delete", "replace", "insert", "drop", "repeat", "truncate"]))
        if kind == "delete":
            return s[:i] + s[i + 1:]
        if kind == "replace":
            return s[:i] + draw(alphabet) + s[i + 1:]
        if kind == "insert":
            return s[:i] + draw(alphabet) + s[i:]
        if kind == "drop":
            return s[:i] + s[j:]
        if kind == "repeat":
            return s[:j] + s[i:j] + s[j:]
        return s[:i]

    out = st.just(text)
    for _ in range(3):
        out = out.flatmap(lambda s: st.one_of(st.just(s), edit(s)))
    return out.filter(lambda s: s != text)


def _parses_or_fails_cleanly(space: Any, text: str, parse: Any) -> None:
    try:
        arch = parse(text)
    except Exception as exc:  # noqa: BLE001 - the property: only nasforge errors, on one line
        one_line_nasforge_error(exc)
        return
    assert isinstance(arch, Architecture) and arch.space == space.name
    assert space.validate(arch) == arch  # a parsed architecture is a valid, canonical one
    assert space.parse(space.format(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
@FUZZ
@given(data=st.data())
def test_architectures_round_trip(name, data):
    space = get_space(name)
    arch = data.draw(architectures(name))
    text = space.format(arch)
    assert space.parse(text) == arch and nasforge.parse(f"{name}:{text}") == arch
    assert Architecture.from_json(arch.to_json()) == arch and nasforge.parse(arch.to_json()) == arch
    assert Architecture.from_json(json.loads(arch.to_json())).key() == arch.key()


@pytest.mark.parametrize("name", SPACES)
@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_gene_choices_make_an_architecture_or_a_nasforge_error(name, data):
    space = get_space(name)
    wrong = st.sampled_from([None, True, 0, -1, 1.5, "x", 10**6])
    genes = {d.label: data.draw(st.one_of(st.sampled_from(d.choices), wrong) if data.draw(st.integers(0, 19)) == 0
                                else st.sampled_from(d.choices), label=d.label)
             for d in space.dimensions() if data.draw(st.integers(0, 19), label=f"keep {d.label}") > 0}
    try:
        arch = space.make(genes)
    except Exception as exc:  # noqa: BLE001
        one_line_nasforge_error(exc)
        return
    assert space.validate(arch) == arch and space.parse(space.format(arch)) == arch


@pytest.mark.parametrize("name", SPACES)
@FUZZ
@given(data=st.data())
def test_edited_architecture_strings_parse_or_fail_with_one_line(name, data):
    space = get_space(name)
    arch = data.draw(architectures(name))
    _parses_or_fails_cleanly(space, data.draw(edited(space.format(arch)), label="text"), space.parse)
    _parses_or_fails_cleanly(space, data.draw(edited(arch.to_json()), label="json"), nasforge.parse)


# =========================================================================================== configs
def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a config (mappings and list items), inner nodes included."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


#: replacement values: wrong types, out-of-range numbers, booleans for numbers, paths, empty containers
VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, 1, -1, 2, 0.0, 0.5, 1.5, -0.1, 1e9, math.nan, math.inf, -math.inf, "",
                     "x", "../../escaped", "a/b", "accuracy", "flops", "latency_ms", "params", "val", "test",
                     "nb201", "menas-mt", "bignas", "random", "nsga2", "train", "tabular", "menas", "max", "min",
                     "cpu", "auto", [], {}, [1, 2], [3, 8, 8], {"name": "flops", "max": 5}, {"a": 1}]),
    st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)


@st.composite
def changed(draw: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with one change: a value replaced, a key removed, or an unknown key added (at any depth)."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy
    path = draw(st.sampled_from(_paths(out) + [("bogus",)]))
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add"]))
    if action == "remove" and isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif action == "add" and isinstance(parent.get(path[-1]) if isinstance(parent, dict) else None, dict):
        parent[path[-1]]["unknown_field"] = draw(VALUES)
    else:
        parent[path[-1]] = draw(VALUES)
    note(f"{action} {'.'.join(map(str, path))}")
    return out


#: ``--set KEY=TEXT`` values as a user types them (parsed as YAML by the override machinery)
SET_TEXT = st.one_of(
    st.sampled_from(["true", "false", "null", "~", "0", "-1", "1e8", "1.0e-3", ".nan", ".inf", "[1, 2]", "[]", "{}",
                     "{a: 1}", "[", "{", "'x'", "\"", "x: y", "- a", "../../x", "", " ", "yes", "0x10", "1_000"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10),
)


def _validate(raw: dict[str, Any], overrides: list[str] = ()) -> Any:
    """The config model of ``raw`` plus ``--set`` overrides: a supernet method's config or a search config."""
    method = raw.get("method")
    if isinstance(method, str) and method in METHODS and METHODS.factory(method).kind == "supernet":
        model = METHODS.factory(method).config_model
        if model is SupernetConfig:
            return supernet_config_from_dict(raw, overrides)
        return validated(model, raw, overrides, {"space": "name"})  # a method with its own config (padnas)
    return config_from_dict(raw, overrides)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
@settings(derandomize=True, database=None, deadline=None, max_examples=60)
@given(data=st.data())
def test_changed_configs_validate_or_raise_a_nasforge_error(path, data):
    raw = yaml.safe_load(path.read_text())
    if data.draw(st.booleans(), label="as --set"):
        keys = [".".join(p) for p in _paths(raw) if all(isinstance(k, str) for k in p)] + ["bogus", "a..b", "x="]
        overrides = [f"{data.draw(st.sampled_from(keys), label='key')}={data.draw(SET_TEXT, label='text')}"]
    else:
        raw, overrides = data.draw(changed(raw)), []
    try:
        _validate(raw, overrides)
        event("validates")
    except Exception as exc:  # noqa: BLE001 - the property: only nasforge errors, on one line
        one_line_nasforge_error(exc)
        event("rejected")


def test_shipped_configs_validate():
    for path in CONFIGS:
        _validate(yaml.safe_load(path.read_text()))


# =========================================================================================== searches
TABULAR = {"name": "fuzz", "space": "nb201", "strategy": {"name": "regularized-evolution",
                                                         "params": {"population_size": 4, "sample_size": 2}},
           "evaluator": {"kind": "tabular", "dataset": "cifar10", "protocol": "hp12-valid"}, "budget": 6,
           "metric": "accuracy", "mode": "max", "seed": 0, "report": False, "progress": False}

#: plausible single-field changes of a tabular search (each field with values right and wrong)
SEARCH_CHANGES = st.one_of(
    st.tuples(st.just("metric"), st.sampled_from(["accuracy", "test_accuracy", "flops", "params", "latency_ms",
                                                   "x"])),
    st.tuples(st.just("mode"), st.sampled_from(["max", "min"])),
    st.tuples(st.just("strategy"), st.sampled_from(STRATEGIES.names()).map(lambda n: {"name": n})),
    st.tuples(st.just("strategy"), st.sampled_from(["nsga2"]).map(
        lambda n: {"name": n, "params": {"population_size": 4, "max_iterations": 2, "cost": "flops"}})),
    st.tuples(st.just("constraints"), st.sampled_from([[], [{"name": "flops", "max": 1.5e8}],
                                                       [{"name": "params", "min": 5e5}],
                                                       [{"name": "latency_ms", "max": 5}]])),
    st.tuples(st.just("evaluator"), st.sampled_from([{"protocol": "hp200-test"}, {"dataset": "cifar100"},
                                                     {"dataset": "imagenet"}, {"kind": "train"}])),
    st.tuples(st.just("budget"), st.sampled_from([1, 3, True, 0, None])),
    st.tuples(st.just("seed"), st.integers(0, 2**31)),
)


@settings(derandomize=True, database=None, deadline=None, max_examples=12,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(change=SEARCH_CHANGES)
def test_a_search_that_validates_never_fails_every_trial(change, capsys):
    key, value = change
    raw = dict(TABULAR)
    raw[key] = {**raw[key], **value} if key == "evaluator" else value
    try:
        config = config_from_dict(raw)
    except Exception as exc:  # noqa: BLE001
        one_line_nasforge_error(exc)
        return
    if config.budget is None or config.budget > 6:  # a strategy's nominal budget: keep the run short
        raw["budget"] = 6
    capsys.readouterr()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "search.yaml").write_text(yaml.safe_dump(raw))
        rc = main(["search", str(Path(tmp) / "search.yaml"), "--out", str(Path(tmp) / "run"), "--format", "json"])
    out, err = capsys.readouterr()
    note(f"rc {rc}: {err.strip()}")
    if rc == 2:  # found while building the study (before any trial): one line
        assert err.startswith("nasforge: error: ") and err.count("\n") == 1
        return
    summary = json.loads(out)
    assert rc == 0 and summary["failed"] < summary["trials"], err
