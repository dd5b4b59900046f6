#!/usr/bin/env node
// Run a TensorFlow.js graph model with the pure-JS CPU backend (the reference for Sightline's
// TFJS -> ONNX conversion, sightline.vision.backends.tfjs).
//
// usage: node check.js MODEL_JSON INPUT_F32 N OUTPUT_NODE OUT_F32
//   INPUT_F32: raw little-endian float32, N x 224 x 224 x 3 (NHWC, the model's input layout);
//   OUTPUT_NODE: the graph node to fetch (e.g. global_pooling/Mean); OUT_F32: raw float32 written.
// Prints one JSON line: {"backend", "tfjs_version", "shape"}.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelJson, inputPath, nStr, outputNode, outPath] = process.argv.slice(2);
  if (!outPath) {
    console.error('usage: node check.js MODEL_JSON INPUT_F32 N OUTPUT_NODE OUT_F32');
    process.exit(2);
  }
  await tf.setBackend('cpu');
  const doc = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const specs = [];
  const shards = [];
  for (const group of doc.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) shards.push(fs.readFileSync(path.join(path.dirname(modelJson), p)));
  }
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(
    tf.io.fromMemory({ modelTopology: doc.modelTopology, weightSpecs: specs, weightData, format: doc.format }),
  );
  const n = parseInt(nStr, 10);
  const buf = fs.readFileSync(inputPath);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const shape = model.inputs[0].shape.map((d, i) => (i === 0 ? n : d));
  const x = tf.tensor(data, shape, 'float32');
  const y = model.execute(x, outputNode);
  const out = await y.data();
  fs.writeFileSync(outPath, Buffer.from(new Float32Array(out).buffer));
  console.log(JSON.stringify({ backend: tf.getBackend(), tfjs_version: tf.version.tfjs, shape: y.shape }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
