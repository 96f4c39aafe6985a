// FaceMatExecuTorch.swift
//
// Runs a FaceMat ExecuTorch program on iOS:
//   executorch-xnnpack-fp32, executorch-xnnpack-int8  (CPU; link backend_xnnpack)
//   executorch-coreml-fp16,  executorch-coreml-int8   (Core ML delegate; link backend_coreml)
// Method "forward": one input tensor, 1 x 3 x 256 x 256 float32 RGB in [0, 1] (NCHW;
// an export with --layout NHWC takes 1 x 256 x 256 x 3), one output tensor, alpha
// 1 x 1 x 256 x 256 (NHWC: 1 x 256 x 256 x 1) float32 in [0, 1]. The int8 programs keep
// float32 I/O: quantization is inside the delegate.
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the
// ExecuTorch Swift API (package products `executorch` + a backend, iOS 17+, linker flag
// -all_load so that the backend registers); that API is marked experimental upstream.
// Use the ExecuTorch version that exported the file (manifest "runtime": {"executorch": ...}).
// See docs/mobile.md.

import CoreVideo
import ExecuTorch
import Foundation

final class FaceMatExecuTorch {
    enum Layout {
        case nchw
        case nhwc

        var inputShape: [Int] {
            let s = FaceMatSpec.size
            return self == .nchw ? [1, 3, s, s] : [1, s, s, 3]
        }

        var outputShape: [Int] {
            let s = FaceMatSpec.size
            return self == .nchw ? [1, 1, s, s] : [1, s, s, 1]
        }

        var strides: TensorStrides { self == .nchw ? .nchw : .nhwc }
    }

    let layout: Layout
    private let module: Module  // not thread-safe: call predict from one serial queue
    private var input: [Float]

    /// Loads the program and prepares "forward" (for the Core ML delegate this builds the
    /// Core ML model inside it, so the first load is slow: do it off the main thread).
    ///
    /// - Parameters:
    ///   - modelPath: the `.pte` (not the `.bpte`, which only carries test cases), e.g.
    ///     `Bundle.main.path(forResource: "executorch-xnnpack-int8", ofType: "pte")!`.
    ///   - layout: `.nchw` for every `.pte` in runs/final.
    init(modelPath: String, layout: Layout = .nchw) throws {
        let program = Module(filePath: modelPath)
        try program.load("forward")
        self.layout = layout
        module = program
        input = [Float](repeating: 0, count: 3 * FaceMatSpec.size * FaceMatSpec.size)
    }

    /// Runs the program on one S x S 32BGRA crop (FaceCropRenderer.crop) and returns alpha.
    func predict(crop: CVPixelBuffer) throws -> AlphaMatte {
        let strides = layout.strides
        input.withUnsafeMutableBufferPointer { buffer in
            packRGB(crop, into: buffer.baseAddress!, strides: strides)
        }
        // Copies `input` into the tensor. Tensor<Float>(bytesNoCopy:shape:) avoids the copy
        // when the buffer is guaranteed to outlive the call.
        let tensor = Tensor<Float>(input, shape: layout.inputShape)
        let outputs = try module.forward(tensor)
        guard let alpha: Tensor<Float> = outputs.first?.tensor() else {
            throw FaceMatError.output("forward returned no float tensor")
        }
        guard alpha.shape == layout.outputShape else {
            throw FaceMatError.output("alpha shape \(alpha.shape), expected \(layout.outputShape)")
        }
        // 1x1xSxS and 1xSxSx1 hold the same row-major S x S values.
        return try AlphaMatte(size: FaceMatSpec.size, values: alpha.scalars())
    }
}
