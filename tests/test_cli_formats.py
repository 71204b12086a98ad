"""`nxfp-hw formats` and the CLI frame: table contents and error handling."""

from __future__ import annotations

import json

import pytest

from nxfp_hw.cli import main

# Spec 4 table, written out independently of the preset code: (elements, scale, header bits, bits/elem).
SPEC_PRESETS = {
    "mxfp8_e4m3": ("E4M3", "E8M0", 8, 8.25),
    "mxfp8_e5m2": ("E5M2", "E8M0", 8, 8.25),
    "mxfp6_e3m2": ("E3M2", "E8M0", 8, 6.25),
    "mxfp6_e2m3": ("E2M3", "E8M0", 8, 6.25),
    "mxfp4_e2m1": ("E2M1", "E8M0", 8, 4.25),
    "mxint8": ("INT8", "E8M0", 8, 8.25),
    "nxfp4": ("E2M1|E1M2", "UE5M1", 8, 4.25),
    "nxfp5": ("E2M2|E3M1", "UE5M1", 8, 5.25),
    "nxfp6": ("E2M3|E3M2", "UE5M1", 8, 6.25),
}


def test_formats_table_lists_every_preset(capsys):
    assert main(["formats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == set(SPEC_PRESETS)
    for name, (elems, scale, header, bpe) in SPEC_PRESETS.items():
        row = rows[name]
        assert row[1] == elems and row[2] == scale and row[3] == "32"
        assert float(row[-1]) == bpe
        assert f"{header} b" in " ".join(row)


def test_formats_json_describes_a_format_string(capsys):
    assert main(["formats", "--json", "-f", "nxfp4,k=16,cr=none"]) == 0
    (desc,) = json.loads(capsys.readouterr().out)
    assert desc["k"] == 16 and desc["recycling"] == [] and desc["header_bits"] == 7
    assert desc["bits_per_element"] == 4 + 7 / 16


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ("nxfp9", "unknown format preset 'nxfp9'"),
        ("elem=E9M1", "exponent bits must be in 1..5"),
        ("nxfp4,k=24", "power of two"),
        ("elem=E2M1|E2M2", "share one code width"),
        ("elem=INT8,cr=pm", "does not apply to INT8"),
        ("elem=E2M1,cr=6", "already a level"),
        ("nxfp4,color=red", "unknown option 'color'"),
    ],
)
def test_formats_bad_input_is_one_clear_message(capsys, fmt, needle):
    assert main(["formats", "-f", fmt]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
