"""The student model: MobileNetV3 (mobilenet_v3), its weightless layers (layers), ImageNet
initialisation (imagenet) and BatchNorm folding (batchnorm_folding)."""
from bioclip_lite_tf.model.batchnorm_folding import fold_batch_norms  # noqa: F401
from bioclip_lite_tf.model.imagenet import (find_imagenet_weights,  # noqa: F401
                                            imagenet_weight_files, initialize, keras_cache_dir,
                                            load_imagenet_weights)
from bioclip_lite_tf.model.mobilenet_v3 import (BN_EPSILON, BN_MOMENTUM,  # noqa: F401
                                                EMBEDDING_NAME, INPUT_NAME, NORMALIZATION_NAME,
                                                PREPROCESSING_NAME, PROJECTION_NAME, STUDENTS,
                                                Architecture, Block, ModelConfigError,
                                                build_student, input_normalization,
                                                make_divisible,
                                                with_preprocessing)
