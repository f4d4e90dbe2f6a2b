"""Sweep of the test suite for tests that cannot fail (issue 16): ``python tests/weak_asserts.py [-v] [ROOT]``.

A *weak* assertion checks only that something exists or lies in its natural domain:

* an ordering comparison whose constant bounds are all domain bounds (-1, 0, 1, 100), e.g. ``0 <= acc <= 100``,
  ``x > 0``, ``len(rows) >= 1``;
* ``isinstance(...)``, ``callable(...)``, ``hasattr(...)``, ``x is not None``;
* ``any(...)`` over a collection (true when one element of many behaves);
* an ``and`` of weak parts.

A test is *weak-only* when it has at least one ``assert`` and every one is weak, and it checks nothing else
(no ``pytest.raises`` / ``pytest.warns`` / ``pytest.approx``, no ``assert_*`` / ``torch.testing`` helper). The script
prints the number of weak-only tests and of weak ``assert`` statements overall (``-v``: where they are); it exits 1
when a weak-only test exists, so it can guard the suite (tests/test_suite_quality.py).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

DOMAIN_BOUNDS = {-1, 0, 1, 100}
WEAK_CALLS = {"isinstance", "callable", "hasattr", "any"}
STRONG_CALL_PREFIXES = ("assert", "check", "raises", "warns", "approx", "assert_close", "assert_allclose",
                        "assert_array_equal", "assert_equal")


def _const(node: ast.expr) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _const(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    return None


def is_weak(test: ast.expr) -> bool:
    """Whether an assertion's expression is weak (see the module docstring)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return all(is_weak(v) for v in test.values)
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id in WEAK_CALLS:
        return True
    if isinstance(test, ast.Compare):
        if len(test.ops) == 1 and isinstance(test.ops[0], ast.IsNot) and _const(test.comparators[0]) is None \
                and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None:
            return True
        if all(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in test.ops):
            operands = [test.left, *test.comparators]
            consts = [_const(o) for o in operands]
            bounds = [c for c in consts if c is not None]
            return len(bounds) == len(operands) - 1 and all(b in DOMAIN_BOUNDS for b in bounds)
    return False


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def tests_of(path: Path) -> Iterator[ast.FunctionDef]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            yield node


def sweep(root: Path) -> tuple[list[str], list[str]]:
    """(weak-only tests, weak assert statements), each as ``path:line name``."""
    weak_only, weak_asserts = [], []
    for path in sorted(root.rglob("test_*.py")):
        rel = path.relative_to(root.parent) if root.parent in path.parents else path
        for fn in tests_of(path):
            asserts = [n for n in ast.walk(fn) if isinstance(n, ast.Assert)]
            weak = [a for a in asserts if is_weak(a.test)]
            weak_asserts += [f"{rel}:{a.lineno} {fn.name}" for a in weak]
            strong_calls = any(isinstance(n, ast.Call) and _call_name(n).startswith(STRONG_CALL_PREFIXES)
                               for n in ast.walk(fn))
            if asserts and len(weak) == len(asserts) and not strong_calls:
                weak_only.append(f"{rel}:{fn.lineno} {fn.name}")
    return weak_only, weak_asserts


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    root = Path(args[0]) if args else Path(__file__).resolve().parent
    weak_only, weak_asserts = sweep(root)
    print(f"weak-only tests: {len(weak_only)}; weak assert statements: {len(weak_asserts)}")
    if verbose:
        print("\n".join(["-- weak-only tests", *weak_only, "-- weak asserts", *weak_asserts]))
    return 1 if weak_only else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
