// FaceMatFilter.swift
//
// What every FaceMat runtime on iOS shares: the face crop, rendering it to 256 x 256,
// packing RGB floats in the artifact's layout, sampling alpha and compositing a filter.
// FaceMatCoreML.swift and FaceMatExecuTorch.swift build on it.
//
// NOT COMPILED OR RUN in this repository (its CI is Python-only). Written against the
// iOS 17 SDK (Core Video, Core Image, Vision). See docs/mobile.md.

import CoreGraphics
import CoreImage
import CoreVideo
import Foundation

/// The student's contract, as written in the exporter's manifest.json ("input", "outputs").
enum FaceMatSpec {
    /// S: the fixed input side of the default student (H and W are multiples of 64).
    static let size = 256
    /// Input feature / signature name: RGB float32 in [0, 1] (Core ML image variant: 8-bit RGB image).
    static let inputName = "image"
    /// Output feature / signature name: alpha float32 in [0, 1], 1 = face, 0 = background or occluder.
    static let outputName = "alpha"
}

enum FaceMatError: Error, CustomStringConvertible {
    case model(String)
    case output(String)
    case pixelBuffer(String)

    var description: String {
        switch self {
        case .model(let m): return "FaceMat model: \(m)"
        case .output(let m): return "FaceMat output: \(m)"
        case .pixelBuffer(let m): return "FaceMat pixel buffer: \(m)"
        }
    }
}

/// Where element (channel, row, column) of the input tensor lives, in Float elements.
struct TensorStrides {
    let channel: Int
    let row: Int
    let column: Int

    /// 1 x 3 x S x S, planar: all R, then all G, then all B.
    static let nchw = TensorStrides(channel: FaceMatSpec.size * FaceMatSpec.size, row: FaceMatSpec.size, column: 1)
    /// 1 x S x S x 3, interleaved RGB.
    static let nhwc = TensorStrides(channel: 1, row: FaceMatSpec.size * 3, column: 3)
}

// MARK: - Face crop

/// The crop contract (facemat/crop.py; every artifact's manifest.json records it under "crop"):
/// a square of the upright frame, in pixels, origin at the top left, turned by `angle`.
struct FaceCrop {
    /// Centre of the square, frame pixels (pixel edges: the frame spans 0...width).
    var centreX: Double
    var centreY: Double
    var side: Double
    /// Direction of the crop's x axis in the frame, radians, image axes (y down): 0 is upright.
    var angle: Double = 0

    /// The square the model should see around a face detector's box (pixels, origin top left).
    ///
    /// `scale`, `shiftUp` are the manifest's `crop.scale`, `crop.shift_up`: they frame a BlazeFace
    /// box like the training faces (measured by `python -m bench.detect --what framing`).
    /// `rightEye` and `leftEye` (the person's own right and left, frame pixels) turn the crop with
    /// the eye line, as `crop.roll == "eyes"` says; without them the crop stays upright.
    static func around(face box: CGRect, rightEye: CGPoint? = nil, leftEye: CGPoint? = nil,
                       scale: Double = 2.4, shiftUp: Double = 0.06) -> FaceCrop {
        let side = scale * Double(max(box.width, box.height))
        var angle = 0.0
        if let r = rightEye, let l = leftEye {
            angle = atan2(Double(l.y - r.y), Double(l.x - r.x))
        }
        // Move towards the top of the head: (sin, -cos) is "up" in a frame whose y points down.
        return FaceCrop(centreX: Double(box.midX) + shiftUp * side * sin(angle),
                        centreY: Double(box.midY) - shiftUp * side * cos(angle), side: side, angle: angle)
    }

    /// Model coordinates (u, v) of frame pixel (x, y): pixel centres, as a bilinear resize with
    /// align_corners=False maps them. (0, 0) is the centre of the model's top-left pixel; the
    /// crop covers u, v in [-0.5, S - 0.5].
    func modelCoordinates(x: Int, y: Int) -> (u: Double, v: Double) {
        let s = Double(FaceMatSpec.size)
        let k = s / side
        let dx = Double(x) + 0.5 - centreX
        let dy = Double(y) + 0.5 - centreY
        let c = cos(angle)
        let n = sin(angle)
        return (k * (dx * c + dy * n) + s / 2 - 0.5, k * (-dx * n + dy * c) + s / 2 - 0.5)
    }

    /// The integer pixel rectangle of the frame that the (turned) square touches.
    func pixelBounds(frameWidth: Int, frameHeight: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int) {
        let h = side / 2
        let reach = h * (abs(cos(angle)) + abs(sin(angle)))  // half the turned square's bounding box
        let x0 = max(0, Int((centreX - reach).rounded(.down)))
        let y0 = max(0, Int((centreY - reach).rounded(.down)))
        let x1 = min(frameWidth, Int((centreX + reach).rounded(.up)))
        let y1 = min(frameHeight, Int((centreY + reach).rounded(.up)))
        return (x0, y0, x1, y1)
    }
}

/// Vision's `VNFaceObservation.boundingBox` (normalised, origin bottom left) in pixels, origin top left.
func pixelRect(fromVision box: CGRect, frameWidth: Int, frameHeight: Int) -> CGRect {
    let w = CGFloat(frameWidth)
    let h = CGFloat(frameHeight)
    return CGRect(x: box.minX * w, y: (1 - box.maxY) * h, width: box.width * w, height: box.height * h)
}

// MARK: - Crop rendering and input packing

/// A BGRA pixel buffer that Core ML, Core Image and the CPU can all use.
func makeBGRAPixelBuffer(width: Int, height: Int) throws -> CVPixelBuffer {
    let attributes: [CFString: Any] = [
        kCVPixelBufferIOSurfacePropertiesKey: [:] as CFDictionary,
        kCVPixelBufferCGImageCompatibilityKey: true,
        kCVPixelBufferCGBitmapContextCompatibilityKey: true,
    ]
    var buffer: CVPixelBuffer?
    let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA,
                                     attributes as CFDictionary, &buffer)
    guard status == kCVReturnSuccess, let made = buffer else {
        throw FaceMatError.pixelBuffer("CVPixelBufferCreate(\(width)x\(height), 32BGRA) failed: \(status)")
    }
    return made
}

/// Renders the face crop of a camera frame into an S x S BGRA pixel buffer.
final class FaceCropRenderer {
    /// The S x S crop (kCVPixelFormatType_32BGRA), reused every frame. The Core ML image
    /// variant (`coreml-*-image`) takes it as is; the others get it through `packRGB`.
    let crop: CVPixelBuffer
    private let context: CIContext

    init() throws {
        crop = try makeBGRAPixelBuffer(width: FaceMatSpec.size, height: FaceMatSpec.size)
        // No colour management: the model was trained on the 8-bit sRGB values themselves,
        // so the camera's values must reach it unchanged (no linearisation, no conversion).
        context = CIContext(options: [.workingColorSpace: NSNull(), .outputColorSpace: NSNull()])
    }

    /// Crops `frame` (upright, any format Core Image reads, e.g. 32BGRA from
    /// AVCaptureVideoDataOutput) to `region`, turns it upright and scales it to S x S. Where the
    /// square leaves the frame, the frame's edge pixels are repeated.
    ///
    /// Scaling is Core Image's linear sampling. For crops more than twice S, shrink the frame
    /// first with an area or Lanczos filter (CILanczosScaleTransform, vImageScale), as
    /// facemat/crop.py does, or the crop aliases.
    func render(frame: CVPixelBuffer, region: FaceCrop) {
        let s = Double(FaceMatSpec.size)
        let k = s / region.side
        // Core Image's origin is the bottom left: the centre is at (cx, H - cy), and turning the
        // face upright is a rotation by +angle in its y-up axes.
        let height = Double(CVPixelBufferGetHeight(frame))
        let transform = CGAffineTransform(translationX: -region.centreX, y: -(height - region.centreY))
            .concatenating(CGAffineTransform(rotationAngle: region.angle))
            .concatenating(CGAffineTransform(scaleX: k, y: k))
            .concatenating(CGAffineTransform(translationX: s / 2, y: s / 2))
        let image = CIImage(cvPixelBuffer: frame)
            .clampedToExtent()
            .transformed(by: transform)
            .cropped(to: CGRect(x: 0, y: 0, width: s, height: s))
        context.render(image, to: crop, bounds: CGRect(x: 0, y: 0, width: s, height: s), colorSpace: nil)
    }
}

/// Writes an S x S BGRA pixel buffer into `dst` as RGB float32 in [0, 1] (value / 255),
/// at the given strides: `.nchw` for every artifact here except the `-nhwc` ones.
/// Nothing else: normalisation (mean, std) happens inside the model.
func packRGB(_ bgra: CVPixelBuffer, into dst: UnsafeMutablePointer<Float>, strides: TensorStrides) {
    precondition(CVPixelBufferGetPixelFormatType(bgra) == kCVPixelFormatType_32BGRA, "expects 32BGRA")
    let s = FaceMatSpec.size
    precondition(CVPixelBufferGetWidth(bgra) == s && CVPixelBufferGetHeight(bgra) == s, "expects \(s)x\(s)")
    CVPixelBufferLockBaseAddress(bgra, .readOnly)
    defer { CVPixelBufferUnlockBaseAddress(bgra, .readOnly) }
    guard let base = CVPixelBufferGetBaseAddress(bgra) else { return }
    let bytesPerRow = CVPixelBufferGetBytesPerRow(bgra)  // may be padded beyond 4 * S
    let scale: Float = 1.0 / 255.0
    for y in 0..<s {
        let row = base.advanced(by: y * bytesPerRow).assumingMemoryBound(to: UInt8.self)
        for x in 0..<s {
            let p = row + 4 * x  // B, G, R, A
            let o = y * strides.row + x * strides.column
            dst[o] = Float(p[2]) * scale                       // R
            dst[o + strides.channel] = Float(p[1]) * scale     // G
            dst[o + 2 * strides.channel] = Float(p[0]) * scale // B
        }
    }
}

// MARK: - Alpha and compositing

/// The model's alpha: S x S, row-major, float in [0, 1]. NCHW 1x1xSxS and NHWC 1xSxSx1
/// outputs are the same bytes, so one type serves every artifact.
struct AlphaMatte {
    let size: Int
    var values: [Float]

    init(size: Int = FaceMatSpec.size, values: [Float]) throws {
        guard values.count == size * size else {
            throw FaceMatError.output("alpha has \(values.count) values, expected \(size)x\(size)")
        }
        self.size = size
        self.values = values
    }

    /// The paste-back feather of the crop contract (`crop.feather` in the manifest): alpha times
    /// a ramp that falls from 1 to 0 over the outer `feather * S` pixels of each edge, so a crop
    /// edge that cuts through skin leaves no seam. Apply it once, before compositing.
    func feathered(_ feather: Double = 0.05) -> AlphaMatte {
        guard feather > 0 else { return self }
        let width = feather * Double(size)
        var out = values
        for y in 0..<size {
            let dy = min(Double(y) + 0.5, Double(size) - 0.5 - Double(y))
            for x in 0..<size {
                let dx = min(Double(x) + 0.5, Double(size) - 0.5 - Double(x))
                out[y * size + x] *= Float(min(1, min(dx, dy) / width))
            }
        }
        return try! AlphaMatte(size: size, values: out)  // same count: cannot throw
    }

    /// Bilinear sample at model coordinates (pixel centres at integers), clamped at the
    /// edges. Callers only sample inside the crop, where u, v lie in [-0.5, S - 0.5].
    func sample(u: Double, v: Double) -> Float {
        let maxIndex = Double(size - 1)
        let uc = min(max(u, 0), maxIndex)
        let vc = min(max(v, 0), maxIndex)
        let x0 = Int(uc)
        let y0 = Int(vc)
        let x1 = min(x0 + 1, size - 1)
        let y1 = min(y0 + 1, size - 1)
        let fx = Float(uc - Double(x0))
        let fy = Float(vc - Double(y0))
        let top = values[y0 * size + x0] * (1 - fx) + values[y0 * size + x1] * fx
        let bottom = values[y1 * size + x0] * (1 - fx) + values[y1 * size + x1] * fx
        return top * (1 - fy) + bottom * fy
    }
}

/// CPU reference compositing, in place on `frame`:
///
///     out = alpha * filtered + (1 - alpha) * frame
///
/// inside the crop only (alpha is 0 outside it), so background, hair and occluders in
/// front of the face (alpha 0) keep the camera's pixels. Pass `alpha.feathered()`.
/// `frame` and `filtered` are 32BGRA of the same size; the alpha byte is left as it is.
func composite(frame: CVPixelBuffer, filtered: CVPixelBuffer, alpha: AlphaMatte, region: FaceCrop) {
    let width = CVPixelBufferGetWidth(frame)
    let height = CVPixelBufferGetHeight(frame)
    precondition(CVPixelBufferGetWidth(filtered) == width && CVPixelBufferGetHeight(filtered) == height,
                 "frame and filtered differ in size")
    CVPixelBufferLockBaseAddress(frame, [])
    CVPixelBufferLockBaseAddress(filtered, .readOnly)
    defer {
        CVPixelBufferUnlockBaseAddress(filtered, .readOnly)
        CVPixelBufferUnlockBaseAddress(frame, [])
    }
    guard let frameBase = CVPixelBufferGetBaseAddress(frame),
          let filteredBase = CVPixelBufferGetBaseAddress(filtered) else { return }
    let frameStride = CVPixelBufferGetBytesPerRow(frame)
    let filteredStride = CVPixelBufferGetBytesPerRow(filtered)
    let b = region.pixelBounds(frameWidth: width, frameHeight: height)
    guard b.x0 < b.x1, b.y0 < b.y1 else { return }
    for y in b.y0..<b.y1 {
        let out = frameBase.advanced(by: y * frameStride).assumingMemoryBound(to: UInt8.self)
        let fil = filteredBase.advanced(by: y * filteredStride).assumingMemoryBound(to: UInt8.self)
        for x in b.x0..<b.x1 {
            let (u, v) = region.modelCoordinates(x: x, y: y)
            let last = Double(alpha.size) - 0.5
            if u < -0.5 || v < -0.5 || u > last || v > last { continue }  // outside the turned square
            let a = alpha.sample(u: u, v: v)
            if a <= 0 { continue }  // occluder or background: keep the camera pixel
            for c in 0..<3 {        // B, G, R
                let i = 4 * x + c
                let blended = a * Float(fil[i]) + (1 - a) * Float(out[i])
                out[i] = UInt8(min(max(blended.rounded(), 0), 255))
            }
        }
    }
}

/// The same composite on the GPU with Core Image: alpha becomes a one-channel float
/// mask placed over the crop, and CIBlendWithMask takes `filtered` where the mask is 1
/// and `frame` where it is 0 (outside the mask's extent too). Pass `alpha.feathered()`.
///
/// `frameHeight` is the frame's height in pixels (Core Image's origin is the bottom left).
func compositeImage(frame: CIImage, filtered: CIImage, alpha: AlphaMatte, region: FaceCrop,
                    frameHeight: Int) -> CIImage {
    let s = alpha.size
    let data = alpha.values.withUnsafeBufferPointer { Data(buffer: $0) }
    // Row 0 of the data is the top row of the matte, as for a CGImage.
    let mask = CIImage(bitmapData: data, bytesPerRow: s * MemoryLayout<Float>.size,
                       size: CGSize(width: s, height: s), format: .Lf, colorSpace: nil)
    // The inverse of FaceCropRenderer.render's transform: model square back onto the frame.
    let placed = mask.transformed(by: CGAffineTransform(translationX: -Double(s) / 2, y: -Double(s) / 2)
        .concatenating(CGAffineTransform(scaleX: region.side / Double(s), y: region.side / Double(s)))
        .concatenating(CGAffineTransform(rotationAngle: -region.angle))
        .concatenating(CGAffineTransform(translationX: region.centreX,
                                         y: Double(frameHeight) - region.centreY)))
    return filtered.applyingFilter("CIBlendWithMask", parameters: [
        kCIInputBackgroundImageKey: frame,
        kCIInputMaskImageKey: placed,
    ])
}
