"""A minimal .kvc v1 writer for tests (the real writer is compressor/format/kvc_writer.cc)."""
import json
import struct

import numpy as np
import xxhash


def _align(n, a):
    return (n + a - 1) // a * a


def write_kvc(keys, values, positions, *, dtype="f32", codec="none", compacted=False, next_position=0,
              tokens_in=0, metadata=None, fingerprint=b"\x01" * 32):
    """keys/values: [layer][head] float32 arrays [len, D]; positions: [layer][head] int arrays."""
    L, H = len(keys), len(keys[0])
    D = keys[0][0].shape[1]
    lengths = [len(positions[l][h]) for l in range(L) for h in range(H)]
    meta = json.dumps(metadata or {"model": "test"}, sort_keys=True, separators=(",", ":")).encode()
    flat_positions = [np.asarray(positions[l][h], dtype="<i4") for l in range(L) for h in range(H)]
    sections = [np.concatenate(flat_positions).tobytes()]
    for l in range(L):
        for is_key, src in ((True, keys), (False, values)):
            x = np.concatenate([np.asarray(src[l][h], dtype=np.float32) for h in range(H)])
            if dtype == "f32":
                raw = x.astype("<f4").tobytes()
            elif dtype == "f16":
                raw = x.astype("<f2").tobytes()
            elif dtype == "bf16":
                raw = (x.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
            else:
                if is_key:
                    scales = np.stack([np.abs(np.asarray(src[l][h])).max(axis=0) / 127 for h in range(H)])
                    scales[scales == 0] = 1
                    q = np.concatenate([np.round(np.asarray(src[l][h]) / scales[h]) for h in range(H)])
                else:
                    scales = np.abs(x).max(axis=1) / 127
                    scales[scales == 0] = 1
                    q = np.round(x / scales[:, None])
                raw = scales.astype("<f4").tobytes() + np.clip(q, -127, 127).astype(np.int8).tobytes()
            sections.append(raw)
    stored = sections
    if codec == "zstd":
        import zstandard
        stored = [zstandard.ZstdCompressor(level=3, write_content_size=True).compress(s) for s in sections]
    A = _align(96 + len(meta), 8)
    B = _align(A + 4 * L * H, 8)
    header_end = B + 40 * (1 + 2 * L) + 8
    offsets, cursor = [], _align(header_end, 64)
    for s in stored:
        offsets.append(cursor)
        cursor = _align(cursor + len(s), 64)
    head = bytearray(header_end)
    head[0:4] = b"KVC1"
    struct.pack_into("<I", head, 4, header_end - 8)
    dtypes, codecs = ["f32", "bf16", "f16", "int8"], ["none", "zstd"]
    struct.pack_into("<HHIIIBBBBIQQq", head, 8, 1, 0, L, H, D, dtypes.index(dtype), codecs.index(codec),
                     1 if compacted else 0, 0, len(meta), tokens_in, max(lengths), next_position)
    head[56:88] = fingerprint
    struct.pack_into("<II", head, 88, 1 + 2 * L, 0)
    head[96:96 + len(meta)] = meta
    struct.pack_into(f"<{L * H}I", head, A, *lengths)
    for i, s in enumerate(stored):
        kind = 0 if i == 0 else (1 if (i - 1) % 2 == 0 else 2)
        layer = 0 if i == 0 else (i - 1) // 2
        struct.pack_into("<IIQQQQ", head, B + 40 * i, kind, layer, offsets[i], len(s), len(sections[i]),
                         xxhash.xxh64_intdigest(s))
    struct.pack_into("<Q", head, header_end - 8, xxhash.xxh64_intdigest(bytes(head[:header_end - 8])))
    out = bytearray(head)
    for off, s in zip(offsets, stored):
        out.extend(b"\0" * (off - len(out)))
        out.extend(s)
    return bytes(out)
