// FaceMatCoreML.swift
//
// Runs a FaceMat Core ML artifact: coreml-fp32, coreml-fp16, coreml-w8, coreml-w8a8
// (tensor input "image", 1 x 3 x 256 x 256 float32 RGB in [0, 1], NCHW) or a
// `--coreml-input image` variant such as coreml-fp32-image (input "image" is a 256 x 256
// RGB image: pass the crop's CVPixelBuffer; Core ML scales 0-255 to [0, 1]).
// Output "alpha": 1 x 1 x 256 x 256 float32 in [0, 1].
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the
// iOS 17 SDK. See docs/mobile.md.
//
// Per frame (on a serial queue, not the main thread):
//
//     let box = pixelRect(fromVision: face.boundingBox, frameWidth: w, frameHeight: h)
//     let region = FaceCrop.around(face: box)
//     renderer.render(frame: pixelBuffer, region: region)
//     let alpha = try matting.predict(crop: renderer.crop)
//     composite(frame: pixelBuffer, filtered: filteredBuffer, alpha: alpha, region: region)

import CoreML
import CoreVideo
import Foundation

final class FaceMatCoreML {
    enum InputKind {
        case tensor  // MLMultiArray 1 x 3 x S x S float32, RGB / 255, planar
        case image   // CVPixelBuffer S x S, 32BGRA; Core ML reorders and scales
    }

    let model: MLModel
    let inputKind: InputKind
    /// The tensor input, allocated once and refilled every frame (tensor variants only).
    private let inputArray: MLMultiArray?

    /// Loads a compiled model.
    ///
    /// - Parameters:
    ///   - compiledModelURL: a `.mlmodelc`. Xcode compiles an `.mlpackage` added to the app
    ///     target into `Bundle.main.url(forResource: "coreml-fp16", withExtension: "mlmodelc")`;
    ///     a package obtained at run time goes through `compile(packageAt:)` first.
    ///   - computeUnits: `.all` (default) or `.cpuAndNeuralEngine` for fp16 / w8 / w8a8.
    ///     coreml-fp32 computes in FP32, which the Neural Engine does not run.
    init(compiledModelURL: URL, computeUnits: MLComputeUnits = .all) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        let loaded = try MLModel(contentsOf: compiledModelURL, configuration: configuration)

        let s = FaceMatSpec.size
        let description = loaded.modelDescription
        guard let input = description.inputDescriptionsByName[FaceMatSpec.inputName] else {
            throw FaceMatError.model("no input named \(FaceMatSpec.inputName); found "
                                     + "\(Array(description.inputDescriptionsByName.keys))")
        }
        switch input.type {
        case .multiArray:
            guard let c = input.multiArrayConstraint, c.shape.map(\.intValue) == [1, 3, s, s],
                  c.dataType == .float32 else {
                throw FaceMatError.model("input \(FaceMatSpec.inputName) is not a 1x3x\(s)x\(s) float32 array")
            }
            inputKind = .tensor
            inputArray = try MLMultiArray(shape: [1, 3, s, s].map { NSNumber(value: $0) }, dataType: .float32)
        case .image:
            guard let c = input.imageConstraint, c.pixelsWide == s, c.pixelsHigh == s else {
                throw FaceMatError.model("input \(FaceMatSpec.inputName) is not a \(s)x\(s) image")
            }
            inputKind = .image
            inputArray = nil
        default:
            throw FaceMatError.model("input \(FaceMatSpec.inputName) has unexpected type \(input.type.rawValue)")
        }
        guard let output = description.outputDescriptionsByName[FaceMatSpec.outputName],
              output.type == .multiArray else {
            throw FaceMatError.model("no multi-array output named \(FaceMatSpec.outputName)")
        }
        model = loaded
    }

    /// Compiles an `.mlpackage` on the device (e.g. one downloaded after install) and
    /// returns the `.mlmodelc` location. Move it somewhere permanent to avoid recompiling:
    /// the returned folder is temporary.
    static func compile(packageAt url: URL) async throws -> URL {
        try await MLModel.compileModel(at: url)
    }

    /// Runs the model on one S x S 32BGRA crop (FaceCropRenderer.crop) and returns alpha.
    func predict(crop: CVPixelBuffer) throws -> AlphaMatte {
        let value: MLFeatureValue
        switch inputKind {
        case .image:
            value = MLFeatureValue(pixelBuffer: crop)
        case .tensor:
            guard let array = inputArray else { throw FaceMatError.model("tensor input not allocated") }
            array.withUnsafeMutableBufferPointer(ofType: Float.self) { buffer, strides in
                // strides are in elements for dimensions (N, C, H, W)
                packRGB(crop, into: buffer.baseAddress!,
                        strides: TensorStrides(channel: strides[1], row: strides[2], column: strides[3]))
            }
            value = MLFeatureValue(multiArray: array)
        }
        let features = try MLDictionaryFeatureProvider(dictionary: [FaceMatSpec.inputName: value])
        let result = try model.prediction(from: features)
        guard let alpha = result.featureValue(for: FaceMatSpec.outputName)?.multiArrayValue else {
            throw FaceMatError.output("no \(FaceMatSpec.outputName) in the prediction")
        }
        return try Self.matte(from: alpha)
    }

    /// Copies a 1 x 1 x S x S float32 MLMultiArray into a row-major S x S matte, honouring
    /// its strides (Core ML may pad rows).
    static func matte(from array: MLMultiArray) throws -> AlphaMatte {
        let s = FaceMatSpec.size
        guard array.shape.map(\.intValue) == [1, 1, s, s] else {
            throw FaceMatError.output("alpha shape \(array.shape), expected [1, 1, \(s), \(s)]")
        }
        guard array.dataType == .float32 else {
            // Every FaceMat Core ML artifact declares a float32 output (manifest: outputs[0].dtype).
            throw FaceMatError.output("alpha data type \(array.dataType.rawValue), expected float32")
        }
        var values = [Float](repeating: 0, count: s * s)
        array.withUnsafeBufferPointer(ofType: Float.self) { buffer, strides in
            for y in 0..<s {
                for x in 0..<s {
                    values[y * s + x] = buffer[y * strides[2] + x * strides[3]]
                }
            }
        }
        return try AlphaMatte(size: s, values: values)
    }
}
