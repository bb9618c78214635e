"""Export: the plain inference graph (plain_graph), TF.js (tfjs), TFLite (tflite), SavedModels
(saved_model), the device label bank (device_bank) and the whole export (exporter).
`python -m bioclip_lite_tf.export` is the CLI (__main__); these modules define no flags."""
from formats.export_manifest import LABELS_DIR, SAVED_MODEL_DIR, TFJS_DIR, TFLITE_PATH  # noqa: F401
from bioclip_lite_tf.export.exporter import (CLIP_MEAN, CLIP_STD, FORMAT_VERSION,  # noqa: F401
                                             ExportInputError, export, load_qat_model,
                                             model_embed_dim, model_resolution, qat_model_path,
                                             representative_photos, synthetic_photos)
from bioclip_lite_tf.export.saved_model import (save_core_saved_model,  # noqa: F401
                                                save_serving_saved_model)
