'use strict';
// react-bio-clip on the webgl backend in headless Chromium (Debian's package, SwiftShader),
// with the real student architecture (scripts/make_browser_fixture.py: MobileNetV3 Small with
// squeeze-excite, hard-swish and residuals, QAT, exported by bioclip_lite_tf.export):
//   - float32 textures: every embedding within cosine 0.9999 of Keras, top-1 as Keras;
//   - half-float textures (WEBGL_RENDER_FLOAT32_ENABLED=false before the first op, as on many
//     phones): load() must detect it and warn, and its overflow-free normalization must give
//     finite embeddings where the bare graph's own l2_normalize overflows; cost measured;
//   - squashResize on WebGL against the Python training resize (camera-sized frames);
//   - the demo page (browser/demo/): a photo picked through the file input renders the answer
//     the package computes in Node on cpu; a screenshot goes to runs/browser/.
// Env: REACT_BIO_CLIP_BROWSER_FIXTURE (required), REACT_BIO_CLIP_RESIZE_REFERENCE (optional),
// REACT_BIO_CLIP_BROWSER_REPORT (JSON written with the measurements), REACT_BIO_CLIP_SCREENSHOT_DIR.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const {loadFromDirectory} = require('react-bio-clip/node');
const {launch, newPage, serve, BUILD, ROOT} = require('./browser');
const {cosine} = require('../test/helpers');

const FIXTURE = process.env.REACT_BIO_CLIP_BROWSER_FIXTURE;
const RESIZE = process.env.REACT_BIO_CLIP_RESIZE_REFERENCE;
const REPORT = process.env.REACT_BIO_CLIP_BROWSER_REPORT;
const SHOTS = process.env.REACT_BIO_CLIP_SCREENSHOT_DIR ?? path.join(ROOT, '..', 'runs', 'browser');
const COSINE_MIN = 0.9999;


function readF32(file) {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}

test('react-bio-clip in headless Chromium on WebGL', {skip: !FIXTURE && 'set REACT_BIO_CLIP_BROWSER_FIXTURE (make test-browser does)'}, async (t) => {
  assert.ok(fs.existsSync(path.join(BUILD, 'harness.js')), 'run `npm run build:browser` first');
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'expected.json'), 'utf8'));
  const photos = expected.photos.filter((p) => p.name !== 'demo');
  const report = {architecture: expected.architecture, resolution: expected.resolution, embed_dim: expected.embed_dim,
                  num_species: expected.num_species, photos: photos.length, modes: {}};

  // Node, cpu backend: the package's own answers, and its scoring of Keras's embeddings.
  await tf.setBackend('cpu');
  const node = await loadFromDirectory(path.join(FIXTURE, 'export'));
  const kerasTop1 = [];
  for (const p of photos) kerasTop1.push((await node.classifyEmbedding(Float32Array.from(p.keras), {topK: 1})).species[0].index);

  const mounts = {'/': BUILD, '/fixture': FIXTURE, '/export': path.join(FIXTURE, 'export')};
  if (RESIZE) mounts['/resize'] = RESIZE;
  const {server, url} = await serve(mounts);
  const {browser, close} = await launch();
  report.browser = await browser.version();
  const log = [];
  try {
    const embeddings = {};
    for (const [mode, half] of [['float32', false], ['float16', true]]) {
      await t.test(`${mode} textures`, async () => {
        const page = await newPage(browser, log);
        await page.goto(`${url}/harness.html?half=${half ? 1 : 0}`);
        await page.waitForFunction(() => window.harness);
        const env = await page.evaluate(() => window.harness.init());
        assert.ok(env.ok && env.backend === 'webgl', `WebGL did not start: ${JSON.stringify(env)}\n${log.join('\n')}`);
        assert.strictEqual(env.float32Flag, !half);
        assert.strictEqual(env.measured, mode, 'measureFloatPrecision must see the texture precision');
        const loaded = await page.evaluate(() => window.harness.load('/export'));
        assert.strictEqual(loaded.precision, mode);
        if (half) {
          assert.strictEqual(loaded.warnings.length, 1, 'load must warn about half-float textures');
          assert.match(loaded.warnings[0], /half floats/);
        } else {
          assert.deepStrictEqual(loaded.warnings, [], 'no warning with float32 textures');
        }
        const start = Date.now();
        const got = await page.evaluate((ps) => window.harness.embedAll('/fixture/photos', ps),
                                        photos.map(({name, height, width}) => ({name, height, width})));
        const cosKeras = got.map((g, i) => cosine(g.embedding, photos[i].keras));
        const cosReference = got.map((g, i) => cosine(g.embedding, photos[i].reference));
        const top1Agree = got.filter((g, i) => g.top1 === kerasTop1[i]).length / got.length;
        embeddings[mode] = got;
        report.modes[mode] = {
          cosine_vs_keras_min: Math.min(...cosKeras), cosine_vs_keras_mean: cosKeras.reduce((a, b) => a + b) / cosKeras.length,
          cosine_vs_weights_only_reference_min: Math.min(...cosReference),
          top1_agreement_with_keras: top1Agree, top1_flips: got.filter((g, i) => g.top1 !== kerasTop1[i]).length,
          ms_per_photo: (Date.now() - start) / got.length, warnings: loaded.warnings,
        };
        assert.ok(got.every((g) => g.embedding.every(Number.isFinite)), `${mode}: non-finite embedding values`);
        // Half floats cost precision, not the answer's meaning: a far lower cosine means
        // overflow or a broken texture path, not rounding.
        assert.ok(report.modes[mode].cosine_vs_keras_min >= 0.95, `${mode}: cosine min ${report.modes[mode].cosine_vs_keras_min}`);
        if (!half) {
          assert.ok(report.modes[mode].cosine_vs_keras_min >= COSINE_MIN, `cosine min ${report.modes[mode].cosine_vs_keras_min}`);
          assert.strictEqual(top1Agree, 1, 'float32 WebGL must give Keras\'s top-1 species');
        }
        await page.evaluate(() => window.harness.dispose());
        assert.strictEqual(await page.evaluate(() => window.harness.numTensors()), 0, 'dispose() must free every tensor');
        // The same graph without the package (its own l2_normalize, whose sum of squares
        // overflows float16 once the pre-normalization embedding is longer than 256).
        const squares = photos.filter((p) => p.height === expected.resolution && p.width === expected.resolution);
        const broken = await page.evaluate((ps) => window.harness.rawGraphBroken('/export/tfjs/model.json', '/fixture/photos', ps),
                                           squares.map(({name, height, width}) => ({name, height, width})));
        report.modes[mode].raw_graph_broken_embeddings = `${broken} of ${squares.length}`;
        if (half) {
          assert.ok(broken > 0, 'the fixture no longer makes the graph\'s own normalization overflow in half floats, ' +
                    'so this test does not show that the package avoids it');
        } else {
          assert.strictEqual(broken, 0);
        }
        await page.close();
      });
    }
    const f32 = embeddings.float32, f16 = embeddings.float16;
    if (f32 && f16) {
      report.half_vs_float32 = {
        cosine_min: Math.min(...f16.map((g, i) => cosine(g.embedding, f32[i].embedding))),
        top1_agreement: f16.filter((g, i) => g.top1 === f32[i].top1).length / f16.length,
      };
    }

    await t.test('squashResize on WebGL matches the training resize', {skip: !RESIZE && 'no REACT_BIO_CLIP_RESIZE_REFERENCE'}, async () => {
      const meta = JSON.parse(fs.readFileSync(path.join(RESIZE, 'frames.json'), 'utf8'));
      report.resize = {};
      for (const [mode, half] of [['float32', false], ['float16', true]]) {
        const page = await newPage(browser, log);
        await page.goto(`${url}/harness.html?half=${half ? 1 : 0}`);
        await page.waitForFunction(() => window.harness);
        await page.evaluate(() => window.harness.init());
        for (const frame of meta.frames) {
          const got = await page.evaluate((f, r) => window.harness.squash(`/resize/${f.name}.rgb`, f.height, f.width, r),
                                          frame, meta.resolution);
          const want = readF32(path.join(RESIZE, frame.name + '.train.f32'));
          let sum = 0, max = 0;
          for (let i = 0; i < want.length; ++i) {
            const d = Math.abs(got.values[i] - want[i]);
            sum += d;
            max = Math.max(max, d);
          }
          const stats = {mean: sum / want.length, max, ms: got.ms};
          report.resize[`${frame.name} ${mode}`] = stats;
          assert.ok(stats.mean <= 0.5 && stats.max <= 3, `${frame.name} on WebGL ${mode}: ${JSON.stringify(stats)}`);
        }
        await page.close();
      }
    });

    await t.test('Chromium\'s JPEG decode against PIL\'s (measured; the photo picker path)', async () => {
      const demo = expected.photos.find((p) => p.name === 'demo');
      const page = await newPage(browser, log);
      await page.goto(`${url}/harness.html`);
      await page.waitForFunction(() => window.harness);
      await page.evaluate(() => window.harness.init());
      const got = await page.evaluate(() => window.harness.decode('/fixture/photos/demo.jpg'));
      assert.deepStrictEqual(got.shape, [demo.height, demo.width, 3]);
      const pil = new Uint8Array(fs.readFileSync(path.join(FIXTURE, 'photos', 'demo.jpg.pil.rgb')));
      let sum = 0, max = 0;
      for (let i = 0; i < pil.length; ++i) {
        const d = Math.abs(got.values[i] - pil[i]);
        sum += d;
        max = Math.max(max, d);
      }
      report.chromium_jpeg_decode_vs_pil = {mean: sum / pil.length, max, jpeg: 'quality 90, 4:2:0', size: [demo.height, demo.width]};
      // Both are libjpeg-turbo; a wrong channel order or colour conversion would be far off.
      assert.ok(sum / pil.length <= 1.5 && max <= 12, JSON.stringify(report.chromium_jpeg_decode_vs_pil));
      await page.close();
    });

    await t.test('demo page: pick a photo, see the answer the package gives in Node', async () => {
      const demo = expected.photos.find((p) => p.name === 'demo');
      const pixels = new Uint8Array(fs.readFileSync(path.join(FIXTURE, 'photos', 'demo.rgb')));
      const want = await node.classify({data: pixels, width: demo.width, height: demo.height}, {topK: 5});
      const page = await newPage(browser, log);
      await page.setViewport({width: 900, height: 640});
      await page.goto(`${url}/demo/`);
      await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), {timeout: 60000});
      assert.strictEqual(await page.evaluate(() => document.body.dataset.state), 'ready',
                         `demo did not load: ${await page.$eval('#error', (e) => e.textContent)}\n${log.join('\n')}`);
      const input = await page.$('#photo');
      await input.uploadFile(path.join(FIXTURE, 'photos', 'demo.png'));
      await page.waitForFunction(() => ['answered', 'error'].includes(document.body.dataset.state), {timeout: 60000});
      const shown = await page.evaluate(() => ({
        state: document.body.dataset.state, error: document.getElementById('error').textContent,
        best: {...document.getElementById('best').dataset},
        bestText: document.getElementById('best').textContent,
        lineage: [...document.querySelectorAll('#lineage li')].map((li) => ({rank: li.dataset.rank, name: li.dataset.name})),
        species: [...document.querySelectorAll('#species tbody tr')].map((tr) => tr.dataset.name),
        backend: document.getElementById('backend').textContent,
      }));
      fs.mkdirSync(SHOTS, {recursive: true});
      await page.screenshot({path: path.join(SHOTS, 'demo.png'), fullPage: true});
      assert.strictEqual(shown.state, 'answered', shown.error);
      assert.match(shown.backend, /backend webgl, float32 textures/);
      assert.ok(want.best, 'the fixture photo must have a best answer');
      assert.strictEqual(shown.best.rank, want.best.rank);
      assert.strictEqual(shown.best.name, want.best.name);
      assert.ok(Math.abs(Number(shown.best.probability) - want.best.probability) < 1e-3,
                `best probability ${shown.best.probability} vs ${want.best.probability}`);
      assert.ok(shown.bestText.includes(want.best.probability.toFixed(3)) || Math.abs(Number(shown.best.probability) - want.best.probability) < 5e-4);
      assert.deepStrictEqual(shown.lineage, want.species[0].lineage.map(({rank, name}) => ({rank, name})));
      assert.deepStrictEqual(shown.species, want.species.map((s) => s.name));
      // ... and Keras's answer: its embedding of the same photo, scored by the same label bank.
      const keras = await node.classifyEmbedding(Float32Array.from(demo.keras), {topK: 1});
      assert.strictEqual(shown.species[0], keras.species[0].name, 'the page\'s top species is not Keras\'s');
      report.demo = {best: shown.best, top_species: shown.species[0], screenshot: path.join(SHOTS, 'demo.png')};
      await page.close();
    });
  } finally {
    node.dispose();
    await close();
    server.close();
    if (REPORT) {
      fs.mkdirSync(path.dirname(REPORT), {recursive: true});
      fs.writeFileSync(REPORT, JSON.stringify(report, null, 1) + '\n');
    }
  }
});
