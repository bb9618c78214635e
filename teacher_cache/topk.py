"""Top-k species logits and the logsumexp over all species, without materializing the full
[n, num_species] logit matrix."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch


def streaming_topk(image_embedding: torch.Tensor, species_embedding: Union[np.ndarray, torch.Tensor],
                   logit_scale: float, k: int, chunk_size: int = 65536
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of streaming_topk_logsumexp (same arguments)."""
    values, indices, _ = streaming_topk_logsumexp(image_embedding, species_embedding, logit_scale,
                                                  k, chunk_size)
    return values, indices


def streaming_topk_logsumexp(image_embedding: torch.Tensor,
                             species_embedding: Union[np.ndarray, torch.Tensor],
                             logit_scale: float, k: int, chunk_size: int = 65536
                             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k and logsumexp of `logit_scale * image_embedding @ species_embedding.T`, chunked
    over species.

    Args:
      image_embedding: float32 [n, D], L2-normalized (CPU or CUDA; the result is on CPU).
      species_embedding: float32 [S, D] (numpy memmap or tensor, on any device), L2-normalized;
        read one chunk of chunk_size rows at a time, so S can be 454k with bounded memory
        ([n, chunk_size] logits at a time).
      logit_scale: the multiplier (exp already applied).
      k: how many species to keep; clipped to S.
    Returns:
      (values float32 [n, k'], indices int32 [n, k'], logsumexp float32 [n]), k' = min(k, S),
      highest logit first; logsumexp is over ALL S species (accumulated in float64 across
      chunks with logaddexp, so it is exact to float32 however many chunks there are).
    """
    device = image_embedding.device
    image_embedding = image_embedding.float()
    num_species = species_embedding.shape[0]
    k = min(k, num_species)
    n = image_embedding.shape[0]
    best_v = torch.empty((n, 0), dtype=torch.float32, device=device)
    best_i = torch.empty((n, 0), dtype=torch.int64, device=device)
    lse = torch.full((n,), -float("inf"), dtype=torch.float64, device=device)
    for start in range(0, num_species, chunk_size):
        block = species_embedding[start:start + chunk_size]
        if isinstance(block, np.ndarray):
            block = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        block = block.to(device=device, dtype=torch.float32, non_blocking=True)
        logits = logit_scale * (image_embedding @ block.T)
        lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1).double())
        v, i = logits.topk(min(k, block.shape[0]), dim=1)
        best_v = torch.cat([best_v, v], dim=1)
        best_i = torch.cat([best_i, i + start], dim=1)
        if best_v.shape[1] > k:
            best_v, pos = best_v.topk(k, dim=1)
            best_i = best_i.gather(1, pos)
    # Candidates from different chunks arrive unsorted; one final sort puts them in order.
    best_v, pos = best_v.sort(dim=1, descending=True)
    best_i = best_i.gather(1, pos)
    return best_v.float().cpu(), best_i.to(torch.int32).cpu(), lse.float().cpu()
