"""A .kvc file as a transformers DynamicCache, and greedy decoding from it.

Continuing from a compressed cache differs from continuing from an ordinary one in one way: the rotary
position of the next token is the header's `next_position`, not the cache length. Compression drops
entries, so a cache of 300 entries may continue at position 1200 (methods that keep keys rotated at their
original positions, e.g. snapkv), or at the cache length (key_rotation "compacted", e.g. finch, whose kept
keys were re-rotated to positions 0 .. len-1). So when decoding in transformers:

- position_ids of the next tokens start at `next_position` and grow by one per token;
- cache_position (where the new entries go in the cache) and the attention mask's length follow the cache
  length: cache_position = arange(cache_len, cache_len + n), attention_mask = ones(1, cache_len + n).

`model.generate(past_key_values=cache, ...)` derives position_ids from the cache length (or the attention
mask) and would rotate the query at the wrong positions; generate_greedy below is the manual loop with
explicit position_ids, and gives the tokens of the kvc server's greedy decoding (temperature 0, ties to the
lowest id).

    cache, next_position, header = load_cache(data)
    tokens = generate_greedy(model, cache, next_position, suffix_ids, 64, eos_token_id=tokenizer.eos_token_id)

torch and transformers are imported only when these functions are called.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .kvc_format import KvcHeader, read_kvc


def _torch_dtype(torch, dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"f32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "f16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype: unknown {dtype!r}")
    return names[dtype]


def load_cache(data, *, device="cpu", dtype=None, expected_fingerprint: str | None = None):
    """Parses a .kvc file into (transformers.DynamicCache, next_position, KvcHeader).

    Each layer's keys and values are tensors [1, kv_heads, len, head_dim] on `device`. `dtype` (a torch dtype
    or "f32"/"bf16"/"f16") defaults like the server's loader: float32 for f32 and int8 files (int8 is
    dequantized), the stored type for bf16 and f16. With `expected_fingerprint` (hex), a cache of another
    model is refused with ValueError.

    Raises KvcFormatError (a ValueError) for a malformed or corrupted file, and NotImplementedError for a
    valid file whose heads or layers hold different numbers of entries (head- or layer-adaptive budgets):
    a DynamicCache keeps one length per layer, and generate_greedy's attention mask assumes one length for
    all layers. kvc's Generate decodes such caches.
    """
    import torch
    from transformers import DynamicCache

    kf = read_kvc(data)
    h: KvcHeader = kf.header
    if expected_fingerprint is not None and expected_fingerprint.lower() != h.fingerprint:
        raise ValueError(f".kvc: the cache was made by model {h.fingerprint}, not {expected_fingerprint.lower()}")
    for layer, lengths in enumerate(h.lengths):
        if len(set(lengths)) != 1:
            raise NotImplementedError(f".kvc: layer {layer} holds heads of different lengths {lengths}; "
                                      "a DynamicCache needs one length per layer")
        if lengths[0] != h.lengths[0][0]:
            raise NotImplementedError(f".kvc: layer {layer} holds {lengths[0]} entries per head and layer 0 "
                                      f"{h.lengths[0][0]}; layers of different lengths are decoded by kvc's "
                                      "Generate, not in transformers")
    out_dtype = _torch_dtype(torch, dtype)
    if out_dtype is None:
        out_dtype = {"f32": torch.float32, "int8": torch.float32, "bf16": torch.bfloat16,
                     "f16": torch.float16}[h.dtype]
    cache = DynamicCache()
    for layer in range(h.num_layers):
        tensors = []
        for get in (kf.key, kf.value):
            stacked = np.stack([get(layer, head) for head in range(h.kv_heads)])  # float32 [H, len, D]
            tensors.append(torch.from_numpy(stacked).unsqueeze(0).to(device=device, dtype=out_dtype))
        cache.update(tensors[0], tensors[1], layer)
    return cache, h.next_position, h


def generate_greedy(model, cache, next_position: int, input_ids, max_new_tokens: int,
                    eos_token_id: int | Iterable[int] | None = None) -> list[int]:
    """Greedy decoding from a loaded cache, as the kvc server does it.

    Feeds `input_ids` (the suffix: query and generation prompt, a list of ids or a tensor) at positions
    next_position, next_position + 1, ..., then generates up to `max_new_tokens` tokens one at a time (argmax,
    ties to the lowest id), stopping after the first token in `eos_token_id`. Returns the generated ids,
    including the EOS that ended generation. `cache` is extended in place.
    """
    import torch

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if eos_token_id is None:
        eos = set()
    elif isinstance(eos_token_id, int):
        eos = {eos_token_id}
    else:
        eos = {int(e) for e in eos_token_id}
    device = next(model.parameters()).device
    step = torch.as_tensor(input_ids, dtype=torch.long, device=device).reshape(1, -1)
    if step.shape[1] == 0:
        raise ValueError("input_ids: empty")
    cache_len = cache.get_seq_length()
    position = int(next_position)
    out: list[int] = []
    with torch.no_grad():
        while len(out) < max_new_tokens:
            n = step.shape[1]
            logits = model(
                input_ids=step,
                past_key_values=cache,
                position_ids=torch.arange(position, position + n, device=device).unsqueeze(0),
                cache_position=torch.arange(cache_len, cache_len + n, device=device),
                attention_mask=torch.ones(1, cache_len + n, dtype=torch.long, device=device),
                use_cache=True,
            ).logits
            token = int(torch.argmax(logits[0, -1].float()))  # the first maximum: ties go to the lowest id
            out.append(token)
            position += n
            cache_len += n
            if token in eos:
                break
            step = torch.tensor([[token]], dtype=torch.long, device=device)
    return out
