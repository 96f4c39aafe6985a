// FaceMatFilter.kt
//
// What every FaceMat runtime on Android shares: the face crop, rendering it to 256 x 256,
// packing RGB floats in the artifact's layout, sampling alpha and compositing a filter.
// FaceMatLiteRT.kt and FaceMatExecuTorch.kt build on it.
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the
// Android SDK (android.graphics). See docs/mobile.md.

package com.example.facemat

import android.graphics.Bitmap
import android.graphics.BitmapShader
import android.graphics.Canvas
import android.graphics.Matrix
import android.graphics.Paint
import android.graphics.PointF
import android.graphics.RectF
import android.graphics.Shader
import java.nio.FloatBuffer
import kotlin.math.abs
import kotlin.math.atan2
import kotlin.math.ceil
import kotlin.math.cos
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.roundToInt
import kotlin.math.sin

/** The student's contract, as written in the exporter's manifest.json ("input", "outputs"). */
object FaceMatSpec {
    /** S: the fixed input side of the default student (H and W are multiples of 64). */
    const val SIZE = 256
    /** Input name (TFLite signature input): RGB float32 in [0, 1]. */
    const val INPUT_NAME = "image"
    /** Output name (TFLite signature output): alpha float32 in [0, 1], 1 = face, 0 = background or occluder. */
    const val OUTPUT_NAME = "alpha"
    /** The TFLite signature the exporter writes. */
    const val SIGNATURE = "serving_default"
}

/** Tensor layout of an artifact: NCHW for all of them except the `-nhwc` builds (`--layout NHWC`). */
enum class TensorLayout(val inputShape: LongArray, val outputShape: LongArray) {
    NCHW(
        longArrayOf(1, 3, FaceMatSpec.SIZE.toLong(), FaceMatSpec.SIZE.toLong()),
        longArrayOf(1, 1, FaceMatSpec.SIZE.toLong(), FaceMatSpec.SIZE.toLong()),
    ),
    NHWC(
        longArrayOf(1, FaceMatSpec.SIZE.toLong(), FaceMatSpec.SIZE.toLong(), 3),
        longArrayOf(1, FaceMatSpec.SIZE.toLong(), FaceMatSpec.SIZE.toLong(), 1),
    );

    companion object {
        /** The layout whose input shape is [shape] (e.g. `interpreter.getInputTensor(0).shape()`). */
        fun ofInputShape(shape: IntArray): TensorLayout =
            values().firstOrNull { layout -> layout.inputShape.map { it.toInt() } == shape.toList() }
                ?: throw IllegalArgumentException(
                    "input shape ${shape.contentToString()} is neither NCHW ${NCHW.inputShape.contentToString()} " +
                        "nor NHWC ${NHWC.inputShape.contentToString()}"
                )
    }
}

/**
 * The crop contract (facemat/crop.py; every artifact's manifest.json records it under "crop"): a
 * square of the upright frame, in pixels, origin at the top left, centre ([centreX], [centreY]),
 * turned by [angle] (radians, image axes with y down: the crop's x axis; 0 is upright).
 */
data class FaceCrop(val centreX: Float, val centreY: Float, val side: Float, val angle: Float = 0f) {
    companion object {
        /**
         * The square the model should see around a face detector's box (pixels, origin top left:
         * ML Kit `Face.boundingBox`, MediaPipe `Detection.boundingBox()`).
         *
         * [scale] and [shiftUp] are the manifest's `crop.scale` and `crop.shift_up`: they frame a
         * BlazeFace box like the training faces (`python -m bench.detect --what framing`). [rightEye]
         * and [leftEye] (the person's own right and left, frame pixels: MediaPipe keypoints 0 and 1,
         * ML Kit `FaceLandmark.RIGHT_EYE` and `LEFT_EYE`) turn the crop with the eye line, as
         * `crop.roll == "eyes"` says; without them the crop stays upright.
         */
        fun around(
            face: RectF, rightEye: PointF? = null, leftEye: PointF? = null,
            scale: Float = 2.4f, shiftUp: Float = 0.06f,
        ): FaceCrop {
            val side = scale * max(face.width(), face.height())
            val angle = if (rightEye != null && leftEye != null) {
                atan2(leftEye.y - rightEye.y, leftEye.x - rightEye.x)
            } else 0f
            // Move towards the top of the head: (sin, -cos) is "up" in a frame whose y points down.
            return FaceCrop(
                face.centerX() + shiftUp * side * sin(angle),
                face.centerY() - shiftUp * side * cos(angle), side, angle,
            )
        }
    }

    /**
     * Model column of frame pixel ([x], [y]): pixel centres, as a bilinear resize with
     * align_corners=False maps them (0 = centre of the model's first pixel).
     */
    fun modelU(x: Int, y: Int): Float {
        val k = FaceMatSpec.SIZE / side
        return k * ((x + 0.5f - centreX) * cos(angle) + (y + 0.5f - centreY) * sin(angle)) +
            FaceMatSpec.SIZE / 2f - 0.5f
    }

    /** Model row of frame pixel ([x], [y]). */
    fun modelV(x: Int, y: Int): Float {
        val k = FaceMatSpec.SIZE / side
        return k * (-(x + 0.5f - centreX) * sin(angle) + (y + 0.5f - centreY) * cos(angle)) +
            FaceMatSpec.SIZE / 2f - 0.5f
    }

    /** Half the side of the turned square's bounding box, in frame pixels. */
    fun reach(): Float = side / 2 * (abs(cos(angle)) + abs(sin(angle)))
}

/** Renders the face crop of an upright ARGB_8888 frame into an S x S bitmap and packs it as floats. */
class FaceCropRenderer {
    /** The S x S crop, reused every frame. */
    val bitmap: Bitmap = Bitmap.createBitmap(FaceMatSpec.SIZE, FaceMatSpec.SIZE, Bitmap.Config.ARGB_8888)
    private val canvas = Canvas(bitmap)
    private val matrix = Matrix()
    private val paint = Paint(Paint.FILTER_BITMAP_FLAG) // bilinear sampling
    private val pixels = IntArray(FaceMatSpec.SIZE * FaceMatSpec.SIZE)

    /**
     * Crops [frame] (a software ARGB_8888 bitmap, upright: rotate CameraX frames by
     * `imageInfo.rotationDegrees` first) to [region], turns it upright and scales it to S x S.
     * Where the square leaves the frame, the frame's edge pixels are repeated (CLAMP). For crops
     * more than twice S, shrink the frame first with an area or multi-step downscale, as
     * facemat/crop.py does, or this bilinear sampling aliases.
     */
    fun render(frame: Bitmap, region: FaceCrop): Bitmap {
        val k = FaceMatSpec.SIZE / region.side
        matrix.setTranslate(-region.centreX, -region.centreY)
        matrix.postRotate(-Math.toDegrees(region.angle.toDouble()).toFloat()) // face upright
        matrix.postScale(k, k)
        matrix.postTranslate(FaceMatSpec.SIZE / 2f, FaceMatSpec.SIZE / 2f)
        val shader = BitmapShader(frame, Shader.TileMode.CLAMP, Shader.TileMode.CLAMP)
        shader.setLocalMatrix(matrix)
        paint.shader = shader
        canvas.drawRect(0f, 0f, FaceMatSpec.SIZE.toFloat(), FaceMatSpec.SIZE.toFloat(), paint)
        paint.shader = null
        return bitmap
    }

    /**
     * Writes the crop into [dst] as RGB float32 in [0, 1] (value / 255) in [layout], with absolute
     * puts (the buffer's position is not used). Nothing else: normalisation is inside the model.
     *
     * NCHW: element (c, y, x) at c*S*S + y*S + x (planar). NHWC: at (y*S + x)*3 + c (interleaved).
     */
    fun packRGB(dst: FloatBuffer, layout: TensorLayout) {
        val s = FaceMatSpec.SIZE
        bitmap.getPixels(pixels, 0, s, 0, 0, s, s) // each Int is 0xAARRGGBB
        val plane = s * s
        val scale = 1f / 255f
        for (i in 0 until plane) {
            val p = pixels[i]
            val r = ((p shr 16) and 0xFF) * scale
            val g = ((p shr 8) and 0xFF) * scale
            val b = (p and 0xFF) * scale
            when (layout) {
                TensorLayout.NCHW -> {
                    dst.put(i, r)
                    dst.put(plane + i, g)
                    dst.put(2 * plane + i, b)
                }
                TensorLayout.NHWC -> {
                    dst.put(3 * i, r)
                    dst.put(3 * i + 1, g)
                    dst.put(3 * i + 2, b)
                }
            }
        }
    }
}

/**
 * The model's alpha: S x S, row-major, float in [0, 1]. NCHW 1x1xSxS and NHWC 1xSxSx1 outputs are
 * the same bytes, so one type serves every artifact.
 */
class AlphaMatte(val size: Int, val values: FloatArray) {
    init {
        require(values.size == size * size) { "alpha has ${values.size} values, expected ${size}x$size" }
    }

    /**
     * The paste-back feather of the crop contract (`crop.feather` in the manifest): alpha times a
     * ramp that falls from 1 to 0 over the outer `feather * S` pixels of each edge, so a crop edge
     * that cuts through skin leaves no seam. Apply it once, before compositing.
     */
    fun feathered(feather: Float = 0.05f): AlphaMatte {
        if (feather <= 0f) return this
        val width = feather * size
        val out = values.copyOf()
        for (y in 0 until size) {
            val dy = min(y + 0.5f, size - 0.5f - y)
            for (x in 0 until size) {
                val dx = min(x + 0.5f, size - 0.5f - x)
                out[y * size + x] *= min(1f, min(dx, dy) / width)
            }
        }
        return AlphaMatte(size, out)
    }

    /** Bilinear sample at model coordinates (pixel centres at integers), clamped at the edges. */
    fun sample(u: Float, v: Float): Float {
        val last = (size - 1).toFloat()
        val uc = min(max(u, 0f), last)
        val vc = min(max(v, 0f), last)
        val x0 = uc.toInt()
        val y0 = vc.toInt()
        val x1 = min(x0 + 1, size - 1)
        val y1 = min(y0 + 1, size - 1)
        val fx = uc - x0
        val fy = vc - y0
        val top = values[y0 * size + x0] * (1 - fx) + values[y0 * size + x1] * fx
        val bottom = values[y1 * size + x0] * (1 - fx) + values[y1 * size + x1] * fx
        return top * (1 - fy) + bottom * fy
    }
}

/**
 * CPU reference compositing, in place on [frame]:
 *
 *     out = alpha * filtered + (1 - alpha) * frame
 *
 * inside the crop only (alpha is 0 outside it), so background, hair and occluders in front of
 * the face (alpha 0) keep the camera's pixels. Pass `alpha.feathered()`. [frame] and [filtered]
 * are ARGB ints (`Bitmap.getPixels`) of one [width] x [height] frame; the alpha byte of [frame] is
 * kept. On a GPU the same thing is `mix(frame, filtered, alpha)` in a fragment shader
 * (docs/mobile.md).
 */
fun composite(frame: IntArray, filtered: IntArray, width: Int, height: Int, alpha: AlphaMatte, region: FaceCrop) {
    require(frame.size == width * height && filtered.size == width * height) { "frame/filtered size mismatch" }
    val r = region.reach()
    val x0 = max(0, floor(region.centreX - r).toInt())
    val y0 = max(0, floor(region.centreY - r).toInt())
    val x1 = min(width, ceil(region.centreX + r).toInt())
    val y1 = min(height, ceil(region.centreY + r).toInt())
    val last = alpha.size - 0.5f
    for (y in y0 until y1) {
        for (x in x0 until x1) {
            val u = region.modelU(x, y)
            val v = region.modelV(x, y)
            if (u < -0.5f || v < -0.5f || u > last || v > last) continue // outside the turned square
            val a = alpha.sample(u, v)
            if (a <= 0f) continue // occluder or background: keep the camera pixel
            val i = y * width + x
            val o = frame[i]
            val f = filtered[i]
            val red = blend(a, (f shr 16) and 0xFF, (o shr 16) and 0xFF)
            val green = blend(a, (f shr 8) and 0xFF, (o shr 8) and 0xFF)
            val blue = blend(a, f and 0xFF, o and 0xFF)
            frame[i] = (o and 0xFF000000.toInt()) or (red shl 16) or (green shl 8) or blue
        }
    }
}

private fun blend(a: Float, filtered: Int, frame: Int): Int =
    (a * filtered + (1 - a) * frame).roundToInt().coerceIn(0, 255)
