"""A pruned view of a trained network: one module whose tensors are re-pointed per pruning proposal, in place.

MENAS (Wei et al.), "Exploring Lottery Tickets": every proposal is the trained network truncated "from the low
index for slimmed layers" (Eq. 1), then BN re-calibrated and ranked by inference accuracy. Building a new network
per proposal (modules, storage, copying every tensor) costs more than the proposal's forward passes on a small
network. :class:`PrunedView` builds ONE network with the trained weights (the only copy) and, per proposal,
points every parameter and BatchNorm buffer at the leading slice of the full tensor that Eq. 1 keeps (views, no
copies) and sets the layers' channel counts (``in_channels`` / ``out_channels`` / ``groups`` of each conv,
``num_features`` of each BatchNorm) to the proposal's. Its forward pass is then the pruned network's: same
operations on the same values as :func:`~nasforge.prune.inherit.inherit_weights` into a freshly built proposal.

BN re-calibration writes the statistics of the active channels in place into the view's own full-size buffers
(the trained network's are never touched); each :meth:`PrunedView.set` starts again from the slices of the
trained statistics, so the view equals the truncated network before and after calibration. :meth:`PrunedView.build` makes a real, standalone pruned network with
the current proposal's tensors copied out, for the few proposals that are kept (the top-k tickets to fine-tune).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..arch import Architecture
from ..errors import InvalidValue
from ..nn.mbconv import InvertedResidual, MBConvNet
from ..nn.spec import MBConvSpec, NetworkSpec
from ..spaces.base import SearchSpace
from ..spaces.state import empty_network

__all__ = ["PrunedView"]

#: per module type, the attributes that hold a channel count (copied from the proposal's template)
_SIZES: dict[type, tuple[str, ...]] = {nn.Conv2d: ("in_channels", "out_channels", "groups"),
                                       nn.Linear: ("in_features", "out_features"),
                                       nn.BatchNorm2d: ("num_features",)}


def _leading(full: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    """The Eq. 1 slice of ``full`` with ``shape``: leading entries of the channel dims (0 and 1); a kernel (dims 2+)
    must be unchanged (a pruning proposal narrows layers, never changes kernels)."""
    if len(shape) != full.dim() or any(s > f for s, f in zip(shape, full.shape)) or \
            tuple(shape[2:]) != tuple(full.shape[2:]):
        raise InvalidValue(f"pruned tensor {name}", tuple(shape),
                           f"a leading-channel slice of the trained {tuple(full.shape)} (Eq. 1 truncation)")
    if tuple(shape) == tuple(full.shape):
        return full
    return full[tuple(slice(0, s) for s in shape)]


class PrunedView:
    """The trained ``model`` (``space.build(arch, input_shape, num_classes)``'s tensors) as a network that becomes
    any pruning proposal of ``arch`` with :meth:`set`; ``view.net`` is the module to run (eval mode).

    Built once: ``model``'s state is copied to ``device`` (the view never changes ``model``). :meth:`set` costs the
    proposal's spec, one view per tensor and, for a block width not seen before, a meta-device build of that
    one block (its tensor shapes and layer sizes; cached). The space's networks must be
    :class:`~nasforge.nn.mbconv.MBConvNet` (``blocks.{i}`` built from ``spec.blocks[i]``), as MENAS's are.
    """

    def __init__(self, model: nn.Module, space: SearchSpace, arch: Architecture, input_shape: tuple[int, int, int],
                 num_classes: int, device: torch.device | str = "cpu") -> None:
        self.space, self.arch = space, arch
        self.input_shape, self.num_classes = input_shape, num_classes
        self.net = empty_network(space, arch, input_shape, num_classes, device)
        self.net.load_state_dict(model.state_dict())
        self.net.eval()
        self._owners: dict[str, tuple[nn.Module, str, bool]] = {}
        for prefix, module in self.net.named_modules():
            for local, p in module._parameters.items():
                if p is not None:
                    self._owners[f"{prefix}.{local}" if prefix else local] = (module, local, True)
            for local, b in module._buffers.items():
                if b is not None:
                    self._owners[f"{prefix}.{local}" if prefix else local] = (module, local, False)
        self._full: dict[str, Tensor] = {k: v.detach() for k, v in self.net.state_dict(keep_vars=True).items()}
        #: the trained BN statistics: every :meth:`set` starts from their slices (calibration overwrites the view's)
        self._trained = {k: v.clone() for k, v in self._full.items() if not self._owners[k][2]}
        self._sized = {prefix: (module, attrs) for prefix, module in self.net.named_modules()
                       for kind, attrs in _SIZES.items() if type(module) is kind}
        self._original = {prefix: tuple(getattr(m, a) for a in attrs) for prefix, (m, attrs) in self._sized.items()}
        self.proposal: Architecture = arch
        self._spec: NetworkSpec = space.spec(arch, input_shape, num_classes)
        self._full_shapes = {k: tuple(v.shape) for k, v in self._full.items()}
        self._blocks: dict[MBConvSpec, tuple[dict[str, tuple[int, ...]], dict[str, nn.Module]]] = {}
        if not isinstance(self.net, MBConvNet) or len(self.net.blocks) != len(self._spec.blocks):
            raise InvalidValue("space", space.name, "a space whose networks are MBConvNets (menas-mt, menas-ws)")

    def _block_template(self, spec: MBConvSpec) -> tuple[dict[str, tuple[int, ...]], dict[str, nn.Module]]:
        """Tensor shapes and sized layers of one block built from ``spec`` (meta device, cached per spec: a
        proposal's blocks take few distinct widths, so most proposals build nothing)."""
        hit = self._blocks.get(spec)
        if hit is None:
            with torch.device("meta"):
                block = InvertedResidual(spec)
            hit = ({k: tuple(v.shape) for k, v in block.state_dict().items()},
                   {k: m for k, m in block.named_modules() if type(m) in _SIZES})
            self._blocks[spec] = hit
        return hit

    def _targets(self, proposal: Architecture) -> tuple[NetworkSpec, dict[str, tuple[int, ...]],
                                                        dict[str, nn.Module]]:
        """The proposal's spec, every tensor's shape and the modules whose sizes the view's layers take."""
        spec = self.space.spec(proposal, self.input_shape, self.num_classes)
        own = self._spec
        where = f"a pruning of {self.space.format(self.arch)} (same stem, head and number of blocks)"
        if len(spec.blocks) != len(own.blocks) or spec.stem != own.stem or spec.head != own.head:
            raise InvalidValue("proposal", self.space.format(proposal), where)
        shapes, sizes = dict(self._full_shapes), {}
        for i, block in enumerate(spec.blocks):
            if block == own.blocks[i]:
                continue
            block_shapes, block_sizes = self._block_template(block)
            prefix = f"blocks.{i}."
            if set(block_shapes) != {k[len(prefix):] for k in self._full if k.startswith(prefix)}:
                raise InvalidValue("proposal", self.space.format(proposal), f"{where}; block {i} has other tensors "
                                   "(an expansion or SE added or removed)")
            shapes.update({prefix + k: v for k, v in block_shapes.items()})
            sizes.update({f"blocks.{i}.{k}" if k else f"blocks.{i}": m for k, m in block_sizes.items()})
        return spec, shapes, sizes

    @torch.no_grad()
    def set(self, proposal: Architecture) -> nn.Module:
        """Point every tensor of :attr:`net` at ``proposal``'s Eq. 1 slice of the trained tensors and set the layer
        sizes; returns :attr:`net`. ``proposal`` must have the trained network's layers (same tensor names),
        narrower or equal on channels only (:class:`InvalidValue` otherwise)."""
        spec, shapes, sizes = self._targets(proposal)
        views = {name: _leading(full, shapes[name], name) for name, full in self._full.items()}
        for name, view in views.items():
            module, local, is_param = self._owners[name]
            if is_param:
                module._parameters[local] = nn.Parameter(view, requires_grad=False)
            else:
                view.copy_(_leading(self._trained[name], shapes[name], name))
                module._buffers[local] = view
        for prefix, (module, attrs) in self._sized.items():
            source = sizes.get(prefix)
            for a, v in zip(attrs, self._original[prefix]):
                setattr(module, a, v if source is None else getattr(source, a))
        self.net.spec = spec
        self.proposal = proposal
        return self.net

    def build(self) -> nn.Module:
        """A standalone ``space.build(proposal, ...)`` holding copies of the current proposal's tensors (weights and
        the BN statistics as they are now, e.g. after re-calibration), on the view's device, in eval mode."""
        net = empty_network(self.space, self.proposal, self.input_shape, self.num_classes,
                            next(iter(self._full.values())).device)
        net.load_state_dict({k: v.detach().clone() for k, v in self.net.state_dict().items()})
        return net.eval()

    def reset(self) -> nn.Module:
        """Back to the unpruned network (the layer sizes and the full tensors)."""
        for name, full in self._full.items():
            module, local, is_param = self._owners[name]
            if is_param:
                module._parameters[local] = nn.Parameter(full, requires_grad=False)
            else:
                full.copy_(self._trained[name])
                module._buffers[local] = full
        for prefix, (module, attrs) in self._sized.items():
            for a, v in zip(attrs, self._original[prefix]):
                setattr(module, a, v)
        self.net.spec = self._spec
        self.proposal = self.arch
        return self.net

    def __repr__(self) -> str:
        return f"PrunedView({self.space.format(self.proposal)!r})"
