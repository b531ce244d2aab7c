"""KvcClient: the kvc gRPC API (docs/api.md) from Python.

    with KvcClient("localhost:50051", token="secret") as kvc:
        resp = kvc.compress(["document one ...", "document two ..."], "What ...?", method="focus", ratio=8)
        full = kvc.precompute(["document one ...", "document two ..."], mode="full")   # one cache per document
        for piece in (gen := kvc.generate([resp.cache_id], "What ...?", max_tokens=64)):
            print(piece, end="", flush=True)
        print(gen.usage.finish_reason)
        for answer in kvc.generate_answers([c.cache_id for c in full.results], ["Who ...?", "When ...?"]):
            print(answer.text)                     # several questions, the caches loaded once
        data = kvc.get_cache(resp.cache_id)       # the .kvc bytes, sha256 and length checked

Errors of the server come out as grpc.RpcError (its .code() is the status of docs/api.md); a Get stream that
does not add up (no header, a second header, wrong length or SHA-256) raises CacheIntegrityError.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable, Iterator, Mapping, Sequence

import grpc

from ._stubs import cache_pb2, cache_pb2_grpc, common_pb2, compressor_pb2, compressor_pb2_grpc, generator_pb2, \
    generator_pb2_grpc

DEFAULT_TIMEOUT = 300.0
# Get streams chunks of up to 1 MiB; a little headroom over the default 4 MiB limit for the other replies.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]

_DTYPES = {"f32": common_pb2.CACHE_DTYPE_F32, "bf16": common_pb2.CACHE_DTYPE_BF16,
           "f16": common_pb2.CACHE_DTYPE_F16, "int8": common_pb2.CACHE_DTYPE_INT8}
_CODECS = {"none": common_pb2.CACHE_CODEC_NONE, "zstd": common_pb2.CACHE_CODEC_ZSTD}
_MODES = {"full": compressor_pb2.PRECOMPUTE_MODE_FULL,
          "query_agnostic": compressor_pb2.PRECOMPUTE_MODE_QUERY_AGNOSTIC}


class CacheIntegrityError(ValueError):
    """A CacheService.Get stream whose bytes do not match its header."""


def _document(doc) -> common_pb2.Document:
    if isinstance(doc, common_pb2.Document):
        return doc
    if isinstance(doc, str):
        return common_pb2.Document(text=doc)
    if isinstance(doc, Mapping):
        unknown = set(doc) - {"text", "token_ids", "id"}
        if unknown or ("text" in doc) == ("token_ids" in doc):
            raise ValueError(f"document {dict(doc)!r}: needs exactly one of 'text' and 'token_ids' (and optional 'id')")
        out = common_pb2.Document(id=doc["id"]) if "id" in doc else common_pb2.Document()
        if "text" in doc:
            out.text = doc["text"]
        else:
            out.token_ids.ids.extend(int(i) for i in doc["token_ids"])
        return out
    if isinstance(doc, Sequence) and all(isinstance(i, int) for i in doc):
        return common_pb2.Document(token_ids=common_pb2.TokenIds(ids=list(doc)))
    raise TypeError(f"a document is a str, a list of token ids, a dict or a kvc.v1.Document, not {type(doc).__name__}")


def _enum(value, table: dict, field: str):
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value not in table:
        raise ValueError(f"{field}: {value!r} is not one of {sorted(table)}")
    return table[value]


def _spec(method: str, ratio: float | None, target_tokens: int | None,
          options: Mapping[str, object] | None) -> common_pb2.CompressionSpec:
    if ratio is not None and target_tokens is not None:
        raise ValueError("pass ratio or target_tokens, not both")
    spec = common_pb2.CompressionSpec(method=method)
    if ratio is not None:
        spec.ratio = float(ratio)
    if target_tokens is not None:
        spec.target_tokens = int(target_tokens)
    for name, value in (options or {}).items():
        spec.options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return spec


def _set_optional(request, **fields) -> None:
    """Sets the request's `optional` fields that were given; unset ones keep the server's default."""
    for name, value in fields.items():
        if value is not None:
            setattr(request, name, value)


@dataclasses.dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    usage: generator_pb2.Usage | None


class Generation:
    """The stream of one Generate call: iterating yields the text pieces (str) as they arrive.

    After the iteration, `usage` holds the final Usage (tokens, finish_reason, timings), `token_ids` every
    generated id and `text` the whole text. `cancel()` ends the call early.
    """

    def __init__(self, call):
        self._call = call
        self.usage: generator_pb2.Usage | None = None
        self.token_ids: list[int] = []
        self._pieces: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for event in self._call:
            kind = event.WhichOneof("event")
            if kind == "delta":
                self.token_ids.extend(event.delta.token_ids)
                self._pieces.append(event.delta.text)
                yield event.delta.text
            elif kind == "usage":
                self.usage = event.usage

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def cancel(self) -> None:
        self._call.cancel()

    def result(self) -> GenerationResult:
        for _ in self:
            pass
        return GenerationResult(self.text, list(self.token_ids), self.usage)


class Generations:
    """The stream of one Generate call with several questions: iterating yields (question index, text piece)
    as they arrive, question 0's first, then question 1's, and so on.

    After the iteration, `results` holds one GenerationResult per question, in order. `cancel()` ends the
    call early.
    """

    def __init__(self, call, questions: int):
        self._call = call
        self._pieces: list[list[str]] = [[] for _ in range(questions)]
        self._ids: list[list[int]] = [[] for _ in range(questions)]
        self._usage: list[generator_pb2.Usage | None] = [None] * questions

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for event in self._call:
            kind = event.WhichOneof("event")
            if kind == "delta":
                q = event.delta.question
                self._ids[q].extend(event.delta.token_ids)
                self._pieces[q].append(event.delta.text)
                yield q, event.delta.text
            elif kind == "usage":
                self._usage[event.usage.question] = event.usage

    @property
    def results(self) -> list[GenerationResult]:
        return [GenerationResult("".join(p), list(i), u) for p, i, u in zip(self._pieces, self._ids, self._usage)]

    def cancel(self) -> None:
        self._call.cancel()

    def result(self) -> list[GenerationResult]:
        for _ in self:
            pass
        return self.results


def _sampling(temperature: float, top_k: int, top_p: float | None, seed: int, max_tokens: int | None,
              stop: Sequence[str], stop_on_eos: bool | None) -> common_pb2.SamplingParams:
    sampling = common_pb2.SamplingParams(temperature=temperature, top_k=top_k, seed=seed, stop=list(stop))
    if top_p is not None:
        sampling.top_p = top_p
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    if stop_on_eos is not None:
        sampling.stop_on_eos = stop_on_eos
    return sampling


class KvcClient:
    """A client of one kvc server (or of a proxy in front of several roles).

    target: "host:port". token: sent as `authorization: Bearer <token>` on every call. root_certificates:
    PEM bytes; when given the channel uses TLS, otherwise it is plaintext. timeout: the default deadline of
    every call, in seconds (None: no deadline); each method takes its own `timeout=` too. channel: an
    existing grpc.Channel to use instead (target and root_certificates are then ignored).
    """

    def __init__(self, target: str, *, token: str | None = None, root_certificates: bytes | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, channel: grpc.Channel | None = None,
                 options: Sequence[tuple[str, object]] = ()):
        self._owns_channel = channel is None
        if channel is None:
            opts = _CHANNEL_OPTIONS + list(options)
            if root_certificates is not None:
                channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), opts)
            else:
                channel = grpc.insecure_channel(target, opts)
        self._channel = channel
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self.compressor = compressor_pb2_grpc.CompressorStub(channel)
        self.caches = cache_pb2_grpc.CacheServiceStub(channel)
        self.generator = generator_pb2_grpc.GeneratorStub(channel)

    _DEFAULT = object()

    def _call_args(self, timeout):
        return {"timeout": self._timeout if timeout is KvcClient._DEFAULT else timeout, "metadata": self._metadata}

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "KvcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Compressor

    def compress(self, documents: Iterable = (), query: str | None = None, *, method: str = "focus",
                 ratio: float | None = None, target_tokens: int | None = None,
                 options: Mapping[str, object] | None = None, cache_dtype: str | int | None = None,
                 cache_codec: str | int | None = None, system_prompt: str | None = None,
                 suffix_ids: Sequence[int] | None = None, document_cache_ids: Sequence[str] = (),
                 model: str | None = None, timeout=_DEFAULT) -> compressor_pb2.CompressResponse:
        """Compresses documents for one query; returns the CompressResponse (cache_id, info, cache_hit).

        documents: str, list of token ids, {"text"|"token_ids", "id"} or kvc.v1.Document, in order.
        The question is `query` (text) or `suffix_ids` (already tokenized), not both. The budget is `ratio`
        or `target_tokens` (neither for method "none"). options: method options; values are sent as text.
        cache_dtype: "f32", "bf16", "f16", "int8"; cache_codec: "none", "zstd" (unset: the server's default).
        """
        if query is not None and suffix_ids is not None:
            raise ValueError("pass query or suffix_ids, not both")
        req = compressor_pb2.CompressRequest(
            documents=[_document(d) for d in documents], spec=_spec(method, ratio, target_tokens, options),
            cache_dtype=_enum(cache_dtype, _DTYPES, "cache_dtype"),
            cache_codec=_enum(cache_codec, _CODECS, "cache_codec"),
            document_cache_ids=list(document_cache_ids))
        if query is not None:
            req.query = query
        if suffix_ids is not None:
            req.suffix_ids.ids.extend(int(i) for i in suffix_ids)
        _set_optional(req, system_prompt=system_prompt, model=model)
        return self.compressor.Compress(req, **self._call_args(timeout))

    def precompute(self, documents: Iterable, *, mode: str | int = "full", method: str | None = None,
                   ratio: float | None = None, target_tokens: int | None = None,
                   options: Mapping[str, object] | None = None, cache_dtype: str | int | None = None,
                   cache_codec: str | int | None = None, system_prompt: str | None = None,
                   model: str | None = None, timeout=_DEFAULT) -> compressor_pb2.PrecomputeResponse:
        """One cache per document, made with no query; returns the PrecomputeResponse (one result per document,
        in order: document_id, cache_id, info, cache_hit).

        mode "full" stores each document's whole KV, for compress(document_cache_ids=...) at query time;
        "query_agnostic" compresses each with a method that needs no query (method and a budget required).
        Documents are given as to compress(); a {"text", "id"} dict's id comes back as document_id.
        """
        req = compressor_pb2.PrecomputeRequest(
            documents=[_document(d) for d in documents], mode=_enum(mode, _MODES, "mode"),
            cache_dtype=_enum(cache_dtype, _DTYPES, "cache_dtype"),
            cache_codec=_enum(cache_codec, _CODECS, "cache_codec"))
        if method is not None or ratio is not None or target_tokens is not None or options:
            req.spec.CopyFrom(_spec(method or "", ratio, target_tokens, options))
        _set_optional(req, system_prompt=system_prompt, model=model)
        return self.compressor.Precompute(req, **self._call_args(timeout))

    def model_info(self, *, timeout=_DEFAULT) -> compressor_pb2.ModelInfo:
        return self.compressor.GetModelInfo(compressor_pb2.GetModelInfoRequest(), **self._call_args(timeout))

    # Generator

    def generate(self, cache_ids: str | Sequence[str], query: str | None = None, *,
                 suffix_ids: Sequence[int] | None = None, temperature: float = 0.0, top_k: int = 0,
                 top_p: float | None = None, seed: int = 0, max_tokens: int | None = None,
                 stop: Sequence[str] = (), stop_on_eos: bool | None = None, model: str | None = None,
                 timeout=_DEFAULT) -> Generation:
        """Starts decoding from one or more caches (composed in order); iterate the result for text pieces.

        The prompt is `query` (text: the server wraps it in the chat template) or `suffix_ids`, not both.
        Unset sampling fields take the server's defaults (temperature 0 is greedy).
        """
        if isinstance(cache_ids, str):
            cache_ids = [cache_ids]
        if query is not None and suffix_ids is not None:
            raise ValueError("pass query or suffix_ids, not both")
        sampling = _sampling(temperature, top_k, top_p, seed, max_tokens, stop, stop_on_eos)
        req = generator_pb2.GenerateRequest(cache_ids=list(cache_ids), sampling=sampling)
        if query is not None:
            req.query = query
        if suffix_ids is not None:
            req.suffix_ids.ids.extend(int(i) for i in suffix_ids)
        _set_optional(req, model=model)
        return Generation(self.generator.Generate(req, **self._call_args(timeout)))

    def generate_text(self, cache_ids: str | Sequence[str], query: str | None = None, **kwargs) -> GenerationResult:
        """generate() run to the end: the whole text, the token ids and the usage."""
        return self.generate(cache_ids, query, **kwargs).result()

    def generate_many(self, cache_ids: str | Sequence[str], questions: Sequence[str], *, temperature: float = 0.0,
                      top_k: int = 0, top_p: float | None = None, seed: int = 0, max_tokens: int | None = None,
                      stop: Sequence[str] = (), stop_on_eos: bool | None = None, model: str | None = None,
                      timeout=_DEFAULT) -> Generations:
        """Answers several questions from the same caches in one call: the server loads and composes them once
        and decodes each question as if it were alone. Iterate the result for (question index, text piece).

        The caches should be full or query-agnostic ones (Precompute): a cache compressed for one question
        keeps what that question needed.
        """
        if isinstance(cache_ids, str):
            cache_ids = [cache_ids]
        if isinstance(questions, str):
            raise TypeError("questions: a sequence of str, not one str (use generate for a single query)")
        req = generator_pb2.GenerateRequest(
            cache_ids=list(cache_ids), questions=generator_pb2.Questions(queries=list(questions)),
            sampling=_sampling(temperature, top_k, top_p, seed, max_tokens, stop, stop_on_eos))
        _set_optional(req, model=model)
        return Generations(self.generator.Generate(req, **self._call_args(timeout)), len(questions))

    def generate_answers(self, cache_ids: str | Sequence[str], questions: Sequence[str],
                         **kwargs) -> list[GenerationResult]:
        """generate_many() run to the end: one GenerationResult per question, in order."""
        return self.generate_many(cache_ids, questions, **kwargs).result()

    # CacheService

    def fetch_cache(self, cache_id: str, *, chunk_bytes: int | None = None,
                    timeout=_DEFAULT) -> tuple[bytes, cache_pb2.CacheHeader]:
        """The stored value and its header, reassembled from the Get stream and checked against the header's
        total_bytes and sha256 (CacheIntegrityError otherwise)."""
        req = cache_pb2.GetCacheRequest(cache_id=cache_id)
        if chunk_bytes is not None:
            req.chunk_bytes = chunk_bytes
        header, parts, received = None, [], 0
        for chunk in self.caches.Get(req, **self._call_args(timeout)):
            kind = chunk.WhichOneof("chunk")
            if kind == "header":
                if header is not None:
                    raise CacheIntegrityError(f"cache {cache_id}: a second header in the Get stream")
                header = chunk.header
            elif kind == "data":
                if header is None:
                    raise CacheIntegrityError(f"cache {cache_id}: data before the header in the Get stream")
                received += len(chunk.data)
                if received > header.total_bytes:
                    raise CacheIntegrityError(f"cache {cache_id}: more than the header's {header.total_bytes} bytes")
                parts.append(chunk.data)
        if header is None:
            raise CacheIntegrityError(f"cache {cache_id}: the Get stream has no header")
        value = b"".join(parts)
        if len(value) != header.total_bytes:
            raise CacheIntegrityError(f"cache {cache_id}: received {len(value)} bytes, the header says "
                                      f"{header.total_bytes}")
        if hashlib.sha256(value).digest() != header.sha256:
            raise CacheIntegrityError(f"cache {cache_id}: sha256 mismatch: received "
                                      f"{hashlib.sha256(value).hexdigest()}, "
                                      f"the header says {header.sha256.hex()}")
        return value, header

    def get_cache(self, cache_id: str, **kwargs) -> bytes:
        """The stored .kvc bytes of a cache (see fetch_cache); load them with kvc_client.load_cache."""
        return self.fetch_cache(cache_id, **kwargs)[0]

    def stat_cache(self, cache_id: str, *, include_info: bool = False,
                   timeout=_DEFAULT) -> cache_pb2.StatCacheResponse:
        return self.caches.Stat(cache_pb2.StatCacheRequest(cache_id=cache_id, include_info=include_info),
                                **self._call_args(timeout))

    def delete_cache(self, cache_id: str, *, timeout=_DEFAULT) -> None:
        self.caches.Delete(cache_pb2.DeleteCacheRequest(cache_id=cache_id), **self._call_args(timeout))
