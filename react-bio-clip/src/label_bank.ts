/**
 * The device label bank, format version 2 (labels/label_bank.json + label_bank.bin + names.bin
 * [+ common_names.bin], docs/FORMATS.md section 4): the taxonomy as leaf names with parent
 * links, and one text embedding per species kept in its stored precision (int8 / int4 with a
 * float32 scale per row, or float16) and scored in chunks: plain JS everywhere (Hermes has no
 * WebAssembly), and int8 rows by a WebAssembly SIMD kernel where it exists. Nowhere is there a
 * float32 copy of the whole bank, and there are no tensors here.
 */
import {BioClipFormatError, BioClipInputError} from './errors';
import {halfToFloat} from './float16';
import {LabelBankJson, Rank, RANKS} from './types';
import {WASM_KERNEL_BASE64} from './wasm_kernel_bytes';

export const SUPPORTED_LABEL_BANK_VERSIONS = [2];
/** label_bank.json's `format` (formats/device_label_bank.py). */
export const LABEL_BANK_FORMAT = 'bioclip-lite-device-label-bank';
export const ROW_DTYPES = ['int8', 'int4', 'float16', 'float32'] as const;
export type RowDtype = typeof ROW_DTYPES[number];
/** Rows scored per chunk (the chunk's scores are written to the caller's array). */
export const SCORE_CHUNK_ROWS = 4096;

export interface TaxonRef {
  rank: Rank;
  index: number;
}

/** The files of a label bank, as bytes. commonNames is optional (the bank can leave it out). */
export interface LabelBankFiles {
  bin: Uint8Array;
  names: Uint8Array;
  commonNames?: Uint8Array | null;
}

/** A query prepared for one bank: float64 [storedDim] and the constant added to every score. */
export interface PreparedQuery {
  query: Float64Array;
  base: number;
  /** int4 only: per byte position j, the 256 possible contributions of that byte. */
  table: Float32Array | null;
}

/**
 * int8 rows in a WebAssembly memory, scored by the SIMD kernel of scripts/gen_wasm_kernel.js
 * (Node, browsers). Layout: rows [n * d] at 0, the query as two interleaved int16 vectors (4d
 * bytes), then a chunk of int32 score pairs.
 *
 * The query is scaled by s = LIMIT / max|q| and split into hi = round(s q) and
 * lo = round((s q - hi) 2^15), so q = (hi + lo / 2^15) / s to within max|q| / (2^16 LIMIT) per
 * column (about 5e-10 relative): the integer dot products are exact, and the score matches the
 * float path to float32 rounding. LIMIT keeps every int32 sum in range (127 d |hi| < 2^31);
 * banks wider than 1032 columns (where |lo| <= 2^14 would not fit) are scored in plain JS.
 */
class WasmInt8Kernel {
  readonly rows: Int8Array;
  private readonly query: Int16Array;
  private readonly out: Int32Array;
  private readonly limit: number;
  private readonly score: (q: number, rows: number, n: number, d: number, out: number) => void;

  private constructor(rows: Int8Array, private readonly d: number) {
    const bytes = rows.length;
    const queryOffset = Math.ceil(bytes / 16) * 16;
    const outOffset = queryOffset + 4 * d;
    const end = outOffset + 8 * SCORE_CHUNK_ROWS;
    const memory = new WebAssembly.Memory({initial: Math.ceil(end / 65536)});
    const binary = Uint8Array.from(atob(WASM_KERNEL_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(binary), {env: {memory}});
    this.score = instance.exports.score_i8 as WasmInt8Kernel['score'];
    this.rows = new Int8Array(memory.buffer, 0, bytes);
    this.rows.set(rows);
    this.query = new Int16Array(memory.buffer, queryOffset, 2 * d);
    this.out = new Int32Array(memory.buffer, outOffset, 2 * SCORE_CHUNK_ROWS);
    this.limit = Math.min(32767, Math.floor(2147483647 / (127 * d)));
  }

  /** The kernel holding a copy of `rows`, or null where WebAssembly SIMD is missing (Hermes). */
  static create(rows: Int8Array, d: number): WasmInt8Kernel | null {
    if (d % 16 !== 0 || 127 * 16384 * d > 2147483647 || typeof WebAssembly !== 'object' ||
        typeof atob !== 'function') {
      return null;
    }
    try {
      return new WasmInt8Kernel(rows, d);
    } catch {
      return null;  // no SIMD support, or no memory for the copy: the plain-JS path scores
    }
  }

  /** out[start..end) = base + scales[r] * (query . row r). */
  scoreAll(query: Float64Array, base: number, scales: Float32Array, start: number, end: number, out: Float64Array): void {
    const d = this.d;
    let max = 0;
    for (let j = 0; j < d; ++j) max = Math.max(max, Math.abs(query[j]));
    if (!(max > 0)) {
      out.fill(base, start, end);
      return;
    }
    const s = this.limit / max;
    const q = this.query;
    for (let j = 0; j < d; ++j) {
      const x = query[j] * s;
      const hi = Math.round(x);
      const at = (j >> 4) * 32 + (j & 8 ? 16 : 0) + (j & 7);  // [hi 0..7][lo 0..7][hi 8..15][lo 8..15]
      q[at] = hi;
      q[at + 8] = Math.round((x - hi) * 32768);
    }
    const unscale = 1 / s;
    for (let at = start; at < end; at += SCORE_CHUNK_ROWS) {
      const count = Math.min(SCORE_CHUNK_ROWS, end - at);
      this.score(q.byteOffset, at * d, count, d, this.out.byteOffset);
      const o = this.out;
      for (let i = 0; i < count; ++i) {
        out[at + i] = base + scales[at + i] * ((o[2 * i] + o[2 * i + 1] / 32768) * unscale);
      }
    }
  }
}

function fail(where: string, what: string): never {
  throw new BioClipFormatError(`label bank ${where}: ${what}`);
}

let halfTable: Float32Array | null = null;
/** All 65536 halves as float32, built once (256 KB): float16 rows are scored by lookup. */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; ++h) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** UTF-8 bytes to a string; TextDecoder where it exists (Hermes may lack it). */
export function decodeUtf8(bytes: Uint8Array): string {
  if (typeof TextDecoder !== 'undefined') return new TextDecoder().decode(bytes);
  let out = '';
  const chunk: number[] = [];
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i++];
    let code = b;
    if (b >= 0xf0) code = ((b & 0x07) << 18) | ((bytes[i++] & 0x3f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else if (b >= 0xe0) code = ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else if (b >= 0xc0) code = ((b & 0x1f) << 6) | (bytes[i++] & 0x3f);
    chunk.push(code);
    if (chunk.length >= 4096) {
      out += String.fromCodePoint(...chunk);
      chunk.length = 0;
    }
  }
  return out + String.fromCodePoint(...chunk);
}

/** A typed-array view of bytes [offset, offset + count * size), copied only when misaligned. */
function view<T>(bytes: Uint8Array, offset: number, count: number, size: number,
                 make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => T): T {
  const start = bytes.byteOffset + offset;
  if (start % size === 0) return make(bytes.buffer, start, count);
  const copy = new Uint8Array(count * size);
  copy.set(bytes.subarray(offset, offset + count * size));
  return make(copy.buffer, 0, count);
}

/** One rank's strings in names.bin / common_names.bin: decoded one by one, or all at once. */
class StringTable {
  private all: string[] | null = null;
  constructor(private readonly offsets: Uint32Array, private readonly blob: Uint8Array) {}

  get(i: number): string {
    if (this.all) return this.all[i];
    return decodeUtf8(this.blob.subarray(this.offsets[i], this.offsets[i + 1] - 1));
  }

  /** Every entry (one decode of the blob and a split on the '\n' terminators). */
  list(): string[] {
    if (!this.all) this.all = decodeUtf8(this.blob).split('\n').slice(0, this.offsets.length - 1);
    return this.all;
  }
}

interface StringPart {
  offsets_offset: number;
  blob_offset: number;
  blob_bytes: number;
  parents_offset?: number;
}

/** Fails (naming the file and the piece) unless `bytes` reaches byte `end`. */
function needBytes(bytes: Uint8Array, file: string, end: number, what: string, where: string): void {
  if (!(end <= bytes.byteLength)) fail(where, `${file} has ${bytes.byteLength} bytes but the ${what} end at byte ${end}`);
}

function readStrings(bytes: Uint8Array, part: StringPart | undefined, n: number, file: string,
                     what: string, where: string): StringTable {
  if (!part) fail(where, `${file} has no part for ${what}`);
  needBytes(bytes, file, part.offsets_offset + 4 * (n + 1), `${what} offsets`, where);
  needBytes(bytes, file, part.blob_offset + part.blob_bytes, `${what} names`, where);
  const offsets = view(bytes, part.offsets_offset, n + 1, 4, (b, o, l) => new Uint32Array(b, o, l));
  if (offsets[0] !== 0 || offsets[n] !== part.blob_bytes) fail(where, `${file}: ${what} offsets do not span the blob`);
  const blob = bytes.subarray(part.blob_offset, part.blob_offset + part.blob_bytes);
  for (let i = 0; i < n; ++i) {
    if (!(offsets[i + 1] > offsets[i]) || blob[offsets[i + 1] - 1] !== 10) {
      fail(where, `${file}: ${what} entry ${i} is not a '\\n'-terminated slice of the blob`);
    }
  }
  return new StringTable(offsets, blob);
}

export class LabelBank {
  /** 'auto': int8 banks with a row width that is a multiple of 16 are scored by WebAssembly SIMD where it exists. Tests force 'off'. */
  static wasm: 'auto' | 'off' = 'auto';
  readonly embedDim: number;
  /** Width of the stored rows: embedDim, or less for a projected bank. */
  readonly storedDim: number;
  readonly numSpecies: number;
  readonly logitScale: number;
  readonly dtype: RowDtype;
  readonly formatVersion: number;
  readonly counts: Record<Rank, number>;
  /** Per rank: the row of each taxon's parent in the previous rank (-1 for kingdom). */
  readonly parents: Record<Rank, Int32Array>;
  /** Per rank: for each species row, the row of its ancestor at that rank (itself for species). */
  readonly ancestors: Record<Rank, Int32Array>;
  /** The stored rows, row-major [numSpecies, storedDim] (int4: [numSpecies, ceil(storedDim / 2)] bytes). */
  readonly rows: Int8Array | Uint8Array | Uint16Array | Float32Array;
  /** int8 / int4: float32 [numSpecies], row ~= q * scale. */
  readonly scales: Float32Array | null;
  /** float32 [embedDim, storedDim] and [embedDim], or null. */
  readonly projection: Float32Array | null;
  readonly projectionMean: Float32Array | null;
  /** True when common_names.bin was given (a bank may ship without it). */
  readonly hasCommonNames: boolean;
  private readonly leaves: Record<Rank, StringTable>;
  private readonly commons: Record<Rank, StringTable> | null;
  private readonly leafIndex = new Map<Rank, Map<string, number | number[]>>();
  /** Set when the rows live in the WebAssembly kernel's memory (then `rows` is a view of it). */
  readonly kernel: WasmInt8Kernel | null;

  private constructor(json: LabelBankJson, init: {
    counts: Record<Rank, number>; parents: Record<Rank, Int32Array>; ancestors: Record<Rank, Int32Array>;
    rows: LabelBank['rows']; scales: Float32Array | null; projection: Float32Array | null; mean: Float32Array | null;
    leaves: Record<Rank, StringTable>; commons: Record<Rank, StringTable> | null;
  }) {
    this.embedDim = json.embed_dim;
    this.storedDim = json.rows.stored_dim;
    this.kernel = json.rows.dtype === 'int8' && LabelBank.wasm === 'auto' ?
      WasmInt8Kernel.create(init.rows as Int8Array, json.rows.stored_dim) : null;
    if (this.kernel) {
      // The rows now live in the kernel's memory: copy the small parts so that label_bank.bin
      // itself can be freed (the bank is then held once).
      init.rows = this.kernel.rows;
      init.scales = init.scales!.slice();
      init.projection = init.projection ? init.projection.slice() : null;
      init.mean = init.mean ? init.mean.slice() : null;
    }
    this.numSpecies = json.num_species;
    this.logitScale = json.logit_scale;
    this.dtype = json.rows.dtype;
    this.formatVersion = json.format_version;
    this.counts = init.counts;
    this.parents = init.parents;
    this.ancestors = init.ancestors;
    this.rows = init.rows;
    this.scales = init.scales;
    this.projection = init.projection;
    this.projectionMean = init.mean;
    this.leaves = init.leaves;
    this.commons = init.commons;
    this.hasCommonNames = init.commons !== null;
  }

  /**
   * Checks and decodes a label bank. The rows stay views into `files.bin` (no copy).
   * @param json the parsed label_bank.json
   * @param files the bytes of label_bank.bin, names.bin and (optional) common_names.bin
   * @param where a name for error messages (a URL or path)
   */
  static parse(json: LabelBankJson, files: LabelBankFiles, where: string): LabelBank {
    if (json === null || typeof json !== 'object') fail(where, 'label_bank.json is not a JSON object');
    const format = (json as {format?: unknown}).format;
    if (format !== undefined && format !== LABEL_BANK_FORMAT) {
      fail(where, `format is "${format}", expected "${LABEL_BANK_FORMAT}"`);
    }
    if (!SUPPORTED_LABEL_BANK_VERSIONS.includes(json.format_version)) {
      fail(where, `format_version ${json.format_version} is not supported (this package reads ` +
           `${SUPPORTED_LABEL_BANK_VERSIONS.join(', ')}); re-export the label bank with this version's ` +
           'bioclip_lite_tf (python -m bioclip_lite_tf.export, or python -m bioclip_lite_tf.device_label_bank)');
    }
    if (!Array.isArray(json.ranks) || json.ranks.join(',') !== RANKS.join(',')) {
      fail(where, `ranks must be ${RANKS.join(',')}, got ${JSON.stringify(json.ranks)}`);
    }
    if (!(json.logit_scale > 0)) fail(where, `logit_scale must be > 0, got ${json.logit_scale}`);
    const layout = json.rows;
    if (!layout || typeof layout !== 'object') fail(where, 'rows is missing');
    const dtype = layout.dtype;
    if (!ROW_DTYPES.includes(dtype)) fail(where, `rows.dtype "${dtype}" is not one of ${ROW_DTYPES.join(', ')}`);
    const n = json.num_species;
    const D = json.embed_dim;
    const d = layout.stored_dim;
    for (const [key, value] of [['num_species', n], ['embed_dim', D], ['rows.stored_dim', d]] as const) {
      if (!Number.isInteger(value) || value < 1) fail(where, `${key} must be a positive integer, got ${value}`);
    }
    if (!json.counts || json.counts.species !== n) fail(where, `counts.species must equal num_species ${n}`);
    const bin = files.bin;
    const need = (bytes: Uint8Array, file: string, end: number, what: string) => needBytes(bytes, file, end, what, where);
    const binName = layout.file ?? 'label_bank.bin';
    const offset = layout.offset ?? 0;
    let rows: LabelBank['rows'];
    let scales: Float32Array | null = null;
    if (dtype === 'int8' || dtype === 'int4') {
      const width = dtype === 'int8' ? d : Math.ceil(d / 2);
      need(bin, binName, offset + n * width, `${dtype} rows`);
      if (layout.scales_offset === undefined) fail(where, `${dtype} rows need rows.scales_offset`);
      need(bin, binName, layout.scales_offset + 4 * n, 'per-row scales');
      rows = dtype === 'int8' ? new Int8Array(bin.buffer, bin.byteOffset + offset, n * width) :
        bin.subarray(offset, offset + n * width);
      scales = view(bin, layout.scales_offset, n, 4, (b, o, l) => new Float32Array(b, o, l));
    } else if (dtype === 'float16') {
      need(bin, binName, offset + 2 * n * d, 'float16 rows');
      rows = view(bin, offset, n * d, 2, (b, o, l) => new Uint16Array(b, o, l));
    } else {
      need(bin, binName, offset + 4 * n * d, 'float32 rows');
      rows = view(bin, offset, n * d, 4, (b, o, l) => new Float32Array(b, o, l));
    }
    let projection: Float32Array | null = null;
    let mean: Float32Array | null = null;
    if (json.projection) {
      const p = json.projection;
      if (!Array.isArray(p.shape) || p.shape[0] !== D || p.shape[1] !== d) {
        fail(where, `projection.shape ${JSON.stringify(p.shape)} is not [${D}, ${d}]`);
      }
      need(bin, binName, p.offset + 4 * D * d, 'projection');
      need(bin, binName, p.mean_offset + 4 * D, 'projection mean');
      projection = view(bin, p.offset, D * d, 4, (b, o, l) => new Float32Array(b, o, l));
      mean = view(bin, p.mean_offset, D, 4, (b, o, l) => new Float32Array(b, o, l));
    } else if (d !== D) {
      fail(where, `rows.stored_dim=${d} but embed_dim=${D} and there is no projection`);
    }

    if (!json.names || !json.names.ranks) fail(where, 'names is missing');
    const namesFile = json.names.file ?? 'names.bin';
    if (!files.names) fail(where, `${namesFile} was not given`);
    const counts = {} as Record<Rank, number>;
    const parents = {} as Record<Rank, Int32Array>;
    const leaves = {} as Record<Rank, StringTable>;
    const commons = json.common_names && files.commonNames ? {} as Record<Rank, StringTable> : null;
    let previous = 0;
    RANKS.forEach((rank, depth) => {
      const size = json.counts[rank];
      if (!Number.isInteger(size) || size < 1) fail(where, `counts.${rank} must be a positive integer, got ${size}`);
      counts[rank] = size;
      const part = json.names.ranks[rank] as StringPart | undefined;
      if (!part || part.parents_offset === undefined) fail(where, `names.ranks.${rank} is missing`);
      need(files.names, namesFile, part.parents_offset + 4 * size, `${rank} parents`);
      const links = view(files.names, part.parents_offset, size, 4, (b, o, l) => new Int32Array(b, o, l));
      for (let row = 0; row < size; ++row) {
        const parent = links[row];
        const ok = depth === 0 ? parent === -1 : parent >= 0 && parent < previous;
        if (!ok) fail(where, `${namesFile}: ${rank} row ${row} has parent ${parent}, not a row of the previous rank`);
      }
      parents[rank] = links;
      leaves[rank] = readStrings(files.names, part, size, namesFile, `${rank} names`, where);
      if (commons) {
        commons[rank] = readStrings(files.commonNames!, json.common_names!.ranks[rank] as StringPart | undefined, size,
                                    json.common_names!.file ?? 'common_names.bin', `${rank} common names`, where);
      }
      previous = size;
    });
    const ancestors = {} as Record<Rank, Int32Array>;
    let current = Int32Array.from({length: n}, (_, i) => i);
    for (let depth = RANKS.length - 1; depth >= 0; --depth) {
      ancestors[RANKS[depth]] = current;
      if (depth > 0) {
        const up = parents[RANKS[depth]];
        current = current.map((row) => up[row]);
      }
    }
    return new LabelBank(json, {counts, parents, ancestors, rows, scales, projection, mean, leaves, commons});
  }

  numTaxa(rank: Rank): number {
    return this.counts[rank];
  }

  /** The last word of the taxon's name (the epithet alone for a species). */
  leafName(rank: Rank, index: number): string {
    return this.leaves[rank].get(index);
  }

  /** The full lineage name, "Animalia Chordata Aves", rebuilt from leaf names and parent links. */
  fullName(rank: Rank, index: number): string {
    const words: string[] = [];
    let row = index;
    for (let depth = RANKS.indexOf(rank); depth >= 0; --depth) {
      words.push(this.leafName(RANKS[depth], row));
      row = this.parents[RANKS[depth]][row];
    }
    return words.reverse().join(' ');
  }

  /** "Turdus migratorius" for a species, the leaf name otherwise. */
  shortName(rank: Rank, index: number): string {
    if (rank !== 'species') return this.leafName(rank, index);
    return `${this.leafName('genus', this.parents.species[index])} ${this.leafName('species', index)}`;
  }

  /** null when unknown, or when the bank was loaded without common_names.bin. */
  commonName(rank: Rank, index: number): string | null {
    return this.commons ? this.commons[rank].get(index) || null : null;
  }

  /** From kingdom down to the taxon itself. */
  lineage(rank: Rank, index: number): Array<{rank: Rank; name: string}> {
    const out: Array<{rank: Rank; name: string}> = [];
    let row = index;
    for (let depth = RANKS.indexOf(rank); depth >= 0; --depth) {
      out.push({rank: RANKS[depth], name: this.shortName(RANKS[depth], row)});
      row = this.parents[RANKS[depth]][row];
    }
    return out.reverse();
  }

  /** Per rank, leaf name -> rows with that leaf (built once per rank, on first use). */
  private leafRows(rank: Rank): Map<string, number | number[]> {
    let map = this.leafIndex.get(rank);
    if (!map) {
      map = new Map();
      this.leaves[rank].list().forEach((leaf, row) => {
        const seen = map!.get(leaf);
        if (seen === undefined) map!.set(leaf, row);
        else if (typeof seen === 'number') map!.set(leaf, [seen, row]);
        else seen.push(row);
      });
      this.leafIndex.set(rank, map);
    }
    return map;
  }

  private rowsWithLeaf(rank: Rank, leaf: string): number[] {
    const found = this.leafRows(rank).get(leaf);
    return found === undefined ? [] : typeof found === 'number' ? [found] : found;
  }

  /** True when the ancestors of `row` (at `depth`) have the leaves words[0..depth). */
  private lineageIs(depth: number, row: number, words: string[]): boolean {
    for (let r = depth; r > 0; --r) {
      row = this.parents[RANKS[r]][row];
      if (this.leafName(RANKS[r - 1], row) !== words[r - 1]) return false;
    }
    return true;
  }

  /**
   * Finds a taxon by full lineage name, or by short name when that is unambiguous. Looks names
   * up by their last word (one map of leaf names per rank, no map of 454k full names).
   */
  resolve(name: string, what = 'restrictTo'): TaxonRef {
    const trimmed = name.trim().replace(/\s+/g, ' ');
    const words = trimmed.split(' ');
    const leaf = words[words.length - 1];
    if (words.length <= RANKS.length && trimmed) {
      const depth = words.length - 1;
      const exact = this.rowsWithLeaf(RANKS[depth], leaf).filter((row) => this.lineageIs(depth, row, words));
      if (exact.length) return {rank: RANKS[depth], index: exact[0]};  // full names are unique
    }
    const matches: TaxonRef[] = [];
    if (words.length === 1) {
      for (const rank of RANKS.slice(0, -1)) for (const index of this.rowsWithLeaf(rank, leaf)) matches.push({rank, index});
    } else if (words.length === 2) {
      for (const index of this.rowsWithLeaf('species', leaf)) {
        if (this.leafName('genus', this.parents.species[index]) === words[0]) matches.push({rank: 'species', index});
      }
    }
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) {
      throw new BioClipInputError(
          `${what}: "${name}" is ambiguous (${matches.length} taxa: ` +
          matches.slice(0, 3).map((m) => this.fullName(m.rank, m.index)).join('; ') +
          '); give the full lineage name');
    }
    throw new BioClipInputError(`${what}: no taxon named "${name}" in the label bank`);
  }

  /**
   * Species allowed by a checklist of taxa at any rank: 1 for a species inside one of them.
   * Returns uint8 [numSpecies] and how many are allowed.
   */
  allowedSpecies(names: string[]): {mask: Uint8Array; count: number} {
    // Flag the named taxa per rank, then one pass over the species: O(7 N + names), so a
    // regional checklist of thousands of names against 454k species stays fast.
    const flagged = new Map<Rank, Uint8Array>();
    for (const name of names) {
      const {rank, index} = this.resolve(name);
      if (!flagged.has(rank)) flagged.set(rank, new Uint8Array(this.numTaxa(rank)));
      flagged.get(rank)![index] = 1;
    }
    const mask = new Uint8Array(this.numSpecies);
    let count = 0;
    for (let s = 0; s < this.numSpecies; ++s) {
      for (const [rank, flags] of flagged) {
        if (flags[this.ancestors[rank][s]]) {
          mask[s] = 1;
          ++count;
          break;
        }
      }
    }
    return {mask, count};
  }

  /** The query in the stored rows' space: q @ P (float64 [storedDim]) and base = q . mean. */
  prepare(embedding: Float32Array): PreparedQuery {
    const D = this.embedDim;
    const d = this.storedDim;
    const query = new Float64Array(d);
    let base = 0;
    if (this.projection && this.projectionMean) {
      const p = this.projection;
      for (let i = 0; i < D; ++i) {
        const e = embedding[i];
        base += e * this.projectionMean[i];
        const o = i * d;
        for (let j = 0; j < d; ++j) query[j] += e * p[o + j];
      }
    } else {
      for (let j = 0; j < d; ++j) query[j] = embedding[j];
    }
    let table: Float32Array | null = null;
    if (this.dtype === 'int4') {
      // One lookup per stored byte: table[j * 256 + b] = q[2j] * low(b) + q[2j+1] * high(b).
      const bytes = Math.ceil(d / 2);
      table = new Float32Array(bytes * 256);
      for (let j = 0; j < bytes; ++j) {
        const q0 = query[2 * j];
        const q1 = 2 * j + 1 < d ? query[2 * j + 1] : 0;
        for (let b = 0; b < 256; ++b) table[j * 256 + b] = q0 * (((b & 15) ^ 8) - 8) + q1 * (((b >> 4) ^ 8) - 8);
      }
    }
    return {query, base, table};
  }

  /**
   * Scores (cosines, as the device computes them) of rows `start..end` of the species list
   * `species` (all species when null) into out[start..end]. Plain JS, no allocation: callers
   * walk the bank in chunks of SCORE_CHUNK_ROWS.
   */
  scoreRows(prepared: PreparedQuery, species: Int32Array | null, start: number, end: number, out: Float64Array): void {
    const d = this.storedDim;
    const {query: q, base} = prepared;
    if (this.dtype === 'int8') {
      const v = this.rows as Int8Array;
      const scales = this.scales!;
      const d4 = d - (d % 4);
      for (let r = start; r < end; ++r) {
        const s = species ? species[r] : r;
        const o = s * d;
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        let j = 0;
        for (; j < d4; j += 4) {
          a0 += q[j] * v[o + j];
          a1 += q[j + 1] * v[o + j + 1];
          a2 += q[j + 2] * v[o + j + 2];
          a3 += q[j + 3] * v[o + j + 3];
        }
        for (; j < d; ++j) a0 += q[j] * v[o + j];
        out[r] = base + scales[s] * ((a0 + a1) + (a2 + a3));
      }
    } else if (this.dtype === 'int4') {
      const v = this.rows as Uint8Array;
      const scales = this.scales!;
      const t = prepared.table!;
      const width = Math.ceil(d / 2);
      const w2 = width - (width % 2);
      for (let r = start; r < end; ++r) {
        const s = species ? species[r] : r;
        const o = s * width;
        let a0 = 0, a1 = 0;
        let j = 0;
        for (; j < w2; j += 2) {
          a0 += t[(j << 8) | v[o + j]];
          a1 += t[((j + 1) << 8) | v[o + j + 1]];
        }
        if (j < width) a0 += t[(j << 8) | v[o + j]];
        out[r] = base + scales[s] * (a0 + a1);
      }
    } else {
      const h = this.dtype === 'float16' ? halves() : null;
      const v = this.rows as Uint16Array | Float32Array;
      for (let r = start; r < end; ++r) {
        const s = species ? species[r] : r;
        const o = s * d;
        let a0 = 0, a1 = 0;
        let j = 0;
        if (h) {
          for (; j + 1 < d; j += 2) {
            a0 += q[j] * h[v[o + j]];
            a1 += q[j + 1] * h[v[o + j + 1]];
          }
          if (j < d) a0 += q[j] * h[v[o + j]];
        } else {
          for (; j + 1 < d; j += 2) {
            a0 += q[j] * v[o + j];
            a1 += q[j + 1] * v[o + j + 1];
          }
          if (j < d) a0 += q[j] * v[o + j];
        }
        out[r] = base + (a0 + a1);
      }
    }
  }

  /**
   * Every (allowed) species' cosine: float64 [count] into `out` (allocated when too small),
   * scored chunk by chunk. species: the allowed species rows, or null for all.
   */
  cosines(embedding: Float32Array, species: Int32Array | null, out?: Float64Array): Float64Array {
    const count = species ? species.length : this.numSpecies;
    const scores = out && out.length >= count ? out : new Float64Array(count);
    const prepared = this.prepare(embedding);
    if (this.kernel && !species) {
      this.kernel.scoreAll(prepared.query, prepared.base, this.scales!, 0, count, scores);
      return scores;
    }
    for (let start = 0; start < count; start += SCORE_CHUNK_ROWS) {
      this.scoreRows(prepared, species, start, Math.min(count, start + SCORE_CHUNK_ROWS), scores);
    }
    return scores;
  }
}
