"""KvcClient against an in-process fake server: requests as sent, streams as reassembled, checks as made."""
import hashlib
from concurrent import futures

import grpc
import pytest

from kvc_client import CacheIntegrityError, KvcClient
from kvc_client._stubs import (cache_pb2, cache_pb2_grpc, common_pb2, compressor_pb2, compressor_pb2_grpc,
                               generator_pb2, generator_pb2_grpc)

TOKEN = "s3cret"
CACHE_ID = "ab" * 32
VALUE = bytes(range(256)) * 41 + b"tail"  # 10,500 bytes


def authorized(context):
    md = dict(context.invocation_metadata())
    if md.get("authorization") != f"Bearer {TOKEN}":
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


class Fake(compressor_pb2_grpc.CompressorServicer, generator_pb2_grpc.GeneratorServicer,
           cache_pb2_grpc.CacheServiceServicer):
    def __init__(self):
        self.requests = []
        self.get_mode = "ok"

    def Compress(self, request, context):
        authorized(context)
        self.requests.append(request)
        if not request.documents and not request.document_cache_ids:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "documents: empty")
        return compressor_pb2.CompressResponse(
            cache_id=CACHE_ID, cache_hit=False,
            info=common_pb2.CacheInfo(cache_id=CACHE_ID, spec=request.spec, tokens_in=100, tokens_out=25))

    def Precompute(self, request, context):
        authorized(context)
        self.requests.append(request)
        return compressor_pb2.PrecomputeResponse(results=[
            compressor_pb2.PrecomputeResult(document_id=d.id, cache_id=f"{i:02x}" * 32, cache_hit=i == 0,
                                            info=common_pb2.CacheInfo(tokens_in=10, tokens_out=10))
            for i, d in enumerate(request.documents)])

    def GetModelInfo(self, request, context):
        authorized(context)
        return compressor_pb2.ModelInfo(name="SmolLM2-135M-Instruct", num_layers=30, eos_token_ids=[2],
                                        methods=[compressor_pb2.MethodInfo(name="finch", query_aware=True)])

    def Generate(self, request, context):
        authorized(context)
        self.requests.append(request)
        words = ["The ", "tower ", "", "is 34 ", "metres."]
        questions = request.questions.queries if request.HasField("questions") else [request.query]
        for q, question in enumerate(questions):
            # Question q's answer is the words of its own question, so that mixing answers would show.
            answer = words if q == 0 else question.split()
            for i, w in enumerate(answer):
                yield generator_pb2.GenerateResponse(
                    delta=generator_pb2.TextDelta(text=w, token_ids=[100 * (q + 1) + i], index=i, question=q))
            yield generator_pb2.GenerateResponse(usage=generator_pb2.Usage(
                cached_tokens=25, prompt_tokens=7, generated_tokens=len(answer),
                finish_reason=generator_pb2.FINISH_REASON_EOS, question=q))

    def Get(self, request, context):
        authorized(context)
        self.requests.append(request)
        if request.cache_id != CACHE_ID:
            context.abort(grpc.StatusCode.NOT_FOUND, f"cache {request.cache_id}: not found")
        value = VALUE
        sha = hashlib.sha256(value).digest()
        total = len(value)
        mode = self.get_mode
        if mode == "bad_sha":
            sha = hashlib.sha256(b"other").digest()
        if mode == "short":
            total += 1
        if mode == "flip":
            value = value[:5000] + bytes([value[5000] ^ 1]) + value[5001:]
        if mode != "no_header":
            yield cache_pb2.CacheChunk(header=cache_pb2.CacheHeader(
                cache_id=request.cache_id, total_bytes=total, sha256=sha,
                info=common_pb2.CacheInfo(cache_id=request.cache_id, bytes=total)))
        if mode == "two_headers":
            yield cache_pb2.CacheChunk(header=cache_pb2.CacheHeader(cache_id=request.cache_id))
        step = request.chunk_bytes if request.HasField("chunk_bytes") else 4096
        for i in range(0, len(value), step):
            yield cache_pb2.CacheChunk(data=value[i:i + step])
        if mode == "long":
            yield cache_pb2.CacheChunk(data=b"x")


@pytest.fixture(scope="module")
def server():
    fake = Fake()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    compressor_pb2_grpc.add_CompressorServicer_to_server(fake, srv)
    generator_pb2_grpc.add_GeneratorServicer_to_server(fake, srv)
    cache_pb2_grpc.add_CacheServiceServicer_to_server(fake, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield fake, f"127.0.0.1:{port}"
    srv.stop(None)


@pytest.fixture
def client(server):
    fake, target = server
    fake.requests.clear()
    fake.get_mode = "ok"
    with KvcClient(target, token=TOKEN, timeout=10) as c:
        yield fake, c


def test_compress_builds_the_request(client):
    fake, c = client
    resp = c.compress(["doc one", [1, 2, 3], {"text": "doc three", "id": "d3"}], "Who?", method="snapkv", ratio=4,
                      options={"window": 8, "pool": True}, cache_dtype="int8", cache_codec="zstd",
                      system_prompt="")
    assert resp.cache_id == CACHE_ID and resp.info.tokens_out == 25
    req = fake.requests[-1]
    assert [d.WhichOneof("content") for d in req.documents] == ["text", "token_ids", "text"]
    assert req.documents[0].text == "doc one" and not req.documents[0].HasField("id")
    assert list(req.documents[1].token_ids.ids) == [1, 2, 3]
    assert req.documents[2].id == "d3"
    assert req.WhichOneof("question") == "query" and req.query == "Who?"
    assert req.HasField("system_prompt") and req.system_prompt == ""
    assert not req.HasField("model")
    assert req.spec.method == "snapkv" and req.spec.WhichOneof("budget") == "ratio" and req.spec.ratio == 4.0
    assert dict(req.spec.options) == {"window": "8", "pool": "true"}
    assert req.cache_dtype == common_pb2.CACHE_DTYPE_INT8 and req.cache_codec == common_pb2.CACHE_CODEC_ZSTD


def test_compress_defaults_and_alternatives(client):
    fake, c = client
    c.compress(document_cache_ids=[CACHE_ID], suffix_ids=[5, 6], target_tokens=128)
    req = fake.requests[-1]
    assert req.spec.method == "focus" and req.spec.WhichOneof("budget") == "target_tokens"
    assert req.spec.target_tokens == 128
    assert req.WhichOneof("question") == "suffix_ids" and list(req.suffix_ids.ids) == [5, 6]
    assert not req.HasField("system_prompt")
    assert req.cache_dtype == common_pb2.CACHE_DTYPE_UNSPECIFIED
    assert list(req.document_cache_ids) == [CACHE_ID]
    with pytest.raises(ValueError, match="not both"):
        c.compress(["d"], "q", ratio=2, target_tokens=3)
    with pytest.raises(ValueError, match="not both"):
        c.compress(["d"], "q", suffix_ids=[1], ratio=2)
    with pytest.raises(ValueError, match="cache_dtype"):
        c.compress(["d"], "q", ratio=2, cache_dtype="int4")
    with pytest.raises(TypeError):
        c.compress([3.5], "q", ratio=2)


def test_precompute_builds_the_request(client):
    fake, c = client
    resp = c.precompute([{"text": "doc one", "id": "a"}, "doc two"], system_prompt="Be brief.")
    assert [r.cache_id for r in resp.results] == ["00" * 32, "01" * 32]
    assert resp.results[0].document_id == "a" and resp.results[0].cache_hit
    req = fake.requests[-1]
    assert req.mode == compressor_pb2.PRECOMPUTE_MODE_FULL and not req.HasField("spec")
    assert [d.text for d in req.documents] == ["doc one", "doc two"] and req.documents[0].id == "a"
    assert req.system_prompt == "Be brief." and not req.HasField("model")

    c.precompute(["doc"], mode="query_agnostic", method="knorm", ratio=4, cache_dtype="int8", model="m")
    req = fake.requests[-1]
    assert req.mode == compressor_pb2.PRECOMPUTE_MODE_QUERY_AGNOSTIC
    assert req.spec.method == "knorm" and req.spec.ratio == 4.0 and req.cache_dtype == common_pb2.CACHE_DTYPE_INT8
    assert req.model == "m" and not req.HasField("system_prompt")
    with pytest.raises(ValueError, match="mode"):
        c.precompute(["doc"], mode="partial")


def test_server_errors_are_rpc_errors(client):
    fake, c = client
    with pytest.raises(grpc.RpcError) as e:
        c.compress([], "q", ratio=2)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        c.get_cache("cd" * 32)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_bearer_token_is_sent(server):
    fake, target = server
    with KvcClient(target, token="wrong", timeout=10) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.model_info()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with KvcClient(target, timeout=10) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.model_info()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_model_info(client):
    _, c = client
    info = c.model_info()
    assert info.name == "SmolLM2-135M-Instruct" and list(info.eos_token_ids) == [2]
    assert info.methods[0].name == "finch"


def test_generate_streams_pieces_then_usage(client):
    fake, c = client
    gen = c.generate([CACHE_ID, "cd" * 32], "How tall?", max_tokens=16, top_p=0.9, stop=["\n\n"],
                     stop_on_eos=False)
    pieces = list(gen)
    assert pieces == ["The ", "tower ", "", "is 34 ", "metres."]
    assert gen.text == "The tower is 34 metres."
    assert gen.token_ids == [100, 101, 102, 103, 104]
    assert gen.usage.finish_reason == generator_pb2.FINISH_REASON_EOS and gen.usage.generated_tokens == 5
    req = fake.requests[-1]
    assert list(req.cache_ids) == [CACHE_ID, "cd" * 32]
    assert req.WhichOneof("prompt") == "query" and req.query == "How tall?"
    s = req.sampling
    assert s.temperature == 0 and s.max_tokens == 16 and s.HasField("top_p") and abs(s.top_p - 0.9) < 1e-12
    assert list(s.stop) == ["\n\n"] and s.HasField("stop_on_eos") and not s.stop_on_eos


def test_generate_text_and_defaults(client):
    fake, c = client
    r = c.generate_text(CACHE_ID, suffix_ids=[7, 8, 9], temperature=0.7, seed=42)
    assert r.text == "The tower is 34 metres." and r.token_ids == [100, 101, 102, 103, 104]
    assert r.usage.cached_tokens == 25
    req = fake.requests[-1]
    assert list(req.cache_ids) == [CACHE_ID]
    assert req.WhichOneof("prompt") == "suffix_ids" and list(req.suffix_ids.ids) == [7, 8, 9]
    s = req.sampling
    assert s.temperature == 0.7 and s.seed == 42
    assert not s.HasField("top_p") and not s.HasField("max_tokens") and not s.HasField("stop_on_eos")


def test_generate_many_tags_each_answer_with_its_question(client):
    fake, c = client
    gen = c.generate_many(CACHE_ID, ["How tall?", "Who built it", "When"], max_tokens=8)
    pieces = list(gen)
    assert [q for q, _ in pieces] == [0] * 5 + [1] * 3 + [2]
    results = gen.results
    assert [r.text for r in results] == ["The tower is 34 metres.", "Whobuiltit", "When"]
    assert results[1].token_ids == [200, 201, 202] and results[2].token_ids == [300]
    assert [r.usage.question for r in results] == [0, 1, 2] and results[1].usage.generated_tokens == 3
    req = fake.requests[-1]
    assert req.WhichOneof("prompt") == "questions" and list(req.questions.queries) == ["How tall?", "Who built it",
                                                                                       "When"]
    assert list(req.cache_ids) == [CACHE_ID] and req.sampling.max_tokens == 8
    assert [r.text for r in c.generate_answers([CACHE_ID], ["x", "y z"])] == ["The tower is 34 metres.", "yz"]
    with pytest.raises(TypeError):
        c.generate_many(CACHE_ID, "one question")


def test_get_cache_reassembles_and_verifies(client):
    fake, c = client
    assert c.get_cache(CACHE_ID) == VALUE
    value, header = c.fetch_cache(CACHE_ID, chunk_bytes=1000)
    assert value == VALUE and header.total_bytes == len(VALUE) and header.cache_id == CACHE_ID
    assert fake.requests[-1].chunk_bytes == 1000
    assert not fake.requests[-2].HasField("chunk_bytes")


@pytest.mark.parametrize("mode,message", [("bad_sha", "sha256 mismatch"), ("flip", "sha256 mismatch"),
                                          ("short", "received 10500 bytes, the header says 10501"),
                                          ("long", "more than the header"), ("no_header", "data before the header"),
                                          ("two_headers", "a second header")])
def test_get_cache_refuses_a_stream_that_does_not_add_up(client, mode, message):
    fake, c = client
    fake.get_mode = mode
    with pytest.raises(CacheIntegrityError, match=message):
        c.get_cache(CACHE_ID)
