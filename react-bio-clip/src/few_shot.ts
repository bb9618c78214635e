/**
 * On-device few-shot taxa, SimpleShot style (Wang et al. 2019, as used in the BioCLIP paper):
 * nearest centroid on centred, L2-normalized embeddings ("CL2N").
 *
 * - Each photo's embedding is L2-normalized (the model already outputs unit vectors).
 * - A taxon keeps the mean of its photos' embeddings and their count (sufficient statistics, so
 *   adding photos later and merging imports are exact).
 * - The centre is the mean of all support photos of all user taxa: the only base set a phone
 *   has. Prototype = normalize(taxon mean - centre); a photo is scored by
 *   cos(normalize(embedding - centre), prototype).
 * - With a single user taxon the centre would be the prototype itself, so no centring is done
 *   (plain cosine to the normalized mean).
 *
 * Pure JS; the model turns the result into tensors.
 */
import {BioClipFormatError, BioClipInputError, BioClipMismatchError} from './errors';
import {PrototypesJson} from './types';

interface UserTaxon {
  commonName: string;
  count: number;
  /** Mean of the L2-normalized photo embeddings, float64 [D] (summed in float64). */
  mean: Float64Array;
}

export interface Prototypes {
  names: string[];
  commonNames: string[];
  /** Centred, renormalized prototypes, float32 [P * D] row-major. */
  prototypes: Float32Array;
  /** float32 [D]; zeros when there is a single taxon (no centring). */
  centre: Float32Array;
  /** The taxa's normalized means, not centred, float32 [P * D] row-major: what the similarity floor is compared to. */
  means: Float32Array;
}

function normalized(v: ArrayLike<number>): Float32Array {
  let norm = 0;
  for (let i = 0; i < v.length; ++i) norm += v[i] * v[i];
  norm = Math.sqrt(norm) || 1;
  return Float32Array.from(v, (x) => x / norm);
}

export class PrototypeStore {
  private readonly taxa = new Map<string, UserTaxon>();

  constructor(readonly embedDim: number, readonly modelSha256: string | null) {}

  get names(): string[] {
    return [...this.taxa.keys()];
  }

  get size(): number {
    return this.taxa.size;
  }

  /** Adds photos' embeddings (each float32 [D]) to a taxon, creating it if new. */
  add(name: string, embeddings: Float32Array[], commonName?: string): void {
    if (typeof name !== 'string' || !name.trim()) throw new BioClipInputError('addTaxon: the name must be a non-empty string');
    if (embeddings.length === 0) throw new BioClipInputError(`addTaxon("${name}"): give at least one photo`);
    const taxon = this.taxa.get(name) ?? {commonName: commonName ?? '', count: 0, mean: new Float64Array(this.embedDim)};
    if (commonName !== undefined) taxon.commonName = commonName;
    for (const embedding of embeddings) {
      const unit = normalized(embedding);
      taxon.count += 1;
      for (let i = 0; i < this.embedDim; ++i) taxon.mean[i] += (unit[i] - taxon.mean[i]) / taxon.count;
    }
    this.taxa.set(name, taxon);
  }

  remove(name: string): boolean {
    return this.taxa.delete(name);
  }

  compute(): Prototypes {
    const names = this.names;
    const d = this.embedDim;
    const centre = new Float32Array(d);
    if (names.length > 1) {
      let total = 0;
      for (const taxon of this.taxa.values()) {
        for (let i = 0; i < d; ++i) centre[i] += taxon.mean[i] * taxon.count;
        total += taxon.count;
      }
      for (let i = 0; i < d; ++i) centre[i] /= total;
    }
    const prototypes = new Float32Array(names.length * d);
    const means = new Float32Array(names.length * d);
    names.forEach((name, row) => {
      const mean = this.taxa.get(name)!.mean;
      prototypes.set(normalized(Array.from(mean, (x, i) => x - centre[i])), row * d);
      means.set(normalized(mean), row * d);
    });
    return {names, commonNames: names.map((n) => this.taxa.get(n)!.commonName), prototypes, centre, means};
  }

  toJson(): PrototypesJson {
    return {
      format: 'react-bio-clip/prototypes',
      format_version: 1,
      embed_dim: this.embedDim,
      model_sha256: this.modelSha256,
      taxa: [...this.taxa.entries()].map(([name, t]) => ({
        name, common_name: t.commonName, count: t.count, mean_embedding: Array.from(t.mean),
      })),
    };
  }

  /** Adds the taxa of an export (merging counts into same-named taxa) or replaces all. */
  fromJson(input: PrototypesJson | string, replace: boolean): void {
    let json: PrototypesJson;
    try {
      json = typeof input === 'string' ? JSON.parse(input) : input;
    } catch (error) {
      throw new BioClipFormatError(`importPrototypes: not valid JSON: ${(error as Error).message}`);
    }
    if (!json || json.format !== 'react-bio-clip/prototypes' || json.format_version !== 1 || !Array.isArray(json.taxa)) {
      throw new BioClipFormatError('importPrototypes: not a react-bio-clip/prototypes format_version 1 document');
    }
    if (json.embed_dim !== this.embedDim) {
      throw new BioClipMismatchError(
          `importPrototypes: the prototypes are ${json.embed_dim}-d but this model embeds in ${this.embedDim}-d`);
    }
    if (json.model_sha256 && this.modelSha256 && json.model_sha256 !== this.modelSha256) {
      throw new BioClipMismatchError(
          `importPrototypes: the prototypes were made with model ${json.model_sha256}, this is ${this.modelSha256}; ` +
          'embeddings of different models are not comparable');
    }
    for (const t of json.taxa) {
      if (typeof t.name !== 'string' || !Array.isArray(t.mean_embedding) || t.mean_embedding.length !== this.embedDim ||
          !t.mean_embedding.every(Number.isFinite) || !(Number.isInteger(t.count) && t.count > 0)) {
        throw new BioClipFormatError(`importPrototypes: taxon ${JSON.stringify(t.name)} is malformed`);
      }
    }
    if (replace) this.taxa.clear();
    for (const t of json.taxa) {
      const existing = this.taxa.get(t.name);
      if (!existing) {
        this.taxa.set(t.name, {commonName: t.common_name ?? '', count: t.count, mean: Float64Array.from(t.mean_embedding)});
        continue;
      }
      const total = existing.count + t.count;
      for (let i = 0; i < this.embedDim; ++i) {
        existing.mean[i] = (existing.mean[i] * existing.count + t.mean_embedding[i] * t.count) / total;
      }
      existing.count = total;
    }
  }
}
