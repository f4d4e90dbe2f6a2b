"""Costs of a weight-pruned network: non-zero parameters and the FLOPs of its non-zero weights.

LNAS (lnas.txt, Table 1) reports the "FLOPS" of each pruned model: the computation left when the pruned (zero)
weights are skipped. Here, in the :mod:`nasforge.cost.counted` convention (2 FLOPs per multiply-add, convolutions
and linear layers only), each weight of a ``Conv2d`` takes part in ``H_out * W_out`` multiply-adds per image and
each weight of a ``Linear`` in one per row, so

* ``nonzero_flops = sum_conv 2 * nnz(W) * H_out * W_out + sum_linear 2 * nnz(W) * rows``

which equals ``FlopCounterMode``'s count for a dense network (padding positions are counted as the dense
convention counts them). Pruning masks applied with :mod:`torch.nn.utils.prune` are seen through the module's
effective ``weight`` (``weight_orig * weight_mask``). ``nonzero_params`` counts the non-zero elements of every
parameter tensor (the effective weights of pruned modules, not their ``weight_orig``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InvalidValue
from .counted import check_shape, eval_mode, make_input, on_device, resolve_device, run_checked

__all__ = ["effective_tensors", "nonzero_params", "nonzero_flops", "sparse_costs"]


def effective_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as the network uses it: ``weight`` (= ``weight_orig * weight_mask``) for pruned modules."""
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig") and hasattr(module, name[:-5] + "_mask"):
                name, p = name[:-5], p * getattr(module, name[:-5] + "_mask")
            out[f"{mod_name}.{name}" if mod_name else name] = p
    return out


def nonzero_params(model: nn.Module) -> int:
    """Non-zero parameter elements of ``model`` (through pruning masks)."""
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    return int(sum(int(torch.count_nonzero(t.detach())) for t in effective_tensors(model).values()))


def nonzero_flops(model: nn.Module, input_shape: Sequence[int], device: str | torch.device = "cpu") -> int:
    """FLOPs of one forward pass at batch 1 counting only non-zero weights (module docstring)."""
    shape = check_shape(input_shape)
    if not isinstance(model, nn.Module):
        raise InvalidValue("model", type(model).__name__, "a torch.nn.Module")
    dev = resolve_device(device)
    net = on_device(model, dev)
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nnz = int(torch.count_nonzero(module.weight.detach()))
        if isinstance(module, nn.Conv2d):
            total[0] += 2 * nnz * output.shape[0] * output.shape[-2] * output.shape[-1]
        else:
            total[0] += 2 * nnz * (output.numel() // output.shape[-1])

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with eval_mode(net), torch.no_grad():
            run_checked(net, make_input(net, shape, 1, dev))
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


def sparse_costs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """``params`` / ``nonzero_params`` / ``sparsity`` (of the prunable >= 2-D weights) / ``nonzero_flops``."""
    tensors = effective_tensors(model)
    total = sum(t.numel() for t in tensors.values())
    prunable = [t for t in tensors.values() if t.dim() >= 2]
    zeros = sum(int((t.detach() == 0).sum()) for t in prunable)
    return {"params": int(total), "nonzero_params": nonzero_params(model),
            "weight_sparsity": round(zeros / max(1, sum(t.numel() for t in prunable)), 6),
            "nonzero_flops": nonzero_flops(model, input_shape)}
