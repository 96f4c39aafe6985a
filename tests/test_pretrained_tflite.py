"""The TFLite -> PyTorch rebuild (facemat.pretrained.tflite) against LiteRT and on a real photo.

Face Mesh and BlazeFace run in plain LiteRT, so their rebuilds are compared output
by output. The selfie segmenter cannot (MediaPipe registers its custom transposed
conv itself), so it is checked twice: the graph cut just before the custom op is
written out as a new .tflite and compared with LiteRT (in all three bilinear
resize modes), and the whole rebuild must segment a real portrait.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facemat.errors import CheckpointError, DataError
from facemat.pretrained.fetch import face_photo, mediapipe_model
from facemat.pretrained.tflite import TFLiteGraph, load_tflite, read_graph, read_weights, tensor_names

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
flatbuffers = pytest.importorskip("flatbuffers")
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

SELFIE = "selfie_segmentation.tflite"
# The last tensor before MediaPipe's custom transposed conv, and the logit after it.
SELFIE_TRUNK = "add_13__xeno_compat__1"
SELFIE_LOGIT = "segment"


def _asset(fetcher, name: str) -> Path:
    """A cached asset, or a clean skip when it cannot be fetched (no network, no cache)."""
    try:
        return fetcher(name)
    except DataError as e:
        pytest.skip(f"cannot fetch {name}: {e}")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """Grace Hopper's portrait, RGB float32 in [0, 1], H x W x 3."""
    img = cv2.imread(str(_asset(face_photo, "grace_hopper.jpg")), cv2.IMREAD_COLOR)
    assert img is not None
    return img[:, :, ::-1].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def selfie_path() -> Path:
    return _asset(mediapipe_model, SELFIE)


@pytest.fixture(scope="module")
def selfie(selfie_path: Path) -> TFLiteGraph:
    return load_tflite(selfie_path)


def _interpreter(path: Path) -> Interpreter:
    # Without default delegates, so XNNPACK does not rewrite the graph under test.
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _litert(it: Interpreter, x_nhwc: np.ndarray) -> list[np.ndarray]:
    it.set_tensor(it.get_input_details()[0]["index"], x_nhwc[None])
    it.invoke()
    return [it.get_tensor(d["index"])[0] for d in it.get_output_details()]


def _nhwc(y: torch.Tensor) -> np.ndarray:
    """A rebuilt output in LiteRT's layout (rank-4 outputs come back NCHW)."""
    return (y.permute(0, 2, 3, 1) if y.dim() == 4 else y).detach().numpy()


def _resized(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name, lo", [("face_landmark.tflite", 0.0), ("face_detection_short_range.tflite", -1.0)])
def test_face_models_match_litert(name: str, lo: float, photo: np.ndarray) -> None:
    """Face Mesh ([0,1] input) and BlazeFace ([-1,1]): every output within 1e-4 of LiteRT on three
    random inputs (1e-6 of the peak on a real face); a batch of all four gives the same outputs
    as one at a time."""
    path = _asset(mediapipe_model, name)
    graph = load_tflite(path)
    it = _interpreter(path)
    h, w = it.get_input_details()[0]["shape"][1:3]
    rng = np.random.default_rng(0)
    samples = [rng.uniform(lo, 1.0, (h, w, 3)).astype(np.float32) for _ in range(3)]
    samples.append(_resized(photo[40:440, 56:456], h) * (1.0 - lo) + lo)  # the face, a structured input
    batch = torch.from_numpy(np.stack(samples)).permute(0, 3, 1, 2)
    with torch.no_grad():
        batched = graph(batch)
        singles = [graph(batch[n:n + 1]) for n in range(len(samples))]
    assert len(batched) == len(it.get_output_details())
    for n, x in enumerate(samples):
        for ref, one, many in zip(_litert(it, x), singles[n], batched):
            assert _nhwc(one)[0].shape == ref.shape
            # fp32 rounding: outputs reach ~160 on noise, where each side is ~4e-5 from an fp64
            # rebuild; on the photo BlazeFace's logits reach ~350 and LiteRT alone is 1.4e-4 off.
            tol = 1e-4 if n < 3 else max(1e-4, 1e-6 * float(np.abs(ref).max()))
            assert np.abs(_nhwc(one)[0] - ref).max() <= tol, (name, n)
            # A batch takes other conv kernels (other summation order), nothing more.
            assert np.abs(_nhwc(many)[n] - _nhwc(one)[0]).max() <= 2e-6 * np.abs(ref).max() + 1e-6, (name, n)


def _cut_selfie(src: Path, dst: Path, outputs: list[str], resize: tuple[bool, bool] | None) -> None:
    """Write the selfie graph without the custom op (and what consumes it), returning ``outputs``;
    ``resize`` = (align_corners, half_pixel_centers) overrides every RESIZE_BILINEAR."""
    model = schema.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    g = model.subgraphs[0]
    names = [t.name.decode() for t in g.tensors]
    dead: set[int] = set()
    kept = []
    for op in g.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode or dead.intersection(int(i) for i in op.inputs):
            dead.update(int(o) for o in op.outputs)
            continue
        if resize is not None and max(code.builtinCode, code.deprecatedBuiltinCode) == \
                schema.BuiltinOperator.RESIZE_BILINEAR:
            op.builtinOptions.alignCorners, op.builtinOptions.halfPixelCenters = resize
        kept.append(op)
    assert len(kept) == len(g.operators) - 2  # the transposed conv and its sigmoid
    g.operators = kept
    g.outputs = np.array([names.index(n) for n in outputs], np.int32)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))


@pytest.mark.parametrize("resize", [None, (False, False), (True, False)], ids=["as-shipped", "legacy", "align"])
def test_selfie_trunk_matches_litert(resize, selfie_path: Path, photo: np.ndarray, tmp_path: Path) -> None:
    """Everything before the custom op matches LiteRT, in each bilinear resize mode
    (as shipped: half-pixel centres; legacy: neither flag, not torch's align_corners=False)."""
    outputs = [SELFIE_TRUNK, "up_sampling2d_2", "average_pooling2d_9"]
    cut = tmp_path / "cut.tflite"
    _cut_selfie(selfie_path, cut, outputs, resize)
    graph = load_tflite(cut)
    it = _interpreter(cut)
    samples = [np.random.default_rng(1).random((256, 256, 3), dtype=np.float32), _resized(photo, 256)]
    with torch.no_grad():
        ours = graph(torch.from_numpy(np.stack(samples)).permute(0, 3, 1, 2))
    for n, x in enumerate(samples):
        for name, ref, y in zip(outputs, _litert(it, x), ours):
            # ~17 layers deep with peaks near 100: LiteRT's own fp32 rounding is ~4e-6 of the peak.
            tol = 2e-5 * float(np.abs(ref).max()) + 1e-5
            assert np.abs(_nhwc(y)[n] - ref).max() <= tol, (name, n)
    if resize is not None:  # the modes really differ: the shipped graph gives other values
        with torch.no_grad():
            shipped = load_tflite(selfie_path, outputs=["up_sampling2d_2"])(ours[0].new_tensor(samples[1][None])
                                                                              .permute(0, 3, 1, 2))[0]
        assert (shipped - ours[1][1:]).abs().max() > 1e-2


def _face_and_corners(mask: np.ndarray) -> tuple[float, float]:
    """Mean of a square mask inside the face (Hopper's face spans rows 0.27-0.5, cols 0.37-0.63 of
    the squashed 512x600 frame) and the larger of the two top-corner means (1/8 of the side)."""
    s = mask.shape[0]
    face = mask[int(0.3 * s):int(0.48 * s), int(0.4 * s):int(0.6 * s)].mean()
    c = s // 8
    return float(face), float(max(mask[:c, :c].mean(), mask[:c, -c:].mean()))


def test_selfie_segments_a_real_portrait(selfie: TFLiteGraph, photo: np.ndarray) -> None:
    """The rebuilt selfie segmenter (sigmoid output) finds the person at 256 and at 128."""
    masks = {}
    for size in (256, 128):
        x = torch.from_numpy(_resized(photo, size)).permute(2, 0, 1)[None]
        with torch.no_grad():
            (prob,) = selfie(x)
        assert prob.shape == (1, 1, size, size)
        masks[size] = prob[0, 0].numpy()
        face, corners = _face_and_corners(masks[size])
        # Measured: face 1.00, corners 0.00 at both sizes.
        assert face > 0.95, (size, face)
        assert corners < 0.05, (size, corners)
    # At half size the person mask is about the same region (measured IoU 0.92).
    big, small = cv2.resize(masks[256], (128, 128), interpolation=cv2.INTER_AREA) > 0.5, masks[128] > 0.5
    assert (big & small).sum() / (big | small).sum() > 0.85


def test_spec_round_trip_pruning_and_gradients(selfie: TFLiteGraph, selfie_path: Path) -> None:
    """The spec survives JSON; a module built from it alone + the weights gives identical outputs;
    intermediate outputs prune the graph; gradients reach every parameter."""
    spec = json.loads(json.dumps(read_graph(selfie_path)))
    assert spec["format"] == "facemat-tflite-graph/1"
    weights = read_weights(selfie_path, spec)
    assert all(w.dtype == torch.float32 for w in weights.values())
    assert sum(w.numel() for w in weights.values()) == sum(p.numel() for p in selfie.parameters())
    rebuilt = TFLiteGraph(spec)
    rebuilt.load_state_dict(weights, strict=True)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))  # half size: fast
    with torch.no_grad():
        assert torch.equal(rebuilt(x)[0], selfie(x)[0])

    rows = {r["name"]: r for r in tensor_names(spec)}
    assert rows[SELFIE_TRUNK]["torch_shape"] == [1, 16, 128, 128]
    assert rows[SELFIE_LOGIT]["op"] == "Convolution2DTransposeBias"
    heads = TFLiteGraph(spec, outputs=[SELFIE_LOGIT, SELFIE_TRUNK])
    heads.load_state_dict(weights, strict=True)  # nothing pruned but the sigmoid
    logit, trunk = heads(x)
    assert trunk.shape == (2, 16, 64, 64) and logit.shape == (2, 1, 128, 128)
    torch.testing.assert_close(torch.sigmoid(logit), selfie(x)[0])

    early = TFLiteGraph(spec, outputs=["up_sampling2d"])  # the decoder is pruned away
    assert 0 < len(early.state_dict()) < len(weights)
    early.load_state_dict({k: weights[k] for k in early.state_dict()}, strict=True)
    assert early(x)[0].shape == (2, 128, 16, 16)

    logit.pow(2).mean().backward()
    grads = {n: p.grad for n, p in heads.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert sum(bool(g.abs().sum() > 0) for g in grads.values()) == len(grads)


def test_bad_files_raise_clear_errors(selfie_path: Path, tmp_path: Path) -> None:
    text = tmp_path / "model.tflite"
    text.write_text("not a model at all\n")
    with pytest.raises(CheckpointError, match="not a TFLite flatbuffer"):
        read_graph(text)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(selfie_path.read_bytes()[:64])
    with pytest.raises(CheckpointError, match="corrupt TFLite flatbuffer|not a TFLite"):
        read_graph(truncated)
    spec = read_graph(selfie_path)
    with pytest.raises(CheckpointError, match="not the file this graph spec was read from"):
        read_weights(_asset(mediapipe_model, "face_landmark.tflite"), spec)
    # An op the rebuild does not know is named, but only when the outputs need it.
    for op in spec["ops"]:
        if op["op"] == "Convolution2DTransposeBias":
            op["op"] = "TransformTensorBilinear"
    with pytest.raises(CheckpointError, match="unsupported TFLite op TransformTensorBilinear"):
        TFLiteGraph(spec)
    assert TFLiteGraph(spec, outputs=[SELFIE_TRUNK])(torch.rand(1, 3, 128, 128))[0].shape == (1, 16, 64, 64)
