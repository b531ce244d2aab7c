#!/usr/bin/env python3
"""Reference for decoding from a ragged KV cache: heads and layers that keep different entries.

transformers prefills N context tokens; then, for every (layer, KV head), a seeded random subset of the
context's entries is hidden (each head keeps its own number of entries, and layers keep different totals),
and a continuation chunk plus greedy decoding run on top with an eager attention that applies exactly those
masks: a query of KV group h sees the context keys that (layer, h) keeps, and every continuation key up to
itself. kvc must reproduce the logits from the same entries, whether it holds them compacted per head or in
place with holes.

Writes a safetensors file:
  context_ids [N], keep_<layer> [kv_heads, N] bool, continuation_ids [M],
  continuation_logits [M, vocab] float32, greedy_tokens [G] int64 (argmax after the continuation).

  make_ragged_reference.py --model build/testdata/tiny_llama --out ragged.safetensors
  make_ragged_reference.py --model .../SmolLM2-135M-Instruct.Q4_1.gguf --out ragged_smollm2.safetensors
"""
import argparse
import pathlib

import torch
from safetensors.torch import save_file
from transformers import AttentionInterface, AutoModelForCausalLM


def load(path):
    p = pathlib.Path(path)
    if p.suffix == ".gguf":
        return AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32,
                                                    attn_implementation="eager").eval()
    return AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32, attn_implementation="eager").eval()


def keep_masks(layers, kv_heads, n, seed):
    """Per layer [kv_heads, n]: head h of layer l keeps a random subset whose size varies by head and layer."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for layer in range(layers):
        m = torch.zeros(kv_heads, n, dtype=torch.bool)
        for h in range(kv_heads):
            share = 0.15 + 0.7 * float(torch.rand((), generator=g))  # 15%..85% of the context
            count = max(1, int(share * n))
            m[h, torch.randperm(n, generator=g)[:count]] = True
        masks.append(m)
    return masks


def masked_attention_for(keep, context_len):
    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        # query [1, H, q, D]; key/value [1, Hkv, k, D] (the whole cache plus the new tokens).
        groups = query.shape[1] // key.shape[1]
        k = key.repeat_interleave(groups, dim=1)
        v = value.repeat_interleave(groups, dim=1)
        q_len, k_len = query.shape[2], key.shape[2]
        scores = torch.matmul(query, k.transpose(2, 3)) * scaling  # [1, H, q, k]
        past = k_len - q_len
        visible = torch.arange(k_len)[None, :] <= (past + torch.arange(q_len))[:, None]  # [q, k]
        visible = visible[None].repeat(query.shape[1], 1, 1)  # [H, q, k]
        kept = keep[module.layer_idx].repeat_interleave(groups, dim=0)  # [H, context_len]
        visible[:, :, :context_len] &= kept[:, None, :]
        scores = scores.masked_fill(~visible[None], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        return torch.matmul(weights, v).transpose(1, 2).contiguous(), weights

    return attention


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="HF model dir or .gguf")
    ap.add_argument("--out", required=True)
    ap.add_argument("--context-tokens", type=int, default=300)
    ap.add_argument("--continuation-tokens", type=int, default=6)
    ap.add_argument("--greedy-tokens", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load(args.model)
    cfg = model.config
    n, m = args.context_tokens, args.continuation_tokens
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, cfg.vocab_size, (n + m,), generator=g)
    keep = keep_masks(cfg.num_hidden_layers, cfg.num_key_value_heads, n, args.seed + 1)

    AttentionInterface.register("kvc_ragged_reference", masked_attention_for(keep, n))
    with torch.no_grad():
        past = model(ids[None, :n], use_cache=True).past_key_values
        model.set_attn_implementation("kvc_ragged_reference")
        out = model(ids[None, n:], past_key_values=past, use_cache=True)
        logits = out.logits[0].float()
        past, nxt, greedy = out.past_key_values, out.logits[0, -1].argmax(), []
        for _ in range(args.greedy_tokens):
            greedy.append(int(nxt))
            out = model(nxt.view(1, 1), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[0, -1].argmax()

    tensors = {
        "context_ids": ids[:n].contiguous(),
        "continuation_ids": ids[n:].contiguous(),
        "continuation_logits": logits.contiguous(),
        "greedy_tokens": torch.tensor(greedy, dtype=torch.int64),
    }
    for layer, mask in enumerate(keep):
        tensors[f"keep_{layer}"] = mask.contiguous()
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, args.out)
    kept = [int(mk.sum()) for mk in keep]
    print(f"ragged reference: {n} context tokens, kept per layer {kept}, {m} continuation, {len(greedy)} greedy")


if __name__ == "__main__":
    main()
