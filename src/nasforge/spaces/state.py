"""Networks of a space without initialising them, and checks that a state dict belongs to one: a meta-device
``space.build`` gives the exact tensor names and shapes at no memory or RNG cost. Used wherever weights are loaded
into a network rebuilt from its architecture (export, MENAS inheritance and lottery tickets).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import InvalidValue

if TYPE_CHECKING:
    from ..arch import Architecture
    from .base import SearchSpace

__all__ = ["empty_network", "check_state_matches", "check_state_dict"]


def check_state_dict(parent_state: Any) -> Mapping[str, Tensor]:
    if not isinstance(parent_state, Mapping):
        raise InvalidValue("parent_state", type(parent_state).__name__, "a mapping of names to tensors "
                                                                       "(model.state_dict())")
    for key, value in parent_state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise InvalidValue(f"parent_state[{key!r}]", type(value).__name__, "a torch.Tensor")
    return parent_state


def empty_network(space: "SearchSpace", arch: "Architecture", input_shape: tuple[int, int, int] | None,
                  num_classes: int | None, device: str | torch.device | None = None) -> nn.Module:
    """``space.build(arch, ...)`` with *uninitialised* tensors: built on the meta device, then given storage on
    ``device`` (``None``: left on meta, shapes only). For networks whose every tensor is overwritten next
    (Eq. 1 truncation, loading a checkpoint): no initialisation is drawn, so no RNG is touched and no time spent.
    """
    with torch.device("meta"):
        net = space.build(arch, input_shape, num_classes)
    if device is not None:  # torch.empty per tensor: much faster than Module.to_empty's meta path
        net.load_state_dict({k: torch.empty(v.shape, dtype=v.dtype, device=device)
                             for k, v in net.state_dict().items()}, assign=True)
        if any(t.is_meta for t in (*net.parameters(), *net.buffers())):  # non-persistent buffers
            net = net.to_empty(device=device)
    return net


def check_state_matches(state: Mapping[str, Tensor], space: "SearchSpace", arch: "Architecture",
                        input_shape: tuple[int, int, int] | None, num_classes: int | None, *,
                        field: str = "state_dict") -> None:
    """Raise :class:`InvalidValue` naming ``field`` unless ``state`` has exactly the tensor names and shapes of
    ``space.build(arch, input_shape, num_classes)`` (checked on a meta-device build: no memory, no init)."""
    expected = {k: tuple(v.shape) for k, v in empty_network(space, arch, input_shape, num_classes).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in check_state_dict(state).items()}
    if got == expected:
        return
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
    else:
        name = next(k for k in sorted(expected) if expected[k] != got[k])
        what = f"{name} has shape {list(got[name])} instead of {list(expected[name])}"
    raise InvalidValue(field, f"a state dict of another network ({what})",
                       f"the tensors of space {space.name!r} built for this architecture at input "
                       f"{list(space.resolve_input(input_shape, num_classes)[0])}")
