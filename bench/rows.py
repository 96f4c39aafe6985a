"""The bench report's data: its format name and the typed row every producer writes.

``report.json`` (format :data:`FORMAT`) holds ``device``, ``date``, ``tools``,
``manifest``, ``data``, ``reference``, ``teacher``, ``timing``, ``settings``,
``rows``, ``ratios``, ``peers``, ``notes`` and ``wall_s`` (an ingested-only
report holds the first few). Each element of ``rows`` is a :class:`Row` as a
dict. ``bench.run`` writes measured rows, ``bench.ingest`` rows from phone
logs; ``bench.report`` and ``bench.compare`` read them back as plain dicts
(older files may lack the optional fields).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FORMAT = "facemat-bench/1"

STATUSES = ("ok", "not run here", "failed")


@dataclass
class Row:
    """One artifact (or the FP32 reference, or a peer model) at one thread count on one device.

    Attributes:
        artifact: manifest id, ``"fp32-reference"``, or ``"peer:<name>"``.
        kind: ``"artifact"``, ``"reference"`` or ``"peer"``.
        target: ``executorch``, ``coreml``, ``tflite``, ``onnx``, or ``pytorch`` for the reference.
        precision: ``fp32``, ``fp16``, ``int8``, ``w8``, ``w8a8``, or ``peer``.
        delegate: the ExecuTorch delegate (``xnnpack``, ``coreml``), else None.
        runtime: runtime name and version, e.g. ``"onnxruntime 1.22.0 (CPU EP)"``.
        threads: CPU threads, or None where the tool used its default.
        status: one of :data:`STATUSES`.
        reason: why not ``ok``, else None.
        source: ``"measured"`` or ``"ingested:<format>"``.
        device: the ``--device`` name.
        file_bytes: artifact size in bytes, or None.
        latency_ms: ``{"median", "p90", "min", "mean", "runs", "warmup"}`` in ms, or None.
        peak_mem_mb: peak resident memory growth in MB, or None.
        accuracy: ``{"gt": {band: {metric: mean}}, "fp32": {...}}`` (``bench.run.score``), or None.
        profile: per-op breakdown (``bench.profile``), or None.
        input: peer rows: the input shape the peer ran, e.g. ``"1x192x192x3"``.
        note: ingested rows: what the latency figures are.
        ingest: ingested rows: the log, its sha256, the tool and what was read.
    """

    artifact: str
    kind: str
    target: str | None
    precision: str | None
    delegate: str | None
    runtime: str | None
    threads: int | None
    status: str
    reason: str | None
    source: str
    device: str
    file_bytes: int | None
    latency_ms: dict[str, Any] | None
    peak_mem_mb: float | None
    accuracy: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    input: str | None = None
    note: str | None = None
    ingest: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status
        assert self.kind in ("artifact", "reference", "peer"), self.kind

    def to_dict(self) -> dict[str, Any]:
        """The row as ``report.json`` stores it; the optional peer and ingest fields only when set."""
        row = dataclasses.asdict(self)
        for optional in ("input", "note", "ingest"):
            if row[optional] is None and not (optional == "input" and self.kind == "peer"):
                del row[optional]
        return row
