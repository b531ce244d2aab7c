"""read_kvc and load_cache against the committed golden files (tests/testdata/kvc, written by format 1.0 and
defined in compressor/format/kvc_format_test.cc) and files written by the test writer."""
import struct

import numpy as np
import pytest

from conftest import REPO
from kvc_client import KvcFormatError, load_cache, read_header, read_kvc
from kvc_writer import write_kvc

GOLDEN = REPO / "tests" / "testdata" / "kvc"
VARIANTS = [("f32", "none"), ("bf16", "zstd"), ("f16", "none"), ("int8", "zstd")]


# The formulas of kvc_format_test.cc.
def value(key, l, h, t, d):
    x = (7 if key else 3) * l + 5 * h + 3 * t + d + (0 if key else 11)
    return (x % 17 - 8) / 4.0


def position(l, h, t):
    return 3 * t + h + l


def quant(key, l, h, t, d):
    return ((31 if key else 17) * l + 13 * h + 7 * t + d) % 255 - 127


def scale(key, l, h, i):
    return 0.5 + 0.25 * ((l + h + i) % 5)


def golden(dtype, codec):
    return (GOLDEN / f"v1_{dtype}_{codec}.kvc").read_bytes()


@pytest.mark.parametrize("dtype,codec", VARIANTS)
def test_golden_file_reads_exactly(dtype, codec):
    kf = read_kvc(golden(dtype, codec))
    h = kf.header
    assert (h.version_major, h.version_minor) == (1, 0)
    assert (h.num_layers, h.kv_heads, h.head_dim) == (2, 2, 8)
    assert (h.dtype, h.codec) == (dtype, codec)
    assert h.keys_compacted
    assert (h.tokens_in, h.tokens_out, h.next_position) == (40, 5, 9)
    assert h.fingerprint == "0" + "a" * 63
    assert h.metadata == {"model": "golden", "rope": {"type": "default", "theta": 10000.0},
                          "spec": {"method": "finch", "ratio": 4.0}}
    assert h.lengths == [[3, 4], [4, 5]]
    for l in range(2):
        for hd in range(2):
            n = 3 + l + hd
            assert kf.positions[l][hd].dtype == np.int32
            assert kf.positions[l][hd].tolist() == [position(l, hd, t) for t in range(n)]
            assert kf.keys[l][hd].shape == (n, 8) and kf.values[l][hd].shape == (n, 8)
            for t in range(n):
                for d in range(8):
                    if dtype == "int8":
                        assert kf.keys[l][hd].dtype == np.int8
                        assert kf.keys[l][hd][t, d] == quant(True, l, hd, t, d)
                        assert kf.values[l][hd][t, d] == quant(False, l, hd, t, d)
                        want_k = np.float32(quant(True, l, hd, t, d)) * np.float32(scale(True, l, hd, d))
                        want_v = np.float32(quant(False, l, hd, t, d)) * np.float32(scale(False, l, hd, t))
                        assert kf.key(l, hd)[t, d] == want_k
                        assert kf.value(l, hd)[t, d] == want_v
                    else:
                        assert kf.keys[l][hd][t, d] == value(True, l, hd, t, d)
                        assert kf.values[l][hd][t, d] == value(False, l, hd, t, d)
                        assert kf.key(l, hd)[t, d] == value(True, l, hd, t, d)
                        assert kf.value(l, hd)[t, d] == value(False, l, hd, t, d)
            if dtype == "int8":
                assert kf.key_scales[l][hd].tolist() == [scale(True, l, hd, d) for d in range(8)]
                assert kf.value_scales[l][hd].tolist() == [scale(False, l, hd, t) for t in range(n)]
            else:
                assert kf.key_scales is None and kf.value_scales is None


@pytest.mark.parametrize("dtype,codec", VARIANTS)
def test_load_cache_refuses_heads_of_different_lengths(dtype, codec):
    with pytest.raises(NotImplementedError, match="different lengths"):
        load_cache(golden(dtype, codec))


def test_load_cache_refuses_layers_of_different_lengths(monkeypatch):
    from kvc_client import hf_cache

    class Header:
        fingerprint = "ab"
        lengths = [[3, 3], [2, 2]]

    class File:
        header = Header()

    monkeypatch.setattr(hf_cache, "read_kvc", lambda data: File())
    with pytest.raises(NotImplementedError, match="layer 1 holds 2 entries per head and layer 0 3"):
        hf_cache.load_cache(b"")


def section_table(data):
    h, sections = read_header(data)
    return sections


@pytest.mark.parametrize("dtype,codec", VARIANTS)
def test_a_corrupted_section_byte_is_a_checksum_mismatch(dtype, codec):
    data = golden(dtype, codec)
    for s in section_table(data):
        for at in (s.offset, s.offset + s.stored - 1):
            bad = bytearray(data)
            bad[at] ^= 0x20
            with pytest.raises(ValueError, match="checksum mismatch in " + s.name) as e:
                read_kvc(bytes(bad))
            assert e.value.code == "DATA_LOSS"


@pytest.mark.parametrize("dtype,codec", VARIANTS)
def test_a_corrupted_header_byte_is_a_header_checksum_mismatch(dtype, codec):
    data = golden(dtype, codec)
    (header_bytes,) = struct.unpack_from("<I", data, 4)
    for at in (8, 12, 24, 48, 60, 100, 8 + header_bytes - 20, 8 + header_bytes - 1):
        bad = bytearray(data)
        bad[at] ^= 0x01
        with pytest.raises(ValueError, match="header checksum mismatch"):
            read_kvc(bytes(bad))


@pytest.mark.parametrize("dtype,codec", VARIANTS)
def test_truncation_is_refused(dtype, codec):
    data = golden(dtype, codec)
    for size in (0, 2, 7, 50, 200, len(data) // 2, len(data) - 1):
        with pytest.raises(ValueError, match="truncated") as e:
            read_kvc(data[:size])
        assert e.value.code == "DATA_LOSS"


def test_malformed_files_are_refused():
    data = golden("f32", "none")
    with pytest.raises(ValueError, match="bad magic"):
        read_kvc(b"KVC2" + data[4:])
    with pytest.raises(ValueError, match="trailing bytes"):
        read_kvc(data + b"\0")
    with pytest.raises(ValueError, match="bad magic"):
        read_kvc(b"hello world, this is not a cache" * 10)


def test_fields_out_of_range_are_refused():
    base = dict(keys=[[np.ones((2, 4), np.float32)]], values=[[np.ones((2, 4), np.float32)]], positions=[[[0, 1]]])
    good = write_kvc(**base)
    read_kvc(good)

    def patched(offset, fmt, value):
        import xxhash
        bad = bytearray(good)
        struct.pack_into(fmt, bad, offset, value)
        (hb,) = struct.unpack_from("<I", bad, 4)
        struct.pack_into("<Q", bad, 8 + hb - 8, xxhash.xxh64_intdigest(bytes(bad[:8 + hb - 8])))
        return bytes(bad)

    for offset, fmt, v, message in [(8, "<H", 2, "unsupported version 2.0"), (12, "<I", 0, "num_layers 0"),
                                    (16, "<I", 2000, "kv_heads 2000"), (20, "<I", 5000, "head_dim 5000"),
                                    (24, "<B", 4, "unknown dtype 4"), (25, "<B", 2, "unknown codec 2"),
                                    (26, "<B", 2, "unknown key rotation"), (27, "<B", 1, "reserved"),
                                    (48, "<q", -1, "negative next_position"), (88, "<I", 5, "5 sections"),
                                    (20, "<I", 8, "header's lengths do not imply")]:
        with pytest.raises(ValueError, match=message) as e:
            read_kvc(patched(offset, fmt, v))
        assert e.value.code == "INVALID_ARGUMENT"


def random_cache(rng, layers=3, heads=2, length=5, dim=8):
    keys = [[rng.standard_normal((length, dim)).astype(np.float32) for _ in range(heads)] for _ in range(layers)]
    values = [[rng.standard_normal((length, dim)).astype(np.float32) for _ in range(heads)] for _ in range(layers)]
    positions = [[rng.permutation(40)[:length].tolist() for _ in range(heads)] for _ in range(layers)]
    return keys, values, positions


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16", "int8"])
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_load_cache_builds_a_dynamic_cache(dtype, codec):
    import torch

    keys, values, positions = random_cache(np.random.default_rng(7))
    data = write_kvc(keys, values, positions, dtype=dtype, codec=codec, next_position=33, compacted=True)
    kf = read_kvc(data)
    cache, next_position, header = load_cache(data)
    assert next_position == 33 and header.keys_compacted and header.dtype == dtype
    assert cache.get_seq_length() == 5 and len(cache.layers) == 3
    want_dtype = {"f32": torch.float32, "int8": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    tol = {"f32": 0, "bf16": 1e-2, "f16": 2e-3, "int8": 3e-2}[dtype]
    for l, layer in enumerate(cache.layers):
        assert layer.keys.shape == (1, 2, 5, 8) and layer.keys.dtype == want_dtype
        assert layer.values.shape == (1, 2, 5, 8) and layer.values.dtype == want_dtype
        for h in range(2):
            assert positions[l][h] == kf.positions[l][h].tolist()
            np.testing.assert_array_equal(layer.keys[0, h].float().numpy(), kf.key(l, h))
            np.testing.assert_array_equal(layer.values[0, h].float().numpy(), kf.value(l, h))
            np.testing.assert_allclose(kf.key(l, h), keys[l][h], rtol=tol, atol=tol * 4)
            np.testing.assert_allclose(kf.value(l, h), values[l][h], rtol=tol, atol=tol * 4)
    cache32, _, _ = load_cache(data, dtype="f32")
    assert cache32.layers[0].keys.dtype == torch.float32


def test_load_cache_checks_the_fingerprint():
    keys, values, positions = random_cache(np.random.default_rng(1), layers=1)
    data = write_kvc(keys, values, positions, fingerprint=bytes(range(32)))
    load_cache(data, expected_fingerprint=bytes(range(32)).hex())
    with pytest.raises(ValueError, match="made by model"):
        load_cache(data, expected_fingerprint="ff" * 32)
