// FaceMatExecuTorch.kt
//
// Runs a FaceMat ExecuTorch program on Android: executorch-xnnpack-fp32 or
// executorch-xnnpack-int8 (the Core ML .pte files are Apple-only).
// Method "forward": one input tensor, 1 x 3 x 256 x 256 float32 RGB in [0, 1] (NCHW; an export
// with --layout NHWC takes 1 x 256 x 256 x 3), one output tensor, alpha 1 x 1 x 256 x 256
// (NHWC: 1 x 256 x 256 x 1) float32 in [0, 1]. The int8 program keeps float32 I/O.
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the ExecuTorch
// Java API (implementation("org.pytorch:executorch-android:<version>"), the version that exported
// the file: manifest "runtime": {"executorch": ...}); that API is marked experimental upstream.
// See docs/mobile.md.

package com.example.facemat

import android.content.Context
import java.io.File
import java.nio.FloatBuffer
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

class FaceMatExecuTorch(modelPath: String, val layout: TensorLayout = TensorLayout.NCHW) {
    private val module: Module = Module.load(modelPath)

    // A direct buffer is not copied by Tensor.fromBlob: refill it each frame, reuse the tensor.
    private val inputData: FloatBuffer = Tensor.allocateFloatBuffer(3 * FaceMatSpec.SIZE * FaceMatSpec.SIZE)
    private val inputTensor: Tensor = Tensor.fromBlob(inputData, layout.inputShape)

    init {
        // Loads and prepares "forward" now rather than on the first frame; call the constructor
        // off the main thread. 0 is ExecuTorch's Error::Ok.
        val status = module.loadMethod("forward")
        check(status == 0) { "$modelPath: loading method forward failed with ExecuTorch error 0x${status.toString(16)}" }
    }

    /** Runs the program on the renderer's current crop and returns alpha (S x S, row-major). */
    fun predict(crop: FaceCropRenderer): AlphaMatte {
        crop.packRGB(inputData, layout)
        val outputs = module.forward(EValue.from(inputTensor))
        check(outputs.isNotEmpty()) { "forward returned nothing (see Module.readLogBuffer())" }
        val alpha = outputs[0].toTensor()
        check(alpha.shape().contentEquals(layout.outputShape)) {
            "alpha shape ${alpha.shape().contentToString()}, expected ${layout.outputShape.contentToString()}"
        }
        // 1x1xSxS and 1xSxSx1 hold the same row-major S x S values.
        return AlphaMatte(FaceMatSpec.SIZE, alpha.dataAsFloatArray)
    }

    fun close() = module.destroy()

    companion object {
        /** Module.load takes a file path: copy the .pte (not the .bpte) out of assets/ once. */
        fun copyAsset(context: Context, assetName: String): String {
            val target = File(context.filesDir, assetName)
            if (!target.exists()) {
                context.assets.open(assetName).use { source ->
                    target.outputStream().use { sink -> source.copyTo(sink) }
                }
            }
            return target.absolutePath
        }
    }
}
