"""Storage layouts (spec 6): lossless round trips and bit positions checked by an independent packer."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

from nxfp_hw.formats import PRESETS, parse_format
from nxfp_hw.golden.pack import block_bytes, pack_blocks, pack_split, unpack_blocks, unpack_split
from nxfp_hw.golden.quantize import quantize

SEED = int(os.environ.get("NXFP_SEED", "20251124"))

FORMATS = [*PRESETS, "elem=E2M1|E1M2|E3M0,scale=UE6M2,k=2,cr=pm", "elem=E3M2,k=4", "elem=INT5,scale=UE8M0,k=64",
           "elem=E2M3|E3M2,scale=E8M0,cr=9|-9|11|-11,k=8"]


def rng_for(test: str) -> np.random.Generator:
    print(f"{test}: seed {SEED} (set NXFP_SEED to change)")
    return np.random.default_rng(SEED)


def random_fields(fmt, rng, lead=(3,), nblocks=5):
    headers = rng.integers(0, 1 << fmt.header_bits, (*lead, nblocks)).astype(np.uint16)
    codes = rng.integers(0, 1 << fmt.element_width, (*lead, nblocks, fmt.k)).astype(np.uint16)
    return headers, codes


def reference_block_bytes(fmt, header: int, codes: list[int]) -> bytes:
    """One block as a Python integer: header in bits [0, H), element i at H + i*w; little-endian bytes."""
    value = header
    for i, c in enumerate(codes):
        value |= c << (fmt.header_bits + i * fmt.element_width)
    return value.to_bytes((fmt.block_bits + 7) // 8, "little")


def reference_split_bytes(fmt, codes: list[int]) -> bytes:
    value = 0
    for i, c in enumerate(codes):
        value |= c << (i * fmt.element_width)
    return value.to_bytes((len(codes) * fmt.element_width + 7) // 8, "little")


@pytest.mark.parametrize("text", FORMATS)
def test_bit_positions_match_independent_packer(text):
    fmt = parse_format(text)
    rng = rng_for(f"test_bit_positions_match_independent_packer[{text}]")
    headers, codes = random_fields(fmt, rng)
    packed = pack_blocks(fmt, headers, codes)
    assert packed.dtype == np.uint8 and packed.shape == (3, 5, block_bytes(fmt))
    for r in range(3):
        for b in range(5):
            want = reference_block_bytes(fmt, int(headers[r, b]), [int(c) for c in codes[r, b]])
            assert packed[r, b].tobytes() == want
        hs, es = pack_split(fmt, headers, codes)
        assert hs.dtype == (np.uint8 if fmt.header_bits <= 8 else np.uint16)
        assert es[r].tobytes() == reference_split_bytes(fmt, [int(c) for c in codes[r].reshape(-1)])


def test_known_mxfp4_bytes():
    fmt = PRESETS["mxfp4_e2m1"]
    headers = np.array([0x7F], dtype=np.uint16)
    codes = np.arange(32, dtype=np.uint16)[None, :] % 16
    packed = pack_blocks(fmt, headers, codes)[0]
    # byte 0 = header; then two elements per byte, element 2j in the low nibble
    assert packed.tolist() == [0x7F] + [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE] * 2
    _, es = pack_split(fmt, headers, codes)
    assert es.tolist() == [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE] * 2


def test_known_six_bit_layout():
    fmt = parse_format("elem=E3M2,k=4")  # 8 + 4*6 = 32 bits
    packed = pack_blocks(fmt, np.array([0xA5]), np.array([[0x3F, 0, 0x21, 1]]))
    # bits: header 0xA5 | 0x3F << 8 | 0x21 << 20 | 1 << 26
    assert int.from_bytes(packed[0].tobytes(), "little") == 0xA5 | 0x3F << 8 | 0x21 << 20 | 1 << 26


@given(st.sampled_from(FORMATS), st.integers(0, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
@hyp_seed(SEED)
def test_round_trips(text, nblocks, data_seed):
    fmt = parse_format(text)
    headers, codes = random_fields(fmt, np.random.default_rng(data_seed), lead=(2,), nblocks=nblocks)
    h, c = unpack_blocks(fmt, pack_blocks(fmt, headers, codes))
    np.testing.assert_array_equal(h, headers)
    np.testing.assert_array_equal(c, codes)
    h, c = unpack_split(fmt, *pack_split(fmt, headers, codes))
    np.testing.assert_array_equal(h, headers)
    np.testing.assert_array_equal(c, codes)
    assert h.dtype == np.uint16 and c.dtype == np.uint16


def test_round_trip_of_quantized_tensor():
    rng = rng_for("test_round_trip_of_quantized_tensor")
    fmt = PRESETS["nxfp4"]
    q = quantize(rng.standard_normal((4, 96)).astype(np.float32), fmt)
    h, c = unpack_blocks(fmt, pack_blocks(fmt, q.headers, q.codes))
    np.testing.assert_array_equal(h, q.headers)
    np.testing.assert_array_equal(c, q.codes)


def test_errors():
    fmt = PRESETS["mxfp4_e2m1"]
    h = np.zeros(2, np.uint16)
    c = np.zeros((2, 32), np.uint16)
    with pytest.raises(ValueError, match=r"codes must fit in 4 bits \(0..15\), found 16"):
        pack_blocks(fmt, h, np.full((2, 32), 16))
    with pytest.raises(ValueError, match="headers must fit in 8 bits"):
        pack_blocks(fmt, np.array([256, 0]), c)
    with pytest.raises(ValueError, match="codes must fit"):
        pack_split(fmt, h, np.full((2, 32), -1))
    with pytest.raises(ValueError, match=r"shape \(..., nblocks, k=32\)"):
        pack_blocks(fmt, h, np.zeros((2, 16), np.uint16))
    with pytest.raises(ValueError, match="headers shape"):
        pack_blocks(fmt, np.zeros(3, np.uint16), c)
    with pytest.raises(TypeError, match="integer array"):
        pack_blocks(fmt, h, c.astype(np.float32))
    with pytest.raises(TypeError, match="uint8"):
        unpack_blocks(fmt, np.zeros((2, 17), np.int16))
    with pytest.raises(ValueError, match=r"shape \(..., 17\)"):
        unpack_blocks(fmt, np.zeros((2, 16), np.uint8))
    with pytest.raises(ValueError, match=r"packed elements must have shape \(32,\)"):
        unpack_split(fmt, h, np.zeros(31, np.uint8))
