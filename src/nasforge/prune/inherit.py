"""Weight inheritance between two networks of one MBConv space: MENAS Eq. 1 truncation and individual weight
sharing are the same operation.

MENAS (Wei et al.), "Exploring Lottery Tickets", step (b) and Eq. 1: a pruned network is initialised from its
trained, unpruned network; "weights in the origin network will be copied for unchanged layers and truncated from
the low index for slimmed layers", ``W* = W[:C_out * p_i, :C_in * p_(i-1)]`` for convolutions and linear layers
and ``W[:C_out * p_i]`` for BatchNorm. "Individual Weight Sharing": a child network "copies weights of overlapped
layers from [its] trained parent, while randomly initializing newly generated layers". A pruned network is
simply a child whose layers are narrower, so :func:`inherit_weights` does both.

Tensors are matched by layer, not by position: ``child_layers`` / ``parent_layers`` map layer ids
``"s{i}.l{j}"`` to module prefixes ``"blocks.{k}"`` (``space.layer_modules(arch)``), so a child with an extra
layer in stage 1 still finds stage 2's weights. Names outside those modules (``stem.*``, ``head.*``) match by
name. For every tensor of ``child.state_dict()`` (parameters and buffers: BN running statistics and
``num_batches_tracked`` included) the parent tensor with the same layer id and suffix is taken, and:

==============  =================================================================================================
``"copy"``      same shape: copied
``"truncate"``  parent larger on channel dims only: the *leading* channels are copied (Eq. 1). Channel dims are
                every dim of a 1-D/2-D tensor and dims 0-1 of a conv kernel, so conv ``(out, in, k, k)``, linear
                ``(out, in)``, BN ``(C)``, the depthwise ``(C, 1, k, k)`` and SE ``conv_reduce`` / ``conv_expand``
                are all sliced consistently
``"crop"``      the parent's kernel is larger: its centre ``k x k`` is copied (OFA-style elastic kernel without a
                transform; the child then computes the parent's centre taps)
``"pad"``       the parent's kernel is smaller: it is placed at the centre of a zero kernel, so the child computes
                the same convolution as the parent
``"partial"``   the child is larger on a channel dim: the overlap is copied into the leading part and the rest
                keeps the child's own initialisation
``"fresh"``     no parent tensor (new layer, SE or expansion conv added) or a different rank: the child's own
                initialisation is kept
==============  =================================================================================================

When several rules apply to one tensor the report names the first of ``partial, pad, crop, truncate``: e.g. a
kernel ``3 -> 5`` change on a wider layer is ``"partial"``. Nothing random happens here.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import InvalidValue
from ..spaces.state import check_state_dict, check_state_matches, empty_network

__all__ = ["inherit_weights", "inheritance_summary", "empty_network", "check_state_matches", "KINDS"]

#: every value :func:`inherit_weights` reports, in the order of its precedence rules (module docstring)
KINDS: tuple[str, ...] = ("copy", "truncate", "crop", "pad", "partial", "fresh")


def _check_layer_map(name: str, layers: Any, has_module: Any) -> dict[str, str]:
    """``layers`` as a plain dict of str -> str whose every module prefix satisfies ``has_module``."""
    if not isinstance(layers, Mapping):
        raise InvalidValue(name, type(layers).__name__, "a mapping of layer ids to module prefixes, e.g. "
                                                        "{'s1.l0': 'blocks.0'} (space.layer_modules(arch))")
    out: dict[str, str] = {}
    for lid, prefix in layers.items():
        if not isinstance(lid, str) or not isinstance(prefix, str) or not prefix:
            raise InvalidValue(f"{name}[{lid!r}]", prefix, "a module prefix string such as 'blocks.0'")
        if not has_module(prefix):
            raise InvalidValue(f"{name}[{lid!r}]", prefix, "a module of the network (no tensor has this prefix)")
        out[lid] = prefix
    return out


def _has_prefix(names: Any, prefix: str) -> bool:
    head = prefix + "."
    return any(n.startswith(head) for n in names)


def _split(name: str, prefixes: Mapping[str, str]) -> tuple[str | None, str]:
    """``(layer id, suffix)`` of tensor ``name`` under the longest module prefix in ``prefixes`` (prefix -> id),
    or ``(None, name)`` when it lies outside every mapped module."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        lid = prefixes.get(".".join(parts[:cut]))
        if lid is not None:
            return lid, ".".join(parts[cut:])
    return None, name


def _parent_name(name: str, child_prefixes: Mapping[str, str], parent_layers: Mapping[str, str],
                 parent_prefixes: Mapping[str, str]) -> str | None:
    """The parent tensor name matching child tensor ``name``, or ``None`` when the child's layer has no parent
    counterpart. A name outside the child's mapped layers matches by name, unless that name lies inside one of
    the parent's mapped layers (an unmapped child module never takes a parent layer's weights)."""
    lid, suffix = _split(name, child_prefixes)
    if lid is None:
        return None if _split(name, parent_prefixes)[0] is not None else name
    prefix = parent_layers.get(lid)
    return None if prefix is None else f"{prefix}.{suffix}"


@torch.no_grad()
def _transfer(dst: Tensor, src: Tensor) -> str:
    """Copy the overlap of ``src`` into ``dst`` by the rules of the module docstring; returns the kind."""
    if dst.dim() != src.dim():
        return "fresh"
    if dst.shape == src.shape:
        dst.copy_(src)
        return "copy"
    spatial = range(2, dst.dim()) if dst.dim() == 4 else range(0)
    dst_idx: list[slice] = []
    src_idx: list[slice] = []
    flags = set()
    for d, (c, p) in enumerate(zip(dst.shape, src.shape)):
        if d in spatial and c != p:
            off = abs(c - p) // 2
            if c < p:
                flags.add("crop")
                dst_idx.append(slice(None))
                src_idx.append(slice(off, off + c))
            else:
                flags.add("pad")
                dst_idx.append(slice(off, off + p))
                src_idx.append(slice(None))
        else:
            n = min(c, p)
            flags.add("partial" if c > p else "truncate" if c < p else "same")
            dst_idx.append(slice(0, n))
            src_idx.append(slice(0, n))
    if "pad" in flags:  # zeros around the parent's kernel, in the channels the parent covers
        dst[tuple(dst_idx[:2]) + (slice(None),) * (dst.dim() - 2)].zero_()
    dst[tuple(dst_idx)] = src[tuple(src_idx)].to(dtype=dst.dtype, device=dst.device)
    return next(k for k in ("partial", "pad", "crop", "truncate") if k in flags)


def inherit_weights(child: nn.Module, parent_state: Mapping[str, Tensor], *, child_layers: Mapping[str, str],
                    parent_layers: Mapping[str, str]) -> dict[str, str]:
    """Initialise ``child`` in place from a trained parent's ``state_dict`` (MENAS Eq. 1 and individual weight
    sharing; rules in the module docstring). Returns ``child tensor name -> kind`` for every tensor of
    ``child.state_dict()``, kinds from :data:`KINDS`.

    ``child_layers`` / ``parent_layers``: layer id -> module prefix of each network
    (``space.layer_modules(arch)``); every prefix must name tensors of its network (``InvalidValue`` otherwise).
    Deterministic; no random numbers are drawn and ``parent_state`` is only read.
    """
    if not isinstance(child, nn.Module):
        raise InvalidValue("child", type(child).__name__, "a torch.nn.Module")
    parent_state = check_state_dict(parent_state)
    child_state = child.state_dict()
    child_map = _check_layer_map("child_layers", child_layers, lambda p: _has_prefix(child_state, p))
    parent_map = _check_layer_map("parent_layers", parent_layers, lambda p: _has_prefix(parent_state, p))
    child_prefixes = {prefix: lid for lid, prefix in child_map.items()}
    parent_prefixes = {prefix: lid for lid, prefix in parent_map.items()}
    report: dict[str, str] = {}
    for name, dst in child_state.items():
        src_name = _parent_name(name, child_prefixes, parent_map, parent_prefixes)
        src = parent_state.get(src_name) if src_name is not None else None
        report[name] = "fresh" if src is None else _transfer(dst, src)
    return report


def inheritance_summary(report: Mapping[str, str]) -> dict[str, int]:
    """Counts per kind of an :func:`inherit_weights` report (every kind of :data:`KINDS` present, zeros
    included), e.g. ``{"copy": 40, "truncate": 12, ..., "fresh": 0}``, for a trial's ``info``."""
    if not isinstance(report, Mapping):
        raise InvalidValue("report", type(report).__name__, "the mapping inherit_weights returned")
    counts = Counter(report.values())
    unknown = set(counts) - set(KINDS)
    if unknown:
        raise InvalidValue("report kind", sorted(unknown)[0], KINDS)
    return {k: counts.get(k, 0) for k in KINDS}
