/**
 * Checks a graph before it is serialized: every name defined once, every input defined before use and in this
 * graph, every output computed, initializer sizes, and each node's recorded outputs equal to a fresh inference.
 * Errors name the node and its inputs.
 *
 * @module
 */

import { DTYPE_BYTES } from "./dtype.ts";
import { describe, type Graph, GraphError, type Node, type Value } from "./graph.ts";
import { OP_DEFS, type OpType, type ValueInfo } from "./ops.ts";
import { formatShape, numel, sameShape, ShapeError } from "./shape.ts";

function where(node: Node): string {
  return `node '${node.name}' (${node.op}) with inputs ${node.inputs.map(describe).join(", ")}`;
}

/** The nodes needed to compute `outputs`, in graph order. */
export function liveNodes(g: Graph, outputs: readonly Value[]): Node[] {
  const needed = new Set<Value>(outputs);
  const keep: Node[] = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const node = g.nodes[i];
    if (!node.outputs.some((y) => needed.has(y))) continue;
    keep.push(node);
    for (const v of node.inputs) needed.add(v);
  }
  return keep.reverse();
}

/** Throws a {@link GraphError} naming the first problem found in the part of `g` that computes `outputs`. */
export function validate(
  g: Graph,
  outputs: readonly Value[],
  nodes: readonly Node[] = liveNodes(g, outputs),
): void {
  const defined = new Set<Value>();
  const names = new Set<string>();
  const define = (v: Value, what: string) => {
    if (v.graph !== g) throw new GraphError(`${what} ${describe(v)} belongs to graph '${v.graph.name}'`);
    if (names.has(v.name)) {
      throw new GraphError(`${what} ${describe(v)}: the name '${v.name}' is defined twice`);
    }
    names.add(v.name);
    defined.add(v);
  };
  for (const v of g.inputs) define(v, "input");
  for (const v of g.initializers) {
    define(v, "initializer");
    const init = v.init!;
    const bytes = numel(v.shape) * DTYPE_BYTES[v.dtype];
    const have = init.kind === "inline" ? init.data.byteLength : init.length;
    if (have !== bytes) {
      throw new GraphError(`initializer ${describe(v)} needs ${bytes} bytes, its data has ${have}`);
    }
  }
  for (const node of nodes) {
    node.inputs.forEach((v, i) => {
      if (!defined.has(v)) {
        throw new GraphError(
          `${where(node)}: input ${i} '${v.name}' is not defined before this node in this graph`,
        );
      }
    });
    let infos: ValueInfo[];
    try {
      infos = (OP_DEFS[node.op] as (typeof OP_DEFS)[OpType]).infer(node.inputs, node.attrs as never);
    } catch (e) {
      if (e instanceof ShapeError) throw new GraphError(`${where(node)}: ${e.message}`);
      throw e;
    }
    if (infos.length !== node.outputs.length) {
      throw new GraphError(
        `${where(node)}: has ${node.outputs.length} outputs, inference gives ${infos.length}`,
      );
    }
    node.outputs.forEach((y, j) => {
      const info = infos[j];
      if (y.dtype !== info.dtype || !sameShape(y.shape, info.shape)) {
        throw new GraphError(
          `${where(node)}: output ${describe(y)} disagrees with inference (${info.dtype} ${
            formatShape(info.shape)
          })`,
        );
      }
      define(y, `output ${j} of node '${node.name}'`);
    });
  }
  for (const v of outputs) {
    if (!defined.has(v)) throw new GraphError(`graph output ${describe(v)} is not computed by this graph`);
  }
}
