/**
 * The graph being built: values, nodes, initializers and names.
 *
 * Builder code is written once and emitted in float32, float64 or float16 by choosing the graph's `float` type
 * (with float16, what mixed precision keeps wide is in the graph's `wide` type, float32). Nodes are
 * appended in a valid topological order. Names are deterministic: a node is `<scope>/<Op>_<k>` with `k` counted
 * per scope, and its outputs take the node's name (`:j` added for the j-th of several).
 *
 * @module
 */

import { type ComputeFloat, type DType, type HostArray, toHostArray, wideFloat } from "./dtype.ts";
import { OP_DEFS, type OpAttrs, type OpType } from "./ops.ts";
import { atoms, formatShape, numel, type Shape, ShapeError } from "./shape.ts";

/** Where an initializer's bytes live: inline, or a byte range of a file next to the model. */
export type InitializerData =
  | { kind: "inline"; data: HostArray }
  | { kind: "external"; location: string; offset: number; length: number };

/** A named tensor in a graph. */
export interface Value {
  readonly graph: Graph;
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  /** The node that computes it; absent for inputs and initializers. */
  readonly producer?: Node;
  /** Set for initializers. */
  readonly init?: InitializerData;
}

/** One op application. */
export interface Node<K extends OpType = OpType> {
  readonly op: K;
  readonly name: string;
  readonly inputs: readonly Value[];
  readonly outputs: readonly Value[];
  readonly attrs: OpAttrs[K];
}

/** Thrown when a graph is built or validated wrongly; the message names the node and its inputs. */
export class GraphError extends Error {
  override name = "GraphError";
}

/** Describes a value for error messages: `'x' float32 [B,T,64]`. */
export function describe(v: Value): string {
  return `'${v.name}' ${v.dtype} ${formatShape(v.shape)}`;
}

/** Options of a new graph. */
export interface GraphOptions {
  /** Compute dtype of float values built by this code (default float32). */
  float?: ComputeFloat;
  /** The graph's name in the serialized model. */
  name?: string;
  /**
   * Activation checkpointing (default false): the nodes built inside {@link Graph.checkpoint} form segments
   * whose forward the autodiff driver rebuilds inside the backward, so only each segment's inputs are kept.
   */
  recompute?: boolean;
}

/** A run of nodes `[start, end)` of a graph built inside {@link Graph.checkpoint}. */
export interface Segment {
  readonly start: number;
  readonly end: number;
}

/** A graph under construction. */
export class Graph {
  /** The compute type: activations, and numbers given to the builder functions. */
  readonly float: ComputeFloat;
  /**
   * The type kept wide under mixed precision: trainable parameters, optimizer state, normalisation statistics,
   * softmax and losses. float32 when `float` is float16, else `float` itself.
   */
  readonly wide: "float32" | "float64";
  readonly name: string;
  /** Whether {@link Graph.checkpoint} marks segments (the graph's `recompute` option). */
  readonly recompute: boolean;
  /** Segments marked by {@link Graph.checkpoint}, in build order. */
  readonly segments: Segment[] = [];
  readonly inputs: Value[] = [];
  readonly initializers: Value[] = [];
  readonly nodes: Node[] = [];
  readonly #names = new Set<string>();
  readonly #counters = new Map<string, number>();
  readonly #scope: string[] = [];
  readonly #constants = new Map<string, Value>();
  /** For each symbolic dim atom, the first value that has it and on which axis. */
  readonly #symbols = new Map<string, { value: Value; axis: number }>();
  readonly #dimTensors = new Map<string, Value>();

  constructor(options: GraphOptions = {}) {
    this.float = options.float ?? "float32";
    if (!["float32", "float64", "float16"].includes(this.float)) {
      throw new GraphError(`a graph computes in float32, float64 or float16, got '${this.float}'`);
    }
    this.wide = wideFloat(this.float);
    this.name = options.name ?? "flexora";
    this.recompute = options.recompute ?? false;
  }

  /**
   * Runs `build`; with the graph's `recompute` option, the nodes it appends form a segment that backward
   * rebuilds from the segment's inputs instead of keeping its values (a layer of a model, typically).
   */
  checkpoint<T>(build: () => T): T {
    const start = this.nodes.length;
    const result = build();
    if (this.recompute && this.nodes.length > start) this.segments.push({ start, end: this.nodes.length });
    return result;
  }

  /** The current scope prefix, e.g. `model.layers.3.self_attn`. */
  get scopeName(): string {
    return this.#scope.join(".");
  }

  /** Runs `build` with `name` appended to the scope (scopes join with `.` like Hugging Face module paths). */
  scope<T>(name: string, build: () => T): T {
    this.#scope.push(name);
    try {
      return build();
    } finally {
      this.#scope.pop();
    }
  }

  #claim(name: string): string {
    if (this.#names.has(name)) {
      throw new GraphError(`value name '${name}' is already used in graph '${this.name}'`);
    }
    this.#names.add(name);
    return name;
  }

  #register(value: Value): Value {
    value.shape.forEach((d, axis) => {
      if (typeof d !== "string") return;
      if (!this.#symbols.has(d)) this.#symbols.set(d, { value, axis });
      for (const a of atoms(d)) if (!this.#symbols.has(a)) this.#symbols.set(a, { value, axis });
    });
    return value;
  }

  /** Declares a graph input. Symbolic dims (strings) are bound by the tensors fed at run time. */
  input(name: string, dtype: DType, shape: Shape): Value {
    const v: Value = { graph: this, name: this.#claim(name), dtype, shape };
    this.inputs.push(v);
    return this.#register(v);
  }

  /**
   * Declares an initializer. Numbers are stored in `dtype` (default: the graph's float type); external data
   * points at `length` bytes at `offset` of `location`, a file beside the model, stored as `dtype`.
   */
  initializer(
    name: string,
    shape: Shape,
    data: ArrayLike<number> | HostArray | { location: string; offset: number; length: number },
    dtype: DType = this.float,
  ): Value {
    let init: InitializerData;
    if ("location" in data) {
      init = { kind: "external", ...data };
    } else {
      const host = isHostArray(data) ? data : toHostArray(dtype, data);
      if (host.length !== numel(shape)) {
        throw new GraphError(
          `initializer '${name}' has ${host.length} elements, shape ${formatShape(shape)}`,
        );
      }
      init = { kind: "inline", data: host };
    }
    const v: Value = { graph: this, name: this.#claim(name), dtype, shape, init };
    this.initializers.push(v);
    return v;
  }

  /** A constant tensor, deduplicated by content. */
  constant(values: ArrayLike<number>, shape: Shape = [values.length], dtype: DType = this.float): Value {
    const key = `${dtype}${formatShape(shape)}${Array.from(values).join(",")}`;
    let v = this.#constants.get(key);
    if (!v) {
      v = this.initializer(this.#fresh("const"), shape, values, dtype);
      this.#constants.set(key, v);
    }
    return v;
  }

  /** A scalar constant in `dtype` (default: the graph's float type). */
  scalar(value: number, dtype: DType = this.float): Value {
    return this.constant([value], [], dtype);
  }

  #fresh(base: string): string {
    const scope = this.scopeName;
    const key = `${scope}/${base}`;
    for (;;) {
      const k = this.#counters.get(key) ?? 0;
      this.#counters.set(key, k + 1);
      const name = scope ? `${scope}/${base}_${k}` : `${base}_${k}`;
      if (!this.#names.has(name)) return name;
    }
  }

  /** Appends a node; infers its outputs, or throws naming the node and its inputs. */
  apply<K extends OpType>(op: K, inputs: readonly Value[], attrs: OpAttrs[K], nameHint?: string): Value[] {
    const name = this.#fresh(nameHint ?? op);
    for (const [i, v] of inputs.entries()) {
      if (v.graph !== this) {
        throw new GraphError(
          `node '${name}' (${op}): input ${i} ${describe(v)} belongs to graph '${v.graph.name}'`,
        );
      }
    }
    let infos;
    try {
      infos = OP_DEFS[op].infer(inputs, attrs);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      throw new GraphError(`node '${name}' (${op}): ${e.message}; inputs ${inputs.map(describe).join(", ")}`);
    }
    const outputs: Value[] = [];
    const node: Node<K> = { op, name, inputs, outputs, attrs };
    infos.forEach((info, j) => {
      const vname = this.#claim(infos.length === 1 ? name : `${name}:${j}`);
      outputs.push(this.#register({ graph: this, name: vname, ...info, producer: node as Node }));
    });
    this.nodes.push(node as Node);
    return outputs;
  }

  /**
   * A 1-D int64 tensor holding `dims` at run time: numbers become constants, symbols are read from the shape of
   * the first value that carried them.
   */
  shapeTensor(dims: Shape): Value {
    if (dims.every((d) => typeof d === "number")) {
      return this.constant(dims as number[], [dims.length], "int64");
    }
    const parts: Value[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length) parts.push(this.constant(run, [run.length], "int64"));
      run = [];
    };
    for (const d of dims) {
      if (typeof d === "number") run.push(d);
      else {
        flush();
        parts.push(this.#dimTensor(d));
      }
    }
    flush();
    return parts.length === 1 ? parts[0] : this.apply("Concat", parts, { axis: 0 })[0];
  }

  #dimTensor(dim: string): Value {
    let t = this.#dimTensors.get(dim);
    if (t) return t;
    const source = this.#symbols.get(dim);
    if (source) {
      const shape = this.apply("Shape", [source.value], {})[0];
      t = this.apply("Gather", [shape, this.constant([source.axis], [1], "int64")], { axis: 0 })[0];
    } else if (atoms(dim).length > 1) {
      // A product such as B*T whose factors come from different values.
      t = atoms(dim).map((a) =>
        /^\d+$/.test(a) ? this.constant([Number(a)], [1], "int64") : this.#dimTensor(a)
      )
        .reduce((acc, x) => this.apply("Mul", [acc, x], {})[0]);
    } else {
      throw new GraphError(`graph '${this.name}' has no value with symbolic dim '${dim}'`);
    }
    this.#dimTensors.set(dim, t);
    return t;
  }
}

function isHostArray(x: unknown): x is HostArray {
  return ArrayBuffer.isView(x);
}

/** Shorthand for the single output of {@link Graph.apply}. */
export function apply1<K extends OpType>(
  g: Graph,
  op: K,
  inputs: readonly Value[],
  attrs: OpAttrs[K],
): Value {
  return g.apply(op, inputs, attrs)[0];
}

/** Checks that every value comes from one graph, and returns it. */
export function graphOf(...values: Value[]): Graph {
  const g = values[0].graph;
  for (const v of values) {
    if (v.graph !== g) {
      throw new GraphError(`${describe(v)} belongs to graph '${v.graph.name}', not '${g.name}'`);
    }
  }
  return g;
}
