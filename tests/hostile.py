"""Builders of hostile inputs for the bad-input catalogue (issue 18): what an attacker or a careless
colleague hands the toolchain. Each writes files into a workspace and returns their paths."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import torch

from facemat.checkpoint import read_checkpoint


class Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious model file carries."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def rewrite_pt2(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy the ``.pt2`` zip ``src`` to ``dst`` with ``edit`` applied to its entries (names without the top folder)."""
    with zipfile.ZipFile(src) as zin:
        top = zin.namelist()[0].split("/")[0] + "/"
        items = {i.filename[len(top):]: zin.read(i) for i in zin.infolist()}
    edit(items)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in items.items():
            zout.writestr(top + name, data)
    return dst


def hostile_quantized(q_dir: Path, ws: Path, marker: Path) -> dict[str, Path]:
    """Copies of a quantize output folder whose ``model.pt2`` carries a payload or an entry torch.export.save never writes."""
    def pickled_weight(items):
        cfg = json.loads(items["data/weights/model_weights_config.json"])
        fqn = next(iter(cfg["config"]))
        cfg["config"][fqn]["use_pickle"] = True  # torch.export.load: torch.load(weights_only=False)
        items["data/weights/model_weights_config.json"] = json.dumps(cfg).encode()
        items["data/weights/" + cfg["config"][fqn]["path_name"]] = _pickled(Payload(str(marker)))

    def pickled_sample(items):  # fails weights_only=True, so torch retries with weights_only=False
        items["data/sample_inputs/model.pt"] = _pickled(Payload(str(marker)))

    def extra_entry(items):
        items["data/weights/extra.pkl"] = _pickled(Payload(str(marker)))

    def legacy_weights(items):  # the pre-2.6 layout: one pickled state dict, loaded with weights_only=False
        items["data/weights/model.pt"] = _pickled({"w": Payload(str(marker))})

    def aoti_library(items):  # an AOTInductor package: torch would dlopen the shared library
        items["data/aotinductor/model/model.so"] = b"\x7fELF not really"

    def opaque_constant(items):  # loaded with pickle.loads
        cfg = {"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False,
                                   "tensor_meta": None}}}
        items["data/constants/model_constants_config.json"] = json.dumps(cfg).encode()
        items["data/constants/opaque_obj_0"] = _pickled(Payload(str(marker)))

    out = {}
    for name, edit in [("pickled_weight", pickled_weight), ("pickled_sample", pickled_sample),
                       ("extra_entry", extra_entry), ("legacy_weights", legacy_weights),
                       ("aoti_library", aoti_library), ("opaque_constant", opaque_constant)]:
        folder = ws / f"q-{name.replace('_', '-')}"
        shutil.copytree(q_dir, folder)
        rewrite_pt2(q_dir / "model.pt2", folder / "model.pt2", edit)
        out[f"q_{name}"] = folder
    out["q_not_zip"] = ws / "q-not-zip"
    shutil.copytree(q_dir, out["q_not_zip"])
    (out["q_not_zip"] / "model.pt2").write_bytes(b"#!/bin/sh\ntouch " + str(marker).encode() + b"\n")
    return out


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking few-hundred-byte PNG whose header declares ``width x height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 256))
            + chunk(b"IEND", b""))


def checkpoint_variant(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with ``edit`` applied to its dict (config, weights)."""
    ckpt = read_checkpoint(src)
    edit(ckpt)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def manifest_variant(art: Path, dst: Path, edit: Callable[[dict, Path], None]) -> Path:
    """Copy artifact folder ``art`` to ``dst`` with ``edit(entry, dst)`` applied to its one manifest entry."""
    shutil.copytree(art, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    entry = next(iter(manifest["artifacts"].values()))
    edit(entry, dst)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst
