"""The student: applications-compatible names and maths, ImageNet loading from a local file,
in-model preprocessing, BN folding, serialization round trips."""
import numpy as np
import pytest

from bioclip_lite_tf.model import layers as bl_layers
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.keras import keras, tf

EMBED_DIM = 24  # deliberately not 512


def _config(**kw):
  base = {"name": "mobilenet_v3_small", "alpha": 0.35, "resolution": 64, "dropout": 0.0,
          "init": "none", "imagenet_weights": ""}
  base.update(kw)
  return base


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_core_outputs_unit_embeddings_of_the_requested_width(name):
  core = model_lib.build_student(_config(name=name), EMBED_DIM)
  x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
  # training=True: BN on batch statistics. At random init and inference-mode BN the features
  # shrink layer after layer to ~1e-7, below L2Normalize's epsilon (a property of the init).
  out = core(x, training=True).numpy()
  assert out.shape == (3, EMBED_DIM)
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
  assert core.input.dtype == tf.float32 and tuple(core.input.shape) == (None, 64, 64, 3)
  for layer_name in (model_lib.NORMALIZATION_NAME, model_lib.PROJECTION_NAME,
                     model_lib.EMBEDDING_NAME):
    core.get_layer(layer_name)  # the export stage finds these by name


def _applications(name, alpha, resolution):
  fn = {"mobilenet_v3_small": keras.applications.MobileNetV3Small,
        "mobilenet_v3_large": keras.applications.MobileNetV3Large}[name]
  return fn(input_shape=(resolution, resolution, 3), alpha=alpha, weights=None, include_top=True)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_imagenet_file_loads_by_name_and_computes_what_applications_computes(tmp_path, name):
  # A weight file in the applications' own format, made from a random applications model.
  reference = _applications(name, 0.35, 64)
  rng = np.random.default_rng(1)
  for layer in reference.layers:   # non-trivial BN statistics, so a misplaced BN would show
    if isinstance(layer, keras.layers.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                         rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
  path = str(tmp_path / "weights_mobilenet_v3.h5")
  reference.save_weights(path)
  core = model_lib.build_student(_config(name=name, init="imagenet", imagenet_weights=path),
                                 EMBED_DIM)
  described = model_lib.initialize(core, _config(name=name, init="imagenet",
                                                 imagenet_weights=path))
  assert "imagenet" in described
  for layer in reference.layers:
    if layer.weights and layer.name != "Logits":
      for a, b in zip(layer.get_weights(), core.get_layer(layer.name).get_weights()):
        np.testing.assert_array_equal(a, b)
  # Same maths up to Conv_2 on the SAME RGB 0..255 input: the ImageNet-initialised student
  # normalizes as the applications model does (x / 127.5 - 1), not with CLIP's mean/std.
  app_rgb = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  ref_feat = keras.Model(reference.input, reference.get_layer("Conv_2").output)(app_rgb)
  ours = keras.Model(core.input, core.get_layer("Conv_2").output)(app_rgb)
  np.testing.assert_allclose(ours.numpy(), ref_feat.numpy(), rtol=2e-3, atol=2e-3)
  normalized = keras.Model(core.input, core.get_layer(model_lib.NORMALIZATION_NAME).output)
  np.testing.assert_allclose(normalized(app_rgb).numpy(), app_rgb / 127.5 - 1.0, atol=1e-5)
  # The BN-folded twin (QAT, export) keeps the normalization of the model it was folded from.
  folded = model_lib.fold_batch_norms(core, _config(name=name, init="none"), EMBED_DIM)
  assert folded.get_layer(model_lib.NORMALIZATION_NAME).mean == [0.5, 0.5, 0.5]


def test_student_from_scratch_normalizes_with_clip_mean_std():
  core = model_lib.build_student(_config(init="none"), EMBED_DIM)
  x = np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
  normalized = keras.Model(core.input, core.get_layer(model_lib.NORMALIZATION_NAME).output)(x)
  want = (x / 255.0 - np.array(bl_layers.CLIP_MEAN)) / np.array(bl_layers.CLIP_STD)
  np.testing.assert_allclose(normalized.numpy(), want, rtol=1e-5, atol=1e-5)


def test_missing_imagenet_weights_fail_naming_init_none(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  with pytest.raises(model_lib.ModelConfigError, match="--init=none"):
    model_lib.find_imagenet_weights(_config(alpha=1.0))
  with pytest.raises(model_lib.ModelConfigError, match="--init=none"):
    model_lib.find_imagenet_weights(_config(), str(tmp_path / "nope.h5"))
  # The Keras cache is searched under the applications' own file names.
  cached = tmp_path / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
  cached.parent.mkdir()
  cached.write_bytes(b"")
  assert model_lib.find_imagenet_weights(_config(alpha=1.0)) == str(cached)


def test_weights_of_another_width_are_refused(tmp_path):
  path = str(tmp_path / "w.h5")
  _applications("mobilenet_v3_small", 0.75, 64).save_weights(path)
  core = model_lib.build_student(_config(alpha=0.35), EMBED_DIM)
  with pytest.raises(model_lib.ModelConfigError, match="width multiplier"):
    model_lib.load_imagenet_weights(core, path)


def test_unknown_model_is_refused():
  with pytest.raises(model_lib.ModelConfigError, match="unknown student model"):
    model_lib.build_student(_config(name="resnet50"), EMBED_DIM)


def _teacher_resize(photo: np.ndarray, size: int) -> np.ndarray:
  """The teacher's path (teacher_cache.teachers.decode_and_resize: PIL, whole photo squashed,
  bicubic, uint8) on a losslessly encoded photo."""
  import io
  from PIL import Image
  from teacher_cache.teachers import decode_and_resize
  buf = io.BytesIO()
  Image.fromarray(photo).save(buf, format="PNG")
  return decode_and_resize(buf.getvalue(), size).astype(np.float64)


def test_with_preprocessing_squashes_any_size_uint8_like_the_teacher():
  """The exported model's own resize gives the teacher's pixels: mean |diff| <= 0.5 of a level,
  max <= 16 levels (PIL rounds to uint8 and clamps between its two passes; measured on noise:
  mean 0.26..0.37, max 13 on a 37 -> 64 upsampling), while an un-antialiased bilinear resize
  misses the same bound by far."""
  core = model_lib.build_student(_config(), EMBED_DIM)
  full = model_lib.with_preprocessing(core, 64)
  pre = keras.Model(full.input, full.get_layer(model_lib.PREPROCESSING_NAME).output)
  rng = np.random.default_rng(2)
  for shape in [(1, 100, 37, 3), (2, 64, 64, 3), (1, 20, 300, 3), (1, 480, 640, 3)]:
    photos = rng.integers(0, 256, shape, dtype=np.uint8)
    resized = pre(photos).numpy()
    for photo, ours in zip(photos, resized):
      diff = np.abs(ours - _teacher_resize(photo, 64))
      assert diff.mean() <= 0.5 and diff.max() <= 16.0, (shape, diff.mean(), diff.max())
      if shape[1:3] != (64, 64):
        naive = tf.image.resize(photo[None].astype(np.float32), (64, 64), "bilinear")[0]
        assert np.abs(naive.numpy() - _teacher_resize(photo, 64)).mean() > 5 * 0.5, shape
    # The model runs the core on exactly that resize.
    np.testing.assert_allclose(full(photos).numpy(), core(resized).numpy(), atol=1e-5)
  assert full.input.dtype == tf.uint8


def test_normalization_is_clip_mean_std():
  layer = bl_layers.PixelNormalization()
  x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
  want = (x / 255.0 - np.array(bl_layers.CLIP_MEAN)) / np.array(bl_layers.CLIP_STD)
  np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-6)


def test_hard_activations():
  x = tf.constant([-4.0, -3.0, -1.0, 0.0, 1.5, 3.0, 5.0])
  relu6 = np.clip(x.numpy() + 3, 0, 6) / 6
  np.testing.assert_allclose(bl_layers.HardSigmoid()(x).numpy(), relu6, atol=1e-7)
  np.testing.assert_allclose(bl_layers.HardSwish()(x).numpy(), x.numpy() * relu6, atol=1e-6)


def test_fold_batch_norms_keeps_outputs_and_zeros():
  config = _config(name="mobilenet_v3_large", resolution=32)
  core = model_lib.build_student(config, EMBED_DIM)
  rng = np.random.default_rng(3)
  for layer in core.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                         rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
  conv = core.get_layer("expanded_conv_3/expand")
  k = conv.get_weights()[0]
  k[:, :, :, ::2] = 0.0
  conv.set_weights([k])
  folded = model_lib.fold_batch_norms(core, config, EMBED_DIM)
  assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
  x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(folded(x).numpy(), core(x, training=False).numpy(), atol=2e-5)
  assert np.all(folded.get_layer("expanded_conv_3/expand").get_weights()[0][:, :, :, ::2] == 0)


def test_serialization_round_trip(tmp_path):
  core = model_lib.build_student(_config(dropout=0.1), EMBED_DIM)
  full = model_lib.with_preprocessing(core, 64)
  path = str(tmp_path / "student.h5")
  full.save(path)
  again = keras.models.load_model(path, compile=False)
  photos = np.random.default_rng(4).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
  np.testing.assert_array_equal(again(photos).numpy(), full(photos).numpy())
  for cls in bl_layers.CUSTOM_OBJECTS.values():
    layer = cls(1) if cls is bl_layers.SquashResize else cls()
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
