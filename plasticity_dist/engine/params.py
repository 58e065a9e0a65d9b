"""Full parameters and Adam state of a DeepSpeed engine, read and written the same way under ZeRO 1, 2 and 3 and
without ZeRO (stage 0).

Under ZeRO the optimizer steps fp32 master partitions and copies them into the model's parameters after
each step. Writing only `param.data` is undone by the next step; writing only the master (what DeepSpeed's
`safe_set_full_fp32_param` does) leaves the forwards before that step on the old weights. `set_full`
writes both. At stage 0 (fp32 only, `launch.zero_stage`) every rank holds the whole model, each parameter is
its own master and the engine steps the torch AdamW itself. Every function here is collective: call it on every
rank, in the same order, with the same values. Optimizer state exists only after the first step; before it there
is nothing to reset.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from deepspeed.utils import (
    safe_get_full_fp32_param, safe_get_full_grad, safe_get_full_optimizer_state, safe_get_local_fp32_param,
    safe_get_local_optimizer_state, safe_set_full_fp32_param, safe_set_full_optimizer_state,
    safe_set_local_fp32_param, safe_set_local_optimizer_state,
)

ADAM_STATE_KEYS = ("exp_avg", "exp_avg_sq")


def is_zero3(param: torch.nn.Parameter) -> bool:
    return hasattr(param, "ds_id")


def is_own_master(param: torch.nn.Parameter) -> bool:
    """Whether `param` is stepped directly (stage 0): neither a ZeRO-3 partition nor mapped to a ZeRO 1/2 master."""
    return not is_zero3(param) and not hasattr(param, "_hp_mapping")


def torch_optimizer(engine: Any) -> torch.optim.Optimizer:
    """The torch AdamW an engine steps: inside DeepSpeed's ZeRO optimizer, or the engine's own at stage 0."""
    return engine.optimizer if engine.zero_optimization_stage() == 0 else engine.optimizer.optimizer


def get_full(param: torch.nn.Parameter) -> torch.Tensor:
    """The fp32 master value of `param`, whole, on every rank."""
    value = safe_get_full_fp32_param(param)
    return param.detach().float().clone() if value is None else value.reshape(_full_shape(param))


def set_full(param: torch.nn.Parameter, value: torch.Tensor) -> None:
    """Set `param` (its fp32 master and the copy forwards use) to `value`, given whole on every rank."""
    value = value.detach().to(torch.float32)
    if is_zero3(param):
        local = _local_slice(param, value, safe_get_local_fp32_param(param).numel())
        safe_set_local_fp32_param(param, local)
        param.ds_tensor.data[: local.numel()].copy_(local)
        if param.data.numel() == value.numel():  # kept whole: a persistent (small) or gathered parameter
            param.data.copy_(value.view(param.ds_shape))
        return
    safe_set_full_fp32_param(param, value)
    param.data.copy_(value.view_as(param))


def get_local(param: torch.nn.Parameter) -> torch.Tensor:
    """This rank's share of the fp32 master of `param`, flat, without communication (a view: clone it to keep
    it): its ZeRO-3 partition, under ZeRO 1/2 the fragment of `param` in its optimizer partition (maybe empty), at
    stage 0 the whole parameter (every rank holds it)."""
    if is_own_master(param):
        return param.detach().view(-1)
    if is_zero3(param):
        return safe_get_local_fp32_param(param)
    mapping = param._hp_mapping
    return torch.empty(0, device=param.device) if mapping is None else mapping.get_hp_fragment()


def full_from_local(param: torch.nn.Parameter, local: torch.Tensor) -> torch.Tensor:
    """The whole fp32 value whose shares, as `get_local` hands them out, are every rank's `local`."""
    if is_own_master(param):
        return local.view(param.shape)
    if is_zero3(param):
        group, partition = param.ds_process_group, param.ds_tensor.ds_numel
        flat = torch.zeros(partition * dist.get_world_size(group=group), device=param.ds_tensor.device)
        flat.narrow(0, partition * dist.get_rank(group=group), local.numel()).copy_(local)
        dist.all_reduce(flat, group=group)
        return flat[: param.ds_numel].view(param.ds_shape)
    group, flat = param._dp_group, torch.zeros(param.numel(), device=param.device)
    if param._hp_mapping is not None:
        address = param._hp_mapping.lp_fragment_address
        flat.narrow(0, address.start, address.numel).copy_(local)
    dist.all_reduce(flat, group=group)
    return flat.view(param.shape)


def full_grad(param: torch.nn.Parameter) -> torch.Tensor | None:
    """The whole reduced gradient of `param`; valid between the backward and the optimizer step."""
    grad = param.grad if is_own_master(param) else safe_get_full_grad(param)
    return None if grad is None else grad.reshape(_full_shape(param))


def has_optimizer_state(engine: Any) -> bool:
    """Whether Adam's moments exist yet: torch creates them at the first step."""
    return any(torch_optimizer(engine).state.values())


def clear_optimizer_state(engine: Any) -> None:
    """Forget Adam's moments and step counts: the next step starts them afresh, as a new optimizer's first does."""
    torch_optimizer(engine).state.clear()


def get_full_state(engine: Any, param: torch.nn.Parameter, key: str) -> torch.Tensor:
    """One optimizer state tensor of `param` (e.g. Adam's `exp_avg`) in `engine`'s optimizer, whole (a copy)."""
    if is_own_master(param):
        return _own_state(engine, param, key).clone()
    return _get_state(param, key).reshape(_full_shape(param))


def set_full_state(engine: Any, param: torch.nn.Parameter, key: str, value: torch.Tensor) -> None:
    value = value.detach().to(torch.float32)
    if is_own_master(param):
        _own_state(engine, param, key).copy_(value.view(param.shape))
    elif is_zero3(param):
        numel = safe_get_local_optimizer_state(param, key).numel()
        safe_set_local_optimizer_state(param, _local_slice(param, value, numel), key)
    else:
        safe_set_full_optimizer_state(param, value, key)


def _get_state(param: torch.nn.Parameter, key: str) -> torch.Tensor:
    value = safe_get_full_optimizer_state(param, key)
    if value is None:
        raise ValueError(f"no optimizer state {key!r}: the parameter is not managed by a ZeRO optimizer")
    return value


def _own_state(engine: Any, param: torch.nn.Parameter, key: str) -> torch.Tensor:
    state = torch_optimizer(engine).state.get(param, {})
    if key not in state:
        raise ValueError(f"no optimizer state {key!r}: the optimizer has not stepped this parameter yet")
    return state[key]


def _full_shape(param: torch.nn.Parameter) -> torch.Size:
    return param.ds_shape if is_zero3(param) else param.shape


def _local_slice(param: torch.nn.Parameter, value: torch.Tensor, numel: int) -> torch.Tensor:
    """This rank's ZeRO-3 partition of `value` (partitions are equal; the last one is zero-padded)."""
    partition = param.ds_tensor.ds_numel
    rank = dist.get_rank(group=param.ds_process_group)
    flat = value.flatten().to(param.ds_tensor.device)
    flat = F.pad(flat, (0, max(0, partition * (rank + 1) - flat.numel())))
    return flat.narrow(0, partition * rank, numel)
