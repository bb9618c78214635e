/**
 * The device label bank (labels/label_bank.json + labels/label_bank.bin, docs/FORMATS.md
 * section 4): the taxonomy with parent links, and one text embedding per species.
 * Pure JS, no tensors: the model owns the tensors made from it.
 */
import {BioClipFormatError, BioClipInputError} from './errors';
import {halfToFloat} from './float16';
import {LabelBankJson, Rank, RANKS, RankTable} from './types';

export const SUPPORTED_LABEL_BANK_VERSIONS = [1];
/** label_bank.json's `format` (bioclip_lite_tf/device_label_bank.py). */
export const LABEL_BANK_FORMAT = 'bioclip-lite-device-label-bank';

export interface TaxonRef {
  rank: Rank;
  index: number;
}

function fail(where: string, what: string): never {
  throw new BioClipFormatError(`label bank ${where}: ${what}`);
}

export class LabelBank {
  readonly embedDim: number;
  readonly numSpecies: number;
  readonly logitScale: number;
  readonly dtype: string;
  readonly formatVersion: number;
  readonly tables: Record<Rank, RankTable>;
  /** Species text embeddings as the device uses them, float32 [numSpecies * embedDim] row-major. */
  readonly speciesEmbeddings: Float32Array;
  /** Per rank: for each species row, the row of its ancestor at that rank (itself for species). */
  readonly ancestors: Record<Rank, Int32Array>;
  private fullNames?: Map<string, TaxonRef>;
  private shortNames?: Map<string, TaxonRef[]>;

  private constructor(json: LabelBankJson, embeddings: Float32Array, ancestors: Record<Rank, Int32Array>) {
    this.embedDim = json.embed_dim;
    this.numSpecies = json.species_embeddings.shape[0];
    this.logitScale = json.logit_scale;
    this.dtype = json.dtype;
    this.formatVersion = json.format_version;
    this.tables = json.taxa as Record<Rank, RankTable>;
    this.speciesEmbeddings = embeddings;
    this.ancestors = ancestors;
  }

  /**
   * Checks and decodes a label bank.
   * @param json the parsed label_bank.json
   * @param bin the bytes of label_bank.bin
   * @param where a name for error messages (a URL or path)
   */
  static parse(json: LabelBankJson, bin: Uint8Array, where: string): LabelBank {
    if (json === null || typeof json !== 'object') fail(where, 'label_bank.json is not a JSON object');
    const format = (json as {format?: unknown}).format;
    if (format !== undefined && format !== LABEL_BANK_FORMAT) {
      fail(where, `format is "${format}", expected "${LABEL_BANK_FORMAT}"`);
    }
    if (!SUPPORTED_LABEL_BANK_VERSIONS.includes(json.format_version)) {
      fail(where, `format_version ${json.format_version} is not supported ` +
           `(this package reads ${SUPPORTED_LABEL_BANK_VERSIONS.join(', ')})`);
    }
    if (!Array.isArray(json.ranks) || json.ranks.join(',') !== RANKS.join(',')) {
      fail(where, `ranks must be ${RANKS.join(',')}, got ${JSON.stringify(json.ranks)}`);
    }
    if (!(json.logit_scale > 0)) fail(where, `logit_scale must be > 0, got ${json.logit_scale}`);
    const layout = json.species_embeddings;
    if (!layout || !Array.isArray(layout.shape) || layout.shape.length !== 2) {
      fail(where, 'species_embeddings.shape must be [num_species, embed_dim]');
    }
    const [n, d] = layout.shape;
    if (d !== json.embed_dim) {
      fail(where, `species_embeddings.shape[1]=${d} but embed_dim=${json.embed_dim}`);
    }
    if (!json.taxa) fail(where, 'taxa is missing');
    let previous = 0;
    RANKS.forEach((rank, depth) => {
      const table = json.taxa[rank];
      if (!table || !Array.isArray(table.names)) fail(where, `taxa.${rank}.names is missing`);
      const size = table.names.length;
      for (const key of ['parents', 'common_names'] as const) {
        if (!Array.isArray(table[key]) || table[key].length !== size) {
          fail(where, `taxa.${rank}.${key} must have ${size} entries like taxa.${rank}.names`);
        }
      }
      table.parents.forEach((parent, row) => {
        const ok = depth === 0 ? parent === -1 : Number.isInteger(parent) && parent >= 0 && parent < previous;
        if (!ok) fail(where, `taxa.${rank}.parents[${row}]=${parent} is not a row of the previous rank`);
      });
      previous = size;
    });
    if (json.taxa.species.names.length !== n) {
      fail(where, `${json.taxa.species.names.length} species names but ${n} embedding rows`);
    }
    const embeddings = decodeEmbeddings(json, bin, where);
    const ancestors = {} as Record<Rank, Int32Array>;
    let current = Int32Array.from({length: n}, (_, i) => i);
    for (let depth = RANKS.length - 1; depth >= 0; --depth) {
      ancestors[RANKS[depth]] = current;
      if (depth > 0) {
        const parents = json.taxa[RANKS[depth]].parents;
        current = current.map((row) => parents[row]);
      }
    }
    return new LabelBank(json, embeddings, ancestors);
  }

  numTaxa(rank: Rank): number {
    return this.tables[rank].names.length;
  }

  /** "Turdus migratorius" for a species, the last word otherwise. */
  shortName(rank: Rank, index: number): string {
    const words = this.tables[rank].names[index].split(' ');
    return rank === 'species' ? words.slice(-2).join(' ') : words[words.length - 1];
  }

  commonName(rank: Rank, index: number): string | null {
    return this.tables[rank].common_names[index] || null;
  }

  /** From kingdom down to the taxon itself. */
  lineage(rank: Rank, index: number): Array<{rank: Rank; name: string}> {
    const out: Array<{rank: Rank; name: string}> = [];
    let row = index;
    for (let depth = RANKS.indexOf(rank); depth >= 0; --depth) {
      out.push({rank: RANKS[depth], name: this.shortName(RANKS[depth], row)});
      row = this.tables[RANKS[depth]].parents[row];
    }
    return out.reverse();
  }

  /** Finds a taxon by full lineage name, or by short name when that is unambiguous. */
  resolve(name: string): TaxonRef {
    if (!this.fullNames || !this.shortNames) {
      // Built on first use only: at 454k species these maps are large.
      this.fullNames = new Map();
      this.shortNames = new Map();
      for (const rank of RANKS) {
        this.tables[rank].names.forEach((full, index) => {
          const ref = {rank, index};
          this.fullNames!.set(full, ref);
          const short = this.shortName(rank, index);
          const list = this.shortNames!.get(short);
          if (list) list.push(ref); else this.shortNames!.set(short, [ref]);
        });
      }
    }
    const trimmed = name.trim().replace(/\s+/g, ' ');
    const exact = this.fullNames.get(trimmed);
    if (exact) return exact;
    const matches = this.shortNames.get(trimmed) ?? [];
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) {
      throw new BioClipInputError(
          `restrictTo: "${name}" is ambiguous (${matches.length} taxa: ` +
          matches.slice(0, 3).map((m) => this.tables[m.rank].names[m.index]).join('; ') +
          '); give the full lineage name');
    }
    throw new BioClipInputError(`restrictTo: no taxon named "${name}" in the label bank`);
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
}

function decodeEmbeddings(json: LabelBankJson, bin: Uint8Array, where: string): Float32Array {
  const layout = json.species_embeddings;
  const [n, d] = layout.shape;
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const out = new Float32Array(n * d);
  const need = (end: number, what: string) => {
    if (end > bin.byteLength) {
      fail(where, `${layout.file} has ${bin.byteLength} bytes but the ${what} end at byte ${end}`);
    }
  };
  const offset = layout.offset ?? 0;
  if (json.dtype === 'int8') {
    if (layout.scales_offset === undefined) fail(where, 'int8 embeddings need species_embeddings.scales_offset');
    if ((layout.scales_dtype ?? 'float32') !== 'float32') {
      fail(where, `scales_dtype ${layout.scales_dtype} is not supported (float32 only)`);
    }
    need(offset + n * d, 'int8 embeddings');
    need(layout.scales_offset + 4 * n, 'per-row scales');
    const values = new Int8Array(bin.buffer, bin.byteOffset + offset, n * d);
    for (let row = 0; row < n; ++row) {
      const scale = view.getFloat32(layout.scales_offset + 4 * row, true);
      for (let col = 0; col < d; ++col) out[row * d + col] = values[row * d + col] * scale;
    }
  } else if (json.dtype === 'float16') {
    need(offset + 2 * n * d, 'float16 embeddings');
    for (let i = 0; i < n * d; ++i) out[i] = halfToFloat(view.getUint16(offset + 2 * i, true));
  } else if (json.dtype === 'float32') {
    need(offset + 4 * n * d, 'float32 embeddings');
    for (let i = 0; i < n * d; ++i) out[i] = view.getFloat32(offset + 4 * i, true);
  } else {
    fail(where, `dtype "${json.dtype}" is not one of int8, float16, float32`);
  }
  return out;
}
