"""A CPU stand-in for DeepSpeed ZeRO-3's parameter partitioning, for the fingerprint tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def partitioned_lm_head(model: Any) -> Iterator[torch.nn.Parameter]:
    """Make the LM head's weight an empty shard everywhere but inside its modules' forwards.

    As under ZeRO-3, a forward pre-hook puts the full tensor back before each forward of a module
    that owns the weight (the head, and the input embeddings when they are tied to it) and a
    forward hook empties it again after. Enter it before any hook of the code under test is
    registered, as DeepSpeed registers its hooks when the engine starts.

    Yields:
        The head's weight (empty while no owning module runs).
    """
    weight = model.get_output_embeddings().weight
    full = weight.data
    owners = [m for m in model.modules() if any(p is weight for p in m.parameters(recurse=False))]

    def gather(module: torch.nn.Module, args: Any) -> None:
        weight.data = full

    def release(module: torch.nn.Module, args: Any, output: Any) -> None:
        weight.data = full.new_empty(0)

    handles = [m.register_forward_pre_hook(gather) for m in owners]
    handles += [m.register_forward_hook(release) for m in owners]
    weight.data = full.new_empty(0)
    try:
        yield weight
    finally:
        for handle in handles:
            handle.remove()
        weight.data = full
