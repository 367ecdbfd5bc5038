import assert from "node:assert/strict";
import { add, matmul, transpose } from "../../src/graph/build.ts";
import { Graph, GraphError, type Node } from "../../src/graph/graph.ts";
import { serialize } from "../../src/graph/serialize.ts";
import { validate } from "../../src/graph/validate.ts";

Deno.test("a shape error is reported where it is made, naming the node and its inputs", () => {
  const g = new Graph();
  const x = g.input("x", "float32", ["B", 3]);
  const w = g.initializer("w", [4, 5], new Float32Array(20));
  g.scope("model.layers.0.mlp", () => {
    assert.throws(
      () => matmul(x, w),
      (e: Error) =>
        e instanceof GraphError &&
        e.message.includes("node 'model.layers.0.mlp/MatMul_0' (MatMul): inner dims differ") &&
        e.message.includes("'x' float32 [B,3]") && e.message.includes("'w' float32 [4,5]"),
    );
  });
});

Deno.test("mixing values of two graphs names the value and both graphs", () => {
  const a = new Graph({ name: "a" }), b = new Graph({ name: "b" });
  const x = a.input("x", "float32", [2]);
  const y = b.input("y", "float32", [2]);
  assert.throws(() => add(x, y), /'y' float32 \[2\] belongs to graph 'b', not 'a'/);
});

Deno.test("symbolic dims broadcast only against 1 or themselves", () => {
  const g = new Graph();
  const x = g.input("x", "float32", ["B", 3]);
  const y = g.input("y", "float32", ["T", 3]);
  assert.throws(() => add(x, y), /cannot broadcast shapes \[B,3\] and \[T,3\]/);
});

Deno.test("validate names a node whose input is defined only after it", () => {
  const g = new Graph();
  const x = g.input("x", "float32", [2, 2]);
  const y = transpose(x);
  add(y, y);
  g.nodes.reverse(); // now Add comes before the Transpose that defines its input
  assert.throws(
    () => validate(g, [g.nodes[0].outputs[0]]),
    /node 'Add_0' \(Add\) with inputs 'Transpose_0' float32 \[2,2\], 'Transpose_0' float32 \[2,2\]: input 0 'Transpose_0' is not defined before this node/,
  );
});

Deno.test("validate names a node whose recorded output no longer matches inference", () => {
  const g = new Graph();
  const x = g.input("x", "float32", [2, 3, 4]);
  const y = transpose(x, [2, 0, 1]);
  (g.nodes[0] as Node<"Transpose">).attrs.perm.reverse();
  assert.throws(
    () => validate(g, [y]),
    /node 'Transpose_0' .*output 'Transpose_0' float32 \[4,2,3\] disagrees with inference \(float32 \[3,2,4\]\)/,
  );
});

Deno.test("validate names an initializer whose external byte range has the wrong length", () => {
  const g = new Graph();
  const w = g.initializer("w", [4, 4], { location: "weights.bin", offset: 0, length: 60 }, "float32");
  assert.throws(
    () => serialize(g, { w: add(w, 1) }),
    /initializer 'w' float32 \[4,4\] needs 64 bytes, its data has 60/,
  );
});

Deno.test("a duplicate value name is refused with the name", () => {
  const g = new Graph();
  g.input("model.embed_tokens.weight", "float32", [4, 2]);
  assert.throws(
    () => g.input("model.embed_tokens.weight", "float32", [4, 2]),
    /'model.embed_tokens.weight' is already used/,
  );
});

Deno.test("an output computed by another graph is refused", () => {
  const a = new Graph({ name: "a" }), b = new Graph({ name: "b" });
  a.input("x", "float32", [1]);
  const y = add(b.input("y", "float32", [1]), 1);
  assert.throws(
    () => serialize(a, { y }),
    /graph output 'Add_0' float32 \[1\] is not computed by this graph/,
  );
});
