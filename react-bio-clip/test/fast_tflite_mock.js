'use strict';
// MOCK OF THE NATIVE MODULE, at the outermost edge: react-native-fast-tflite's TensorflowModel
// (inputs / outputs / runSync / run / dispose) implemented on a REAL TFLite runtime from npm,
// @litertjs/core (LiteRT's WebAssembly build, XNNPACK on CPU), because the Nitro native module
// cannot run in Node. Everything above this object (react-bio-clip/tflite's TfliteEmbedder,
// BioClipModel's preprocessing and scoring) is the package's own code.
//
// LiteRT.js is written for browsers: its loader injects a <script> tag or calls importScripts.
// In Node we give it importScripts (vm.runInThisContext of the Emscripten loader, which itself
// supports Node) and use the "compat" wasm build (Node 20's V8 lacks relaxed SIMD).
const fs = require('fs');
const path = require('path');
const vm = require('vm');

let liteRt = null;

async function loadLiteRtInNode() {
  if (liteRt) return liteRt;
  const mod = await import('@litertjs/core');
  const wasmDir = path.join(path.dirname(require.resolve('@litertjs/core/package.json')), 'wasm');
  // Both globals exist only while LiteRT loads: with them, other Emscripten modules (TF.js's wasm
  // backend) would take Node for a web worker.
  const hadSelf = 'self' in globalThis;
  if (!hadSelf) globalThis.self = globalThis;
  globalThis.importScripts = (url) => {
    const file = String(url).startsWith('file:') ? new URL(url).pathname : String(url);
    // The Emscripten loader, wrapped so it sees CommonJS's __dirname / require (it reads the
    // .wasm next to itself), and hands its factory to LiteRT's loader as a <script> would.
    const wrapped = `(function (__dirname, __filename, require) {\n${fs.readFileSync(file, 'utf8')}\n` +
        ';globalThis.ModuleFactory = ModuleFactory;\n})';
    vm.runInThisContext(wrapped, {filename: file})(path.dirname(file), file, require);
  };
  try {
    await mod.loadLiteRt(path.join(wasmDir, 'litert_wasm_compat_internal.js'));
  } finally {
    delete globalThis.importScripts;
    if (!hadSelf) delete globalThis.self;
  }
  liteRt = mod;
  return mod;
}

/** TFLite dtype names as fast-tflite reports them. */
function dataType(dtype) {
  return String(dtype);
}

/**
 * A fast-tflite TensorflowModel for `.tflite` bytes (what fast-tflite's loadTensorflowModel
 * resolves to on a phone).
 */
async function loadTensorflowModel(bytes) {
  const rt = await loadLiteRtInNode();
  const compiled = await rt.loadAndCompile(new Uint8Array(bytes), {accelerator: 'wasm', cpuOptions: {numThreads: 1}});
  const runner = compiled.signatures[Object.keys(compiled.signatures)[0]] ?? compiled;
  const describe = (d) => ({name: d.name, dataType: dataType(d.dtype), shape: Array.from(d.shape)});
  const inputs = compiled.getInputDetails().map(describe);
  const outputs = compiled.getOutputDetails().map(describe);
  const toTensors = (buffers) => buffers.map((buffer, i) => new rt.Tensor(new Float32Array(buffer.slice(0)), inputs[i].shape));
  const fromTensors = (tensors) => tensors.map((t) => {
    const copy = t.toTypedArray().slice();
    t.delete();
    return copy.buffer;
  });
  let disposed = false;
  return {
    delegates: [],
    inputs, outputs,
    /** Synchronous, like fast-tflite's JSI call: LiteRT's non-JSPI wasm build runs synchronously. */
    runSync(buffers) {
      if (disposed) throw new Error('mock TensorflowModel: used after dispose()');
      const tensors = toTensors(buffers);
      try {
        const out = runner.liteRtCompiledModel.run(runner.signatureIndex ?? 0, tensors.map((t) => t.liteRtTensorBuffer));
        if (typeof out?.then === 'function') throw new Error('mock TensorflowModel: this LiteRT build runs asynchronously');
        return fromTensors(out.map((b) => new rt.Tensor(b)));
      } finally {
        tensors.forEach((t) => t.delete());
      }
    },
    async run(buffers) {
      const tensors = toTensors(buffers);
      try {
        return fromTensors(await compiled.run(tensors));
      } finally {
        tensors.forEach((t) => t.delete());
      }
    },
    dispose() {
      if (!disposed) compiled.delete();
      disposed = true;
    },
    get disposed() {
      return disposed;
    },
  };
}

module.exports = {loadTensorflowModel};
