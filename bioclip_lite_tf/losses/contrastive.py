"""CLIP-style contrastive loss against the frozen species text embeddings."""
from __future__ import annotations

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import LabelBankTensors, StudentOutputs


def contrastive(outputs: StudentOutputs, batch, bank: LabelBankTensors) -> tf.Tensor:
  """CLIP-style symmetric InfoNCE between images and their species' frozen text embeddings. [B].

  Logits = logit_scale * image_emb @ text_emb[true species of each example].T, [B, B]. Photos
  of the same species in one batch are all positives (targets spread evenly over them), so
  duplicates are not pushed apart. Per example: mean of its image->text row loss and its
  text->image column loss.
  """
  species = batch["labels"][:, -1]
  text = tf.gather(bank.species_text_embeddings, species)                    # [B, D]
  logits = bank.logit_scale * tf.matmul(outputs.embedding, text, transpose_b=True)
  same = tf.cast(tf.equal(species[:, None], species[None, :]), tf.float32)   # [B, B]
  targets = same / tf.reduce_sum(same, axis=-1, keepdims=True)
  image_to_text = -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)
  text_to_image = -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=0), axis=0)
  return 0.5 * (image_to_text + text_to_image)
