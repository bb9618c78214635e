"""The one implementation of the student's metrics (numpy only), used by training's validation
(train/validation.py) and by evaluate (evaluate/evaluation.py).

  ranks.py        softmax, species -> rank probability sums, top-k, the teacher's rank top-k
  hierarchy.py    LCA heights: mistake severity, hierarchical distance@k (Bertinetto et al.,
                  CVPR 2020), hierarchical precision/recall (Silla & Freitas 2011)
  abstention.py   the package's `best` (deepest rank clearing a threshold) and its
                  coverage-accuracy curve over thresholds
  accumulator.py  MetricsAccumulator: batches in, every section of report.json out

Conventions: ranks are formats.ranks.RANKS (kingdom .. species, depth 0 .. 6); `ancestors` is
int [7, S] with ancestors[d, s] = the row at depth d of species s's taxon (last row = s).
"""
from bioclip_lite_tf.metrics.abstention import (DEFAULT_SIMILARITY_FLOOR,  # noqa: F401
                                                DEFAULT_THRESHOLD, abstention_curve,
                                                best_depth)
from bioclip_lite_tf.metrics.accumulator import MetricsAccumulator, embedding_cosine  # noqa: F401
from bioclip_lite_tf.metrics.hierarchy import (hierarchical_distance_at_k,  # noqa: F401
                                               hierarchical_precision_recall, lca_height,
                                               mistake_severity, species_lineage,
                                               taxon_lineages)
from bioclip_lite_tf.metrics.ranks import (RankAggregator, softmax, teacher_rank_topk,  # noqa: F401
                                           teacher_topk_probs, topk)
