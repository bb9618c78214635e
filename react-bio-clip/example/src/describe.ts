import type {Classification} from 'react-bio-clip';

/** "genus Turdus, 0.93 (Animalia > ... > Turdus)", or "?" when not even a kingdom clears the threshold. */
export function describeBest(c: Classification): string {
  if (!c.best) return '?';
  const top = c.species[0];
  const lineage = top ? top.lineage.map((t) => t.name).join(' > ') : '';
  return `${c.best.rank} ${c.best.name}, ${c.best.probability.toFixed(2)}\n${lineage}`;
}
