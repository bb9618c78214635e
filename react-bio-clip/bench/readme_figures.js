'use strict';
// Writes the measured tables of README.md from the committed bench JSON files, between
// <!-- figures:NAME:begin --> and <!-- figures:NAME:end --> markers, so no measured number in
// the README is typed by hand:
//   resize: bench/results/resize_parity.json (+ webgl_browser.json's `resize`), pixel differences
//           of squashResize and the old paths from the training input, and squashResize's time;
//   webgl:  bench/results/webgl_browser.json, WebGL parity with float32 and half-float textures.
//
//   node bench/readme_figures.js            rewrite README.md (make bench-browser runs this)
//   node bench/readme_figures.js --check    exit 1 when README.md differs from the JSON files
const fs = require('fs');
const path = require('path');

const RESULTS = path.join(__dirname, '..', '..', 'bench', 'results');
const README = path.join(__dirname, '..', 'README.md');
const FRAMES = [['portrait_textured', '1080 x 1920 textured'], ['portrait_dense', '1080 x 1920 dense'],
  ['photo12mp_textured', '4032 x 3024 textured'], ['photo12mp_dense', '4032 x 3024 dense']];

/** Two significant digits, without exponents for the sizes these tables hold. */
function num(v) {
  if (v === null || v === undefined) return 'n/a';
  if (v === 0) return '0';
  const digits = Math.max(0, 1 - Math.floor(Math.log10(Math.abs(v))));
  return Number(v.toFixed(digits)).toString();
}
const pair = (d) => `${num(d.mean)} / ${num(d.max)}`;
const worst = (list) => ({mean: Math.max(...list.map((d) => d.mean)), max: Math.max(...list.map((d) => d.max))});

function resizeTable(parity, webgl) {
  const rows = ['| frame | `squashResize`: cpu, wasm, WebGL float32 (worst) | WebGL half-float | ' +
    'before: `\'area\'` (photos) | before: `\'bilinear\'` (tfjs-react-native camera) | ' +
    'the teacher\'s PIL resize (uint8) | `squashResize` ms: wasm / cpu |', '|---|---|---|---|---|---|---|'];
  for (const [key, label] of FRAMES) {
    const frame = parity.frames[key];
    const {cpu, wasm} = frame.backends;
    const gl = (webgl.resize || {})[`${key} float32`];
    const half = (webgl.resize || {})[`${key} float16`];
    const ours = worst([cpu.bicubic, wasm.bicubic, ...(gl ? [gl] : [])]);
    rows.push(`| ${label} | ${pair(ours)} | ${half ? pair(half) : 'n/a'} | ${pair(worst([cpu.area, wasm.area]))} | ` +
      `${pair(worst([cpu.bilinear, wasm.bilinear]))} | ${pair(frame.teacher_pil_bicubic_uint8)} | ` +
      `${Math.round(wasm.squash_resize_ms_median)} / ${Math.round(cpu.squash_resize_ms_median)} |`);
  }
  return rows.join('\n');
}

function webglTable(webgl) {
  const rows = ['| textures | cosine to Keras, min | top-1 species as Keras | the bare TF.js graph: broken embeddings |',
    '|---|---|---|---|'];
  for (const [key, label] of [['float32', 'float32'], ['float16', 'half-float (`WEBGL_RENDER_FLOAT32_ENABLED=false`)']]) {
    const m = webgl.modes[key];
    const cos = m.cosine_vs_keras_min;
    const cosText = cos > 0.9999999 ? cos.toFixed(12).replace(/0+$/, '') : cos.toFixed(5);
    rows.push(`| ${label} | ${cosText} | ${Math.round(m.top1_agreement_with_keras * webgl.photos)} / ${webgl.photos} | ` +
      `${m.raw_graph_broken_embeddings} |`);
  }
  return rows.join('\n');
}

function blocks() {
  const read = (name) => JSON.parse(fs.readFileSync(path.join(RESULTS, name), 'utf8'));
  const webgl = read('webgl_browser.json');
  return {resize: resizeTable(read('resize_parity.json'), webgl), webgl: webglTable(webgl)};
}

function render(text, tables) {
  for (const [name, table] of Object.entries(tables)) {
    const begin = `<!-- figures:${name}:begin (written by bench/readme_figures.js) -->`;
    const end = `<!-- figures:${name}:end -->`;
    const a = text.indexOf(begin);
    const b = text.indexOf(end);
    if (a < 0 || b < a) throw new Error(`README.md has no ${begin} ... ${end} block`);
    text = text.slice(0, a + begin.length) + '\n' + table + '\n' + text.slice(b);
  }
  return text;
}

if (require.main === module) {
  const text = fs.readFileSync(README, 'utf8');
  const wanted = render(text, blocks());
  if (process.argv.includes('--check')) {
    if (wanted !== text) {
      process.stderr.write('README.md figures differ from bench/results: run node bench/readme_figures.js\n');
      process.exit(1);
    }
  } else {
    fs.writeFileSync(README, wanted);
  }
}

module.exports = {blocks, render, README};
