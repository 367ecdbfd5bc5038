/**
 * The ONNX graph builder and its reverse-mode autodiff.
 *
 * @module
 */

export * from "./build.ts";
export { type GradientOptions, gradients, unbroadcast } from "./autodiff.ts";
export {
  type ComputeFloat,
  type DType,
  type FloatDType,
  type HostArray,
  isFloat,
  wideFloat,
} from "./dtype.ts";
export {
  apply1,
  describe,
  Graph,
  GraphError,
  type GraphOptions,
  type InitializerData,
  type Node,
  type Value,
} from "./graph.ts";
export { OP_DEFS, type OpAttrs, OPSET, type OpType } from "./ops.ts";
export { MODEL_FORMAT_VERSION, type Outputs, serialize, type SerializeOptions } from "./serialize.ts";
export { type Dim, type Shape, ShapeError } from "./shape.ts";
export { validate } from "./validate.ts";
export { NON_DIFFERENTIABLE, VJP, type VjpRule } from "./vjp.ts";
