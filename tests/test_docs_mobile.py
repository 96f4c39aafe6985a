"""docs/mobile.md and the app examples state each artifact's input and output exactly as the exporter writes them.

The exporter runs here on the default ``student`` at its own size and writes a
manifest; every row of the docs' table must match that manifest's I/O record.
Precisions that need a quantize run (int8, w8a8, fp16) share the I/O of the
fp32 build of the same target, delegate, layout and input kind: the int8
builds keep float32 I/O (checked in each target's own tests), so their rows are
compared with that build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.models import build_model
from targets.export import ExportSettings, run_export
from tests.helpers import warm_bn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mobile.md"
HEADER = ["artifact", "input name", "input shape", "layout", "dtype", "range", "colour", "output name", "output shape"]


def doc_table() -> list[dict[str, str]]:
    text = DOC.read_text()
    section = text.split("## Input and output of each artifact", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in section.splitlines()
            if ln.strip().startswith("|")]
    assert rows[0] == HEADER, rows[0]
    return [dict(zip(HEADER, r)) for r in rows[2:]]


def family(artifact_id: str) -> tuple:
    """(target, delegate, nhwc, image): what decides an artifact's I/O besides its size."""
    parts = artifact_id.split("-")
    delegate = parts[1] if parts[0] == "executorch" else None
    rest = parts[3:] if delegate else parts[2:]
    return parts[0], delegate, "nhwc" in rest, "image" in rest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("docs")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "student.pt", warm_bn(build_model("student")))
    out = tmp / "artifacts"
    for kw in ({"target": "coreml", "precision": "fp32"},
               {"target": "coreml", "precision": "fp32", "coreml_input": "image"},
               {"target": "executorch", "precision": "fp32", "delegate": "xnnpack"},
               {"target": "executorch", "precision": "fp16", "delegate": "coreml"},
               {"target": "tflite", "precision": "fp32"},
               {"target": "tflite", "precision": "fp32", "layout": "NHWC"},
               {"target": "onnx", "precision": "fp32"},
               {"target": "onnx", "precision": "int8"}):
        run_export(ExportSettings(checkpoint=str(ckpt), out=str(out), parity_images=1, calib_images=2, **kw))
    return json.loads((out / "manifest.json").read_text())["artifacts"]


def shape(values) -> str:
    return "x".join(str(v) for v in values)


def test_every_documented_artifact_matches_the_exporters_manifest(manifest):
    rows = doc_table()
    ids = [r["artifact"].strip("`") for r in rows]
    assert len(ids) == len(set(ids)), "an artifact is listed twice"
    # Every kind the issue asks the docs to cover is in the table.
    assert {"coreml-fp32", "executorch-xnnpack-int8", "executorch-coreml-int8", "tflite-int8", "tflite-int8-nhwc",
            "onnx-fp32"} <= set(ids)
    by_family = {}
    for aid, entry in manifest.items():
        by_family.setdefault(family(aid), entry)
    checked_exact = 0
    for row, aid in zip(rows, ids):
        entry = manifest.get(aid) or by_family.get(family(aid))
        assert entry is not None, f"docs list {aid}, which no exported artifact stands for"
        checked_exact += aid in manifest
        inp, out = entry["input"], entry["outputs"][0]
        want = {
            "input name": f"`{inp['name']}`",
            "input shape": shape(inp["shape"]),
            "layout": inp["layout"],
            "dtype": "image (RGB, 8-bit)" if inp["kind"] == "image" else inp["dtype"],
            "range": "[{:g}, {:g}]".format(*inp["value_range"]),
            "colour": inp["colour"],
            "output name": f"`{out['name']}`",
            "output shape": shape(out["shape"]),
        }
        got = {k: row[k] for k in want}
        assert got == want, f"docs/mobile.md row {aid} disagrees with the exporter's manifest ({entry['id']})"
    assert checked_exact >= 7  # the artifacts exported above are compared by their own id


def test_examples_use_the_exported_input_size(manifest):
    size = manifest["tflite-fp32-nhwc"]["input"]["shape"][1]
    swift = (ROOT / "examples" / "ios" / "FaceMatFilter.swift").read_text()
    kotlin = (ROOT / "examples" / "android" / "FaceMatFilter.kt").read_text()
    assert re.search(rf"static let size = {size}\b", swift)
    assert re.search(rf"const val SIZE = {size}\b", kotlin)
    assert "not compiled" in DOC.read_text()
