#!/usr/bin/env python3
"""Writes a random-weight Llama as a Hugging Face directory that kvc loads, plus a prompt of token ids for
kvc-bench-compress: the MFU benchmark needs Llama-3-8B's shapes and FLOPs, not its weights, and no weights
can be fetched on the GPU host.

  bench/gpu/make_random_llama.py --out DIR [--shape llama3-8b|tiny] [--device cuda|cpu] [--tokens 32768]

DIR gets config.json (Llama-3-8B: hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab
128256, rope_theta 500000), model-NNNNN-of-NNNNN.safetensors shards with an index (about 16 GB in bfloat16
for llama3-8b), a byte-level tokenizer.json (kvc-bench-compress loads a tokenizer from the model path to
find word starts) and prompt.json: one line with context_ids, suffix_ids and protected_prefix as
`kvc-eval --tokenize-only` writes them, --tokens ids in all. Weights are drawn on --device one tensor at a
time and written one layer group per shard, so the host never holds more than a shard. "tiny" has the same
structure at toy sizes, to try the same path on a CPU.
"""
import argparse
import json
import pathlib
import time

import torch
from safetensors.torch import save_file

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      intermediate_size=14336, vocab_size=128256),
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=704, vocab_size=4096),
}
QUESTION = "\n\nQuestion: What does the report say about the water project?"


def config(shape: str, max_positions: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name_or_path": f"random-{shape}",
        **SHAPES[shape], "head_dim": SHAPES[shape]["hidden_size"] // SHAPES[shape]["num_attention_heads"],
        "max_position_embeddings": max_positions, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16",
    }


def layer_shapes(c: dict, i: int) -> dict:
    h, f, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    p = f"model.layers.{i}."
    return {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f)}


def tensor(shape: tuple, gen: torch.Generator, device: str) -> torch.Tensor:
    if len(shape) == 1:  # RMSNorm gains
        return torch.ones(shape, dtype=torch.bfloat16)
    # std 0.02 as in Llama's initializer keeps activations finite through 32 layers; values do not change time.
    w = torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(0.0, 0.02, generator=gen)
    return w.cpu()


def write_weights(out: pathlib.Path, c: dict, device: str, layers_per_shard: int, seed: int) -> int:
    gen = torch.Generator(device=device).manual_seed(seed)
    groups = [["model.embed_tokens.weight"]]
    groups += [list(range(i, min(i + layers_per_shard, c["num_hidden_layers"])))
               for i in range(0, c["num_hidden_layers"], layers_per_shard)]
    groups.append(["model.norm.weight", "lm_head.weight"])
    h, v = c["hidden_size"], c["vocab_size"]
    fixed = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    weight_map, total = {}, 0
    for n, group in enumerate(groups, 1):
        names = {}
        for g in group:
            names.update(layer_shapes(c, g) if isinstance(g, int) else {g: fixed[g]})
        tensors = {name: tensor(shape, gen, device) for name, shape in names.items()}
        fname = f"model-{n:05d}-of-{len(groups):05d}.safetensors"
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({name: fname for name in tensors})
        print(f"[random-llama] {fname}: {len(tensors)} tensors, {total / 1e9:.2f} GB so far", flush=True)
        del tensors
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return total


def write_tokenizer(out: pathlib.Path):
    """256 byte tokens and no merges: every id decodes, so kvc's word and sentence starts can be computed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(out / "tokenizer.json"))
    return tok


def write_prompt(out: pathlib.Path, tok, tokens: int, text_file: pathlib.Path):
    """English text (repeated to length) as byte tokens: the FLOPs depend only on the count."""
    text = text_file.read_text(encoding="utf-8")
    suffix = tok.encode(QUESTION).ids
    unit = tok.encode(text).ids
    need = tokens - len(suffix)
    context = (unit * (need // len(unit) + 1))[:need]
    rec = {"id": f"random-{tokens}", "family": "synthetic", "context_ids": context, "protected_prefix": 0,
           "suffix_ids": suffix}
    (out / "prompt.json").write_text(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the random numbers are drawn (cuda is much faster for 8B parameters)")
    ap.add_argument("--tokens", type=int, default=32768, help="length of prompt.json: context + question")
    ap.add_argument("--max-positions", type=int, default=65536, help="config's max_position_embeddings")
    ap.add_argument("--layers-per-shard", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text", default=str(pathlib.Path(__file__).resolve().parents[2] / "docs" / "samples" /
                                          "tessaly-valley-report.md"))
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    c = config(a.shape, a.max_positions)
    t0 = time.perf_counter()
    if not (out / "model.safetensors.index.json").exists():  # a rerun on a warm host keeps the 16 GB
        (out / "config.json").write_text(json.dumps(c, indent=1))
        total = write_weights(out, c, a.device, a.layers_per_shard, a.seed)
        print(f"[random-llama] {total / 1e9:.2f} GB of weights in {time.perf_counter() - t0:.0f} s", flush=True)
    tok = write_tokenizer(out)
    write_prompt(out, tok, a.tokens, pathlib.Path(a.text))
    print(f"[random-llama] {out}: config.json, shards, tokenizer.json, prompt.json ({a.tokens} tokens)")


if __name__ == "__main__":
    main()
