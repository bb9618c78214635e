"""The seven Linnaean ranks every stage uses, in order from the root of the tree down."""
from __future__ import annotations

from typing import Tuple

RANKS: Tuple[str, ...] = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
NUM_RANKS = len(RANKS)
SPECIES = NUM_RANKS - 1
