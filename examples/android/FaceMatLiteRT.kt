// FaceMatLiteRT.kt
//
// Runs a FaceMat LiteRT (TFLite) artifact on Android:
//   tflite-fp32, tflite-fp16, tflite-int8         input "image" 1 x 3 x 256 x 256 (NCHW)
//   tflite-fp32-nhwc, tflite-int8-nhwc            input "image" 1 x 256 x 256 x 3 (NHWC, no TRANSPOSE)
// float32 RGB in [0, 1] for all of them (int8 files keep float32 I/O: quantization is inside);
// output "alpha" 1 x 1 x 256 x 256 or 1 x 256 x 256 x 1, float32 in [0, 1]; signature
// "serving_default".
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the LiteRT
// Interpreter API: implementation("com.google.ai.edge.litert:litert:<version>") and, for the
// GPU delegate, "com.google.ai.edge.litert:litert-gpu" (Java package names stay
// org.tensorflow.lite.*). See docs/mobile.md.
//
// Per frame, on one background thread:
//
//     val region = FaceCrop.around(face.boundingBox.toRectF())
//     renderer.render(uprightFrame, region)
//     val alpha = matting.predict(renderer)
//     composite(framePixels, filteredPixels, width, height, alpha, region)

package com.example.facemat

import android.content.Context
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate

class FaceMatLiteRT(
    context: Context,
    assetName: String,
    threads: Int = 2,
    useGpu: Boolean = false,
) : AutoCloseable {
    private val gpuDelegate: GpuDelegate?
    private val interpreter: Interpreter

    /** NCHW or NHWC, read from the model's input tensor. */
    val layout: TensorLayout

    private val s = FaceMatSpec.SIZE
    // Direct, native-order buffers, allocated once: 3*S*S and S*S float32.
    private val input: ByteBuffer = ByteBuffer.allocateDirect(4 * 3 * s * s).order(ByteOrder.nativeOrder())
    private val output: ByteBuffer = ByteBuffer.allocateDirect(4 * s * s).order(ByteOrder.nativeOrder())
    private val alphaValues = FloatArray(s * s)

    init {
        // XNNPACK (CPU) is on by default; threads: compare 1 and all cores with bench.ingest.
        val options = Interpreter.Options().setNumThreads(threads)
        var delegate: GpuDelegate? = null
        if (useGpu) {
            // Not tried on these models in this project: benchmark against XNNPACK first.
            CompatibilityList().use { list ->
                if (list.isDelegateSupportedOnThisDevice) {
                    val gpu = GpuDelegate(list.bestOptionsForThisDevice)
                    options.addDelegate(gpu)
                    delegate = gpu
                }
            }
        }
        gpuDelegate = delegate
        interpreter = Interpreter(loadModel(context, assetName), options)

        val inputTensor = interpreter.getInputTensor(0)
        val outputTensor = interpreter.getOutputTensor(0)
        require(inputTensor.dataType() == DataType.FLOAT32 && outputTensor.dataType() == DataType.FLOAT32) {
            "$assetName: expected float32 I/O (every FaceMat artifact has it, int8 included), got " +
                "${inputTensor.dataType()} -> ${outputTensor.dataType()}"
        }
        layout = TensorLayout.ofInputShape(inputTensor.shape())
        require(outputTensor.shape().map { it.toLong() } == layout.outputShape.toList()) {
            "$assetName: output shape ${outputTensor.shape().contentToString()}, " +
                "expected ${layout.outputShape.contentToString()}"
        }
    }

    /** Runs the model on the renderer's current crop and returns alpha (S x S, row-major). */
    fun predict(crop: FaceCropRenderer): AlphaMatte {
        crop.packRGB(input.asFloatBuffer(), layout)
        input.rewind()
        output.rewind()
        interpreter.runSignature(
            mapOf<String, Any>(FaceMatSpec.INPUT_NAME to input),
            mapOf<String, Any>(FaceMatSpec.OUTPUT_NAME to output),
            FaceMatSpec.SIGNATURE,
        )
        output.rewind()
        output.asFloatBuffer().get(alphaValues) // NCHW and NHWC: the same S x S order
        return AlphaMatte(s, alphaValues.copyOf())
    }

    override fun close() {
        interpreter.close()
        gpuDelegate?.close()
    }

    private companion object {
        /**
         * Memory-maps a model from assets/. The asset must be stored uncompressed
         * (android { androidResources { noCompress += "tflite" } } if your build compresses it).
         */
        fun loadModel(context: Context, assetName: String): MappedByteBuffer =
            context.assets.openFd(assetName).use { fd ->
                FileInputStream(fd.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
    }
}
