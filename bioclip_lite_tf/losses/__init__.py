"""Distillation losses, one module each, chosen by name from the registry `LOSSES`.

Every loss has the signature `fn(outputs, batch, bank, **params) -> float32 [B]` (per example;
the trainer averages over the global batch with tf.nn.compute_average_loss), where

  outputs.embedding       float32 [B, D]  L2-normalized student embedding
  outputs.species_logits  float32 [B, S]  logit_scale * embedding @ species_text_embeddings.T
  batch['teacher_embedding']     float32 [B, D]  L2-normalized
  batch['topk_species_indices']  int32 [B, K]    the teacher's top-k species rows
  batch['topk_species_logits']   float32 [B, K]  the teacher's (scaled) logits for them
  batch['labels']                int32 [B, 7]    true rows, kingdom..species

The label bank is the student's zero-shot head: frozen teacher text embeddings, so taxa can be
added later without retraining. Its logit_scale is the teacher's (also frozen).

Teacher distribution from top-k logits: softmax over the K logits only, the rest of the species
get zero probability (the top-k renormalized). With K >= 5 and BioCLIP's logit scale ~100 the
mass outside the top-k is small, and nothing better is known about it.
"""
from bioclip_lite_tf.losses.common import (LabelBankTensors, StudentOutputs,  # noqa: F401
                                           rank_log_probs, rank_probs, species_logits,
                                           teacher_topk_probs)
from bioclip_lite_tf.losses.contrastive import contrastive  # noqa: F401
from bioclip_lite_tf.losses.embedding import embedding_distillation  # noqa: F401
from bioclip_lite_tf.losses.hierarchical import hierarchical  # noqa: F401
from bioclip_lite_tf.losses.registry import LOSSES, total_loss  # noqa: F401
from bioclip_lite_tf.losses.soft_label import soft_label_distillation  # noqa: F401
