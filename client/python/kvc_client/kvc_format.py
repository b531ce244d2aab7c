"""A reader of the .kvc file format, version 1 (docs/kvc-format.md), with numpy only.

    kf = read_kvc(data)
    kf.header.next_position, kf.header.lengths[layer][head]
    kf.positions[layer][head]      # int32 [len]
    kf.key(layer, head)            # float32 [len, head_dim], int8 dequantized
    kf.keys[layer][head]           # as stored: float32, float16, bf16 widened to float32, or int8

The checks follow the format's "What a reader checks" in order: magic, header size, header checksum, every
field's range, the metadata JSON, the section table (order, alignment, bounds, sizes), trailing bytes, then
the xxhash64 of every section and, for zstd, each frame's content size. Every failure raises KvcFormatError,
a ValueError whose `code` is the status the C++ reader would return: "INVALID_ARGUMENT" (not a .kvc file,
an unsupported version, an inconsistent header), "DATA_LOSS" (truncation, checksum mismatch, a bad zstd
frame) or "RESOURCE_EXHAUSTED" (the file decodes to more than max_decoded_bytes).
"""
from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import numpy as np

MAGIC = b"KVC1"
VERSION_MAJOR = 1
PREAMBLE_BYTES = 8
FIXED_BYTES = 88  # offsets 8 .. 96: the fixed header fields
SECTION_ENTRY_BYTES = 40
ALIGNMENT = 64
MAX_LAYERS = 1024
MAX_KV_HEADS = 1024
MAX_HEAD_DIM = 4096
MAX_LENGTH = 1 << 31
DEFAULT_MAX_DECODED_BYTES = 1 << 36

DTYPES = ("f32", "bf16", "f16", "int8")
CODECS = ("none", "zstd")
_DTYPE_SIZE = {"f32": 4, "bf16": 2, "f16": 2, "int8": 1}
_SECTION_KINDS = ("positions", "keys", "values")


class KvcFormatError(ValueError):
    """A malformed, truncated or corrupted .kvc file. `code` names the status (see the module doc)."""

    def __init__(self, code: str, message: str):
        super().__init__(f".kvc: {message}")
        self.code = code


def _invalid(message: str) -> KvcFormatError:
    return KvcFormatError("INVALID_ARGUMENT", message)


def _lost(message: str) -> KvcFormatError:
    return KvcFormatError("DATA_LOSS", message)


def _xxh64(data) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(data, seed=0)


@dataclasses.dataclass
class KvcHeader:
    version_major: int
    version_minor: int
    num_layers: int
    kv_heads: int
    head_dim: int
    dtype: str  # "f32", "bf16", "f16", "int8"
    codec: str  # "none", "zstd"
    keys_compacted: bool  # key j of a (layer, head) is rotated at position j
    tokens_in: int
    tokens_out: int
    next_position: int
    fingerprint: str  # 64 lowercase hex characters
    metadata: dict[str, Any]
    lengths: list[list[int]]  # [layer][head]

    def length(self, layer: int, head: int) -> int:
        return self.lengths[layer][head]

    def layer_entries(self, layer: int) -> int:
        return sum(self.lengths[layer])


@dataclasses.dataclass
class KvcSection:
    kind: int
    layer: int
    offset: int
    stored: int
    raw: int
    hash: int

    @property
    def name(self) -> str:
        kind = _SECTION_KINDS[self.kind] if self.kind < 3 else f"kind {self.kind}"
        return "positions" if self.kind == 0 else f"{kind} {self.layer}"


@dataclasses.dataclass
class KvcFile:
    """A parsed .kvc file. Arrays are per (layer, head), in cache order; they do not alias the input bytes."""

    header: KvcHeader
    positions: list[list[np.ndarray]]  # int32 [len]
    keys: list[list[np.ndarray]]  # [len, head_dim] as stored (bf16 widened to float32)
    values: list[list[np.ndarray]]
    key_scales: list[np.ndarray] | None  # int8 only: float32 [kv_heads, head_dim] per layer
    value_scales: list[list[np.ndarray]] | None  # int8 only: float32 [len] per (layer, head)

    def key(self, layer: int, head: int) -> np.ndarray:
        """float32 [len, head_dim]; int8 dequantized with the per-(head, channel) scales."""
        k = self.keys[layer][head]
        if self.header.dtype == "int8":
            return k.astype(np.float32) * self.key_scales[layer][head][None, :]
        return k.astype(np.float32, copy=False)

    def value(self, layer: int, head: int) -> np.ndarray:
        """float32 [len, head_dim]; int8 dequantized with the per-(head, token) scales."""
        v = self.values[layer][head]
        if self.header.dtype == "int8":
            return v.astype(np.float32) * self.value_scales[layer][head][:, None]
        return v.astype(np.float32, copy=False)


def _geometry(json_bytes: int, num_lengths: int, num_sections: int) -> tuple[int, int, int, int]:
    """(json_offset, lengths_offset, table_offset, header_end) of a header with these counts."""
    json_offset = PREAMBLE_BYTES + FIXED_BYTES
    lengths_offset = (json_offset + json_bytes + 7) // 8 * 8
    table_offset = (lengths_offset + 4 * num_lengths + 7) // 8 * 8
    end = table_offset + SECTION_ENTRY_BYTES * num_sections + 8
    return json_offset, lengths_offset, table_offset, end


def read_header(data: bytes | bytearray | memoryview) -> tuple[KvcHeader, list[KvcSection]]:
    """Parses and checks the header block (steps 1-5); the section table is not yet checked against the file."""
    buf = memoryview(data).cast("B")
    size = len(buf)
    if size < 4 or bytes(buf[:4]) != MAGIC:
        if size < 4 and MAGIC.startswith(bytes(buf[:size])):
            raise _lost(f"truncated at {size} bytes")
        raise _invalid("not a .kvc file (bad magic)")
    if size < PREAMBLE_BYTES + FIXED_BYTES:
        raise _lost(f"truncated header: the file has {size} bytes")
    (header_bytes,) = struct.unpack_from("<I", buf, 4)
    header_end = PREAMBLE_BYTES + header_bytes
    if header_end > size:
        raise _lost(f"truncated header: it ends at byte {header_end} but the file has {size}")
    if header_end < PREAMBLE_BYTES + FIXED_BYTES + 8:
        raise _invalid(f"header of {header_end} bytes is too short")
    (stored_hash,) = struct.unpack_from("<Q", buf, header_end - 8)
    if _xxh64(buf[: header_end - 8]) != stored_hash:
        raise _lost("header checksum mismatch")

    (major, minor, layers, heads, head_dim, dtype, codec, rotation, reserved8, json_bytes, tokens_in, tokens_out,
     next_position) = struct.unpack_from("<HHIIIBBBBIQQq", buf, 8)
    if major != VERSION_MAJOR:
        raise _invalid(f"unsupported version {major}.{minor} (this reader reads {VERSION_MAJOR}.x)")
    if not 1 <= layers <= MAX_LAYERS:
        raise _invalid(f"num_layers {layers} out of range")
    if not 1 <= heads <= MAX_KV_HEADS:
        raise _invalid(f"kv_heads {heads} out of range")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise _invalid(f"head_dim {head_dim} out of range")
    if dtype >= len(DTYPES):
        raise _invalid(f"unknown dtype {dtype}")
    if codec >= len(CODECS):
        raise _invalid(f"unknown codec {codec}")
    if rotation > 1:
        raise _invalid(f"unknown key rotation {rotation}")
    num_sections, reserved32 = struct.unpack_from("<II", buf, 88)
    if reserved8 != 0 or reserved32 != 0:
        raise _invalid("reserved header bytes are not zero")
    if next_position < 0:
        raise _invalid("negative next_position")
    fingerprint = bytes(buf[56:88]).hex()
    if num_sections != 1 + 2 * layers:
        raise _invalid(f"{num_sections} sections, expected {1 + 2 * layers}")
    num_lengths = layers * heads
    json_offset, lengths_offset, table_offset, end = _geometry(json_bytes, num_lengths, num_sections)
    if end != header_end:
        raise _invalid(f"header is {header_end} bytes but its fields describe {end}")
    try:
        metadata = json.loads(bytes(buf[json_offset:json_offset + json_bytes]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        metadata = None
    if not isinstance(metadata, dict):
        raise _invalid("metadata is not a JSON object")
    flat = struct.unpack_from(f"<{num_lengths}I", buf, lengths_offset)
    for n in flat:
        if n > MAX_LENGTH:
            raise _invalid(f"length {n} out of range")
    lengths = [list(flat[l * heads:(l + 1) * heads]) for l in range(layers)]
    sections = [KvcSection(*struct.unpack_from("<IIQQQQ", buf, table_offset + SECTION_ENTRY_BYTES * i))
                for i in range(num_sections)]
    header = KvcHeader(major, minor, layers, heads, head_dim, DTYPES[dtype], CODECS[codec], rotation == 1, tokens_in,
                       tokens_out, next_position, fingerprint, metadata, lengths)
    return header, sections


def _expected_raw(h: KvcHeader, i: int) -> int:
    if i == 0:
        return 4 * sum(h.layer_entries(l) for l in range(h.num_layers))
    layer, keys = (i - 1) // 2, (i - 1) % 2 == 0
    n = h.layer_entries(layer)
    scales = 0
    if h.dtype == "int8":
        scales = h.kv_heads * h.head_dim if keys else n
    return n * h.head_dim * _DTYPE_SIZE[h.dtype] + 4 * scales


def _elements(raw: bytes, dtype: str, count: int, offset: int = 0) -> np.ndarray:
    if dtype == "f32":
        return np.frombuffer(raw, dtype="<f4", count=count, offset=offset).astype(np.float32)
    if dtype == "f16":
        return np.frombuffer(raw, dtype="<f2", count=count, offset=offset).astype(np.float16)
    if dtype == "bf16":  # bf16 is the upper half of a float32: widening is exact
        bits = np.frombuffer(raw, dtype="<u2", count=count, offset=offset).astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw, dtype=np.int8, count=count, offset=offset).copy()


def read_kvc(data: bytes | bytearray | memoryview, *, verify_checksums: bool = True,
             max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> KvcFile:
    """Parses a whole .kvc v1 file; raises KvcFormatError (a ValueError) on anything malformed."""
    buf = memoryview(data).cast("B")
    size = len(buf)
    h, sections = read_header(buf)

    decoded_total = 0
    (header_bytes,) = struct.unpack_from("<I", buf, 4)
    min_offset = PREAMBLE_BYTES + header_bytes
    for i, s in enumerate(sections):
        want_kind = 0 if i == 0 else (1 if (i - 1) % 2 == 0 else 2)
        want_layer = 0 if i == 0 else (i - 1) // 2
        if s.kind != want_kind or s.layer != want_layer:
            raise _invalid(f"section {i} is kind {s.kind} of layer {s.layer}, expected kind {want_kind} of layer "
                           f"{want_layer}")
        if s.offset % ALIGNMENT != 0 or s.offset < min_offset:
            raise _invalid(f"{s.name}: misplaced at offset {s.offset}")
        if s.stored > size or s.offset > size - s.stored:
            raise _lost(f"truncated: {s.name} ({s.stored} bytes at offset {s.offset}) runs past the end of the file "
                        f"({size} bytes)")
        expected = _expected_raw(h, i)
        if s.raw != expected:
            raise _invalid(f"{s.name}: {s.raw} bytes, which the header's lengths do not imply")
        if h.codec == "none" and s.stored != s.raw:
            raise _invalid(f"{s.name}: stored {s.stored} bytes but holds {s.raw} uncompressed")
        decoded_total += expected
        min_offset = s.offset + s.stored
    if decoded_total > max_decoded_bytes:
        raise KvcFormatError("RESOURCE_EXHAUSTED", f"decodes to more than the limit of {max_decoded_bytes} bytes")
    last = sections[-1]
    if last.offset + last.stored != size:
        raise _invalid(f"trailing bytes: the last section ends at {last.offset + last.stored} of {size}")
    if verify_checksums:
        for s in sections:
            if _xxh64(buf[s.offset:s.offset + s.stored]) != s.hash:
                raise _lost(f"checksum mismatch in {s.name}")

    raw_sections = []
    for s in sections:
        stored = buf[s.offset:s.offset + s.stored]
        if h.codec == "zstd":
            raw_sections.append(_decompress(stored, s))
        else:
            raw_sections.append(bytes(stored))

    heads, dim, dtype = h.kv_heads, h.head_dim, h.dtype
    all_positions = np.frombuffer(raw_sections[0], dtype="<i4").astype(np.int32)
    positions, keys, values = [], [], []
    key_scales = [] if dtype == "int8" else None
    value_scales = [] if dtype == "int8" else None
    cursor = 0
    for layer in range(h.num_layers):
        n = h.layer_entries(layer)
        bounds = np.cumsum([0] + h.lengths[layer])
        positions.append([all_positions[cursor + bounds[hd]:cursor + bounds[hd + 1]] for hd in range(heads)])
        cursor += n
        kraw, vraw = raw_sections[1 + 2 * layer], raw_sections[2 + 2 * layer]
        koff = voff = 0
        if dtype == "int8":
            ks = np.frombuffer(kraw, dtype="<f4", count=heads * dim).astype(np.float32)
            key_scales.append(ks.reshape(heads, dim))
            vs = np.frombuffer(vraw, dtype="<f4", count=n).astype(np.float32)
            value_scales.append([vs[bounds[hd]:bounds[hd + 1]] for hd in range(heads)])
            koff, voff = 4 * heads * dim, 4 * n
        k = _elements(kraw, dtype, n * dim, koff).reshape(n, dim)
        v = _elements(vraw, dtype, n * dim, voff).reshape(n, dim)
        keys.append([k[bounds[hd]:bounds[hd + 1]] for hd in range(heads)])
        values.append([v[bounds[hd]:bounds[hd + 1]] for hd in range(heads)])
    return KvcFile(h, positions, keys, values, key_scales, value_scales)


def _decompress(stored: memoryview, s: KvcSection) -> bytes:
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - zstandard is a dependency of kvc_client
        raise ImportError("reading a zstd .kvc file needs the zstandard package") from e
    try:
        params = zstandard.get_frame_parameters(stored)
    except zstandard.ZstdError as e:
        raise _lost(f"{s.name}: zstd: {e}") from None
    if params.content_size != s.raw:
        raise _lost(f"{s.name}: zstd frame does not hold {s.raw} bytes")
    try:
        out = zstandard.ZstdDecompressor().decompress(stored, max_output_size=s.raw)
    except zstandard.ZstdError as e:
        raise _lost(f"{s.name}: zstd: {e}") from None
    if len(out) != s.raw:
        raise _lost(f"{s.name}: zstd: short frame")
    return out
