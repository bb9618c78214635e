/**
 * The browser demo: pick a photo, get the hierarchical answer (`best`, its lineage from kingdom
 * down, the top species). The model is the export directory served at ./export/ (or
 * ?export=URL); `npm run demo -- --export_dir=DIR` serves one.
 */
import * as tf from '@tensorflow/tfjs';

import {BioClip, Classification, load} from '../../dist/index.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const exportUrl = new URLSearchParams(location.search).get('export') ?? '../export';
let bioClip: BioClip | null = null;

function text(tag: string, content: string, className?: string): HTMLElement {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

/** The last word(s) of a full lineage name at a rank: "Animalia Chordata Aves" -> "Aves". */
function shortName(rank: string, full: string): string {
  const words = full.split(' ');
  return rank === 'species' ? words.slice(-2).join(' ') : words[words.length - 1];
}

function render(result: Classification): void {
  const best = result.best;
  const bestEl = $('best');
  bestEl.replaceChildren();
  if (best) {
    bestEl.append(text('span', best.rank, 'rank'), ' ', text('span', shortName(best.rank, best.name), 'name'),
                  ' ', text('span', best.probability.toFixed(3), 'probability'));
    bestEl.dataset.rank = best.rank;
    bestEl.dataset.name = best.name;
    bestEl.dataset.probability = String(best.probability);
  } else {
    bestEl.append(text('span', 'not sure (no kingdom above the threshold)', 'name'));
    bestEl.dataset.rank = '';
    bestEl.dataset.name = '';
  }
  // The lineage of the best answer, kingdom first; the deeper ranks of the top species greyed.
  const lineage = $('lineage');
  lineage.replaceChildren();
  const top = result.species[0];
  for (const step of top.lineage) {
    const li = document.createElement('li');
    li.append(text('span', step.rank, 'rank'), text('span', shortName(step.rank, step.name), 'name'));
    li.dataset.rank = step.rank;
    li.dataset.name = step.name;
    if (best && step.rank === best.rank) li.className = 'best';
    lineage.append(li);
  }
  const body = ($('species') as HTMLTableElement).tBodies[0];
  body.replaceChildren();
  for (const s of result.species) {
    const tr = document.createElement('tr');
    tr.dataset.name = s.name;
    tr.append(text('td', shortName('species', s.name)), text('td', s.commonName ?? ''), text('td', s.probability.toFixed(3), 'p'));
    body.append(tr);
  }
  $('answer').hidden = false;
}

async function onPhoto(file: File): Promise<void> {
  $('status').textContent = 'thinking...';
  $('error').textContent = '';
  const bitmap = await createImageBitmap(file, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  ($('preview') as HTMLImageElement).src = URL.createObjectURL(file);
  const pixels = tf.browser.fromPixels(bitmap);
  try {
    render(await bioClip!.classify(pixels, {topK: 5}));
    $('status').textContent = `${file.name}: ${bitmap.width} x ${bitmap.height}`;
    document.body.dataset.state = 'answered';
  } finally {
    pixels.dispose();
    bitmap.close();
  }
}

async function main(): Promise<void> {
  await tf.setBackend('webgl');
  await tf.ready();
  bioClip = await load({model: `${exportUrl}/tfjs/model.json`, labels: `${exportUrl}/labels/label_bank.json`});
  $('backend').textContent = `TF.js ${tf.version.tfjs}, backend ${tf.getBackend()}, ${bioClip.precision} textures, ` +
      `${bioClip.numSpecies} species, input ${bioClip.resolution} x ${bioClip.resolution}`;
  const input = $('photo') as HTMLInputElement;
  input.disabled = false;
  $('status').textContent = 'pick a photo';
  document.body.dataset.state = 'ready';
  input.addEventListener('change', () => {
    const file = input.files?.[0];
    if (file) onPhoto(file).catch(fail);
  });
}

function fail(error: unknown): void {
  $('error').textContent = String((error as Error)?.message ?? error);
  document.body.dataset.state = 'error';
}

main().catch(fail);
