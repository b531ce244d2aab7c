#!/usr/bin/env python3
"""Writes the tiny-model fixtures that kvc's unit tests compare against.

Every model is random, small, and saved the way a user's model would be (config.json + safetensors), with a
reference.safetensors holding what transformers computes for it:
  input_ids [512] int64, logits [512, vocab] float32 (full prefill),
  greedy_prompt [16] int64, greedy_tokens [32] int64 (argmax decoding, no stop token).

Also written: tiny_chat/ (a tiny Llama with a byte-level BPE tokenizer trained on fixed English text, ChatML
special tokens and SmolLM2's chat template, for the service tests), tiny_llama.gguf (the tiny Llama in GGUF form, Q/K permuted as llama.cpp's converter does),
quants.gguf (each ggml quant type next to gguf-py's own dequantization of it), and bad/ (files that must be
refused cleanly).
"""
import argparse
import json
import pathlib
import shutil

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 512
SEQ = 512


def randomize(model, seed):
    # transformers' default init (std 0.02) gives near-uniform logits; larger weights make the test sharper.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def reference(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, VOCAB, (SEQ,), generator=g)
    with torch.no_grad():
        logits = model(ids[None]).logits[0].float()
        prompt = ids[:16]
        out = model(prompt[None], use_cache=True)
        past, tokens = out.past_key_values, []
        nxt = out.logits[0, -1].argmax()
        for _ in range(32):
            tokens.append(int(nxt))
            out = model(nxt.view(1, 1), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[0, -1].argmax()
    return {
        "input_ids": ids.contiguous(),
        "logits": logits.contiguous(),
        "greedy_prompt": prompt.clone(),
        "greedy_tokens": torch.tensor(tokens, dtype=torch.int64),
    }


def make_model(out, name, cls, config, seed, shard=None):
    torch.manual_seed(seed)
    model = cls(config).eval()
    randomize(model, seed)
    d = out / name
    model.save_pretrained(d, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    save_file(reference(model, seed), d / "reference.safetensors")
    return model


def llama_cfg(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rms_norm_eps=1e-5, tie_word_embeddings=False, attn_implementation="eager")
    base.update(kw)
    return LlamaConfig(**base)


# SmolLM2-135M-Instruct's chat template, verbatim, so that chat-format detection sees ChatML.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHAT_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
CHAT_VOCAB = 1024

CHAT_SENTENCES = [
    "Answer the question using only the context. Reply with the answer only.",
    "Context:", "Question: What is the capital of France?", "The capital of France is Paris.",
    "The report was written by the finance team in March and reviewed by the board in April.",
    "Our cache stores compressed keys and values so that a generator can answer without reading the documents.",
    "A retriever finds the documents that are most likely to hold the answer to a question.",
    "The river flows through the old town, past the market, the library and the railway station.",
    "She planted tomatoes, beans and sunflowers in the garden behind the house.",
    "The meeting starts at nine o'clock on Monday morning in the second floor conference room.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The museum opened in 1891 and holds more than 20,000 paintings, maps and letters.",
    "He asked who wrote the letter, when it was sent, and why it never arrived.",
    "Every document is split into chunks, and each chunk is scored against the query.",
    "The quick brown fox jumps over the lazy dog.",
]


def chat_corpus(seed):
    # Deterministic text: the sentences, then seeded shuffles of their words.
    rng = np.random.default_rng(seed)
    lines = list(CHAT_SENTENCES)
    words = " ".join(CHAT_SENTENCES).split()
    for _ in range(400):
        lines.append(" ".join(rng.choice(words, size=int(rng.integers(5, 20)))))
    return lines


def write_tiny_chat(out, seed=6):
    d = out / "tiny_chat"
    d.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=CHAT_VOCAB, special_tokens=CHAT_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(chat_corpus(seed), trainer=trainer)
    for i, s in enumerate(CHAT_SPECIAL):
        assert tok.token_to_id(s) == i, s
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>", "chat_template": SMOLLM2_CHAT_TEMPLATE,
        "model_max_length": 4096, "tokenizer_class": "GPT2Tokenizer"}, indent=2))
    config = llama_cfg(vocab_size=tok.get_vocab_size(), max_position_embeddings=4096, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    randomize(model, seed)
    model.save_pretrained(d, safe_serialization=True)
    # The name the server reports and requests may name.
    cfg = json.loads((d / "config.json").read_text())
    cfg["_name_or_path"] = "tiny-chat"
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


def permute(w, n_head):
    # llama.cpp's convert_hf_to_gguf permutation of Q/K rows.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, path, arch="llama", override_type=None):
    cfg = model.config
    w = GGUFWriter(str(path), arch)
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight",
                 "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
                 "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    for k, v in sd.items():
        if k in names:
            gname = names[k]
        else:
            parts = k.split(".")
            gname = f"blk.{parts[2]}." + per_layer[".".join(parts[3:])]
            if k.endswith("q_proj.weight"):
                v = permute(v, cfg.num_attention_heads)
            elif k.endswith("k_proj.weight"):
                v = permute(v, cfg.num_key_value_heads)
        if override_type is not None and gname == "blk.0.attn_q.weight":
            raw = quants.quantize(v, override_type) if override_type in (Q.Q8_0,) else None
            if raw is None:
                blk, size = quants.GGML_QUANT_SIZES[override_type]
                raw = np.random.default_rng(0).integers(0, 256, (v.shape[0], v.shape[1] // blk * size), np.uint8)
            w.add_tensor(gname, raw, raw_dtype=override_type)
        else:
            w.add_tensor(gname, np.ascontiguousarray(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Byte offsets and kinds of the scale fields of the k-quants, patched to sane values in random blocks so that
# the reference has no inf/NaN.
K_SCALE_FIELDS = {Q.Q2_K: [(80, "f16"), (82, "f16")], Q.Q3_K: [(108, "f16")], Q.Q4_K: [(0, "f16"), (2, "f16")],
                  Q.Q5_K: [(0, "f16"), (2, "f16")], Q.Q6_K: [(208, "f16")], Q.Q8_K: [(0, "f32")]}


def write_quants(path):
    rng = np.random.default_rng(1234)
    w = GGUFWriter(str(path), "kvc-quant-test")
    for qt in [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K,
               Q.Q5_K, Q.Q6_K]:
        data = rng.standard_normal((8, 512)).astype(np.float32)
        blk, size = quants.GGML_QUANT_SIZES[qt]
        try:
            raw = quants.quantize(data, qt)
        except (NotImplementedError, quants.QuantError):
            raw = rng.integers(0, 256, (8, 512 // blk * size), dtype=np.uint8)
            blocks = raw.reshape(-1, size)
            for off, kind in K_SCALE_FIELDS[qt]:
                if kind == "f16":
                    vals = rng.uniform(0.001, 0.1, blocks.shape[0]).astype(np.float16)
                    blocks[:, off:off + 2] = vals.view(np.uint8).reshape(-1, 2)
                else:
                    vals = rng.uniform(0.001, 0.1, blocks.shape[0]).astype(np.float32)
                    blocks[:, off:off + 4] = vals.view(np.uint8).reshape(-1, 4)
        ref = quants.dequantize(raw, qt).astype(np.float32)
        assert np.isfinite(ref).all(), qt.name
        if qt == Q.F32:
            w.add_tensor(f"q.{qt.name}", raw)
        else:
            w.add_tensor(f"q.{qt.name}", raw, raw_dtype=qt)
        w.add_tensor(f"ref.{qt.name}", np.ascontiguousarray(ref))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_bad(out, llama):
    bad = out / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(bad / "unsupported_arch.gguf"), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    write_llama_gguf(llama, bad / "unsupported_quant.gguf", override_type=Q.IQ4_NL)
    hf = bad / "unsupported_hf"
    hf.mkdir(exist_ok=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "vocab_size": 512}))
    save_file({"wte.weight": torch.zeros(4, 4)}, hf / "model.safetensors")
    mismatched = bad / "shape_mismatch"
    shutil.copytree(out / "tiny_qwen2", mismatched, dirs_exist_ok=True)
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["intermediate_size"] = cfg["intermediate_size"] * 2
    (mismatched / "config.json").write_text(json.dumps(cfg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    llama = make_model(out, "tiny_llama", LlamaForCausalLM, llama_cfg(), 1, shard="100KB")
    make_model(out, "tiny_qwen2", Qwen2ForCausalLM,
               Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="eager",
                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}), 2)
    make_model(out, "tiny_llama3", LlamaForCausalLM,
               llama_cfg(num_attention_heads=2, num_key_value_heads=1,
                         rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                                          "rope_theta": 500000.0}), 3)
    make_model(out, "tiny_yarn", LlamaForCausalLM,
               llama_cfg(num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "yarn", "factor": 4.0,
                                          "original_max_position_embeddings": 128, "rope_theta": 10000.0}), 4)
    make_model(out, "tiny_linear", LlamaForCausalLM,
               llama_cfg(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}), 5)
    write_tiny_chat(out)
    write_llama_gguf(llama, out / "tiny_llama.gguf")
    shutil.copy(out / "tiny_llama" / "reference.safetensors", out / "tiny_llama_gguf_reference.safetensors")
    write_quants(out / "quants.gguf")
    write_bad(out, llama)
    (out / "fixtures.ok").write_text("ok\n")


if __name__ == "__main__":
    main()
