"""The teacher: an open_clip model behind a small registry/factory.

  load_teacher("hf-hub:imageomics/bioclip")              BioCLIP from the Hugging Face hub (cache)
  load_teacher("local-dir:/path/to/bioclip")             an open_clip_config.json + weights folder
  load_teacher("ViT-B-16", "/path/to/checkpoint.pt")     an open_clip architecture + a local file
  load_teacher("ViT-B-16", "none")                       random weights (tests, offline demo)
  load_teacher("bioclip")                                alias of hf-hub:imageomics/bioclip

Preprocessing follows BioCLIP's inference package: squash-resize the whole photo to S x S with
bicubic interpolation (no centre crop), scale to 0..1, normalize with the model's mean/std.
S, mean and std come from the model's own preprocess config (224 and the CLIP mean/std for
BioCLIP); the resize mode is fixed to squash whatever the config says.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from absl import logging
from PIL import Image

import open_clip

from formats.hashing import sha256_file

# Registers our tiny test architecture next to open_clip's built-ins.
_CONFIG_DIR = os.path.join(os.path.dirname(__file__), "model_configs")
open_clip.add_model_config(_CONFIG_DIR)

DEFAULT_TEACHER = "hf-hub:imageomics/bioclip"
TEACHER_ALIASES: Dict[str, str] = {
    "bioclip": "hf-hub:imageomics/bioclip",
    "bioclip-2": "hf-hub:imageomics/bioclip-2",
}
RANDOM_WEIGHTS = ("none", "random")
AUTOCAST_DTYPES: Dict[str, Optional[torch.dtype]] = {"bf16": torch.bfloat16,
                                                     "fp16": torch.float16, "off": None}
# PIL's own default bomb limit (~89.5 MP); 10000x10000 photos are over it and get skipped.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


class TeacherError(ValueError):
    """The teacher cannot be built (unknown name, missing checkpoint, hub unreachable)."""


class SkipSample(Exception):
    """A photo that cannot be used; str(e) is the reason that goes into the skip log."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Geometry and normalization applied before the image tower."""

    size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    resize: str = "squash"
    interpolation: str = "bicubic"

    def to_json(self) -> Dict[str, object]:
        return {"size": self.size, "resize": self.resize, "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std)}


def decode_and_resize(data: Optional[bytes], size: int,
                      max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encoded photo -> uint8 [size, size, 3] RGB, squashed with PIL bicubic.

    Raises SkipSample for an empty file, an undecodable or truncated image, or one with more
    than max_pixels pixels (checked from the header, before any pixel is decoded).
    Thread-safe; PIL releases the GIL while decoding and resizing.
    """
    return np.asarray(_decode_rgb(data, max_pixels).resize((size, size), Image.BICUBIC),
                      dtype=np.uint8)


def decode_views(data: Optional[bytes], size: int, key: str, views: Dict[str, object],
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded photo -> (uint8 [V, size, size, 3], view_boxes int32 [V, 4], view_flips uint8 [V]).

    View v is exactly: decoded RGB photo -> crop view_boxes[v] -> mirror if view_flips[v] ->
    squash to size x size, PIL bicubic (docs/FORMATS.md section 1). View 0 is the whole photo,
    so it equals decode_and_resize. Boxes come from formats.teacher_cache.sample_views (a
    function of the key and the photo size). Raises SkipSample like decode_and_resize.
    """
    from formats.teacher_cache import sample_views
    rgb = _decode_rgb(data, max_pixels)
    boxes, flips = sample_views(key, rgb.height, rgb.width, views)
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for v, ((y0, x0, y1, x1), flip) in enumerate(zip(boxes.tolist(), flips.tolist())):
        view = rgb if v == 0 else rgb.crop((x0, y0, x1, y1))
        if flip:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        out[v] = np.asarray(view.resize((size, size), Image.BICUBIC), dtype=np.uint8)
    return out, boxes, flips


def _decode_rgb(data: Optional[bytes], max_pixels: int) -> Image.Image:
    """The decoded photo as a PIL RGB image; SkipSample with the reason otherwise."""
    if not data:
        raise SkipSample("empty image file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise SkipSample(f"image too large: {w}x{h} pixels > --max_image_pixels={max_pixels}")
            img.load()
            rgb = img.convert("RGB")
    except SkipSample:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SkipSample(f"image too large (decompression-bomb guard): {e}")
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise SkipSample(f"corrupt or undecodable image: {type(e).__name__}: {e}")
    return rgb


def _sha256_state(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Teacher:
    """An open_clip model plus what the cache records about it.

    Attributes: teacher_id, pretrained, embed_dim (D), logit_scale (float, exp already
    applied), preprocessing, checkpoint_sha256, real_weights.
    """

    def __init__(self, model, tokenizer, teacher_id: str, pretrained: str,
                 checkpoint_sha256: str, real_weights: bool, device: str = "cpu"):
        # autocast: the dtype of the image tower's forward on CUDA (None: float32). CPU runs
        # always use float32 (set_device).
        self.autocast: Optional[torch.dtype] = None
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.teacher_id = teacher_id
        self.pretrained = pretrained
        self.checkpoint_sha256 = checkpoint_sha256
        self.real_weights = real_weights
        self.device = device
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        if isinstance(size, (tuple, list)):
            if size[0] != size[1]:
                raise TeacherError(f"teacher {teacher_id}: non-square input {size} is not supported")
            size = size[0]
        self.preprocessing = Preprocessing(int(size), tuple(float(v) for v in cfg["mean"]),
                                           tuple(float(v) for v in cfg["std"]))
        self._mean = torch.tensor(self.preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
        with torch.no_grad():
            self.logit_scale = float(model.logit_scale.exp().item())
            probe = self.tokenizer(["a photo of Animalia."]).to(device)
            self.embed_dim = int(model.encode_text(probe).shape[-1])

    def describe(self) -> Dict[str, object]:
        return {"id": self.teacher_id, "pretrained": self.pretrained,
                "checkpoint_sha256": self.checkpoint_sha256, "embed_dim": self.embed_dim,
                "logit_scale": self.logit_scale, "real_weights": self.real_weights}

    def set_device(self, device: str, autocast: str = "bf16") -> "Teacher":
        """Moves the model to device ('cpu', 'cuda', 'cuda:N'). autocast: 'bf16' (default),
        'fp16' or 'off'; it applies on CUDA only (the CPU path stays float32, as before)."""
        if autocast not in AUTOCAST_DTYPES:
            raise TeacherError(f"--autocast={autocast!r}: expected one of {sorted(AUTOCAST_DTYPES)}")
        self.device = device
        self.model = self.model.to(device)
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        self.autocast = AUTOCAST_DTYPES[autocast] if device.startswith("cuda") else None
        return self

    def normalize_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [n, S, S, 3] -> float32 [n, 3, S, S], the same arithmetic as torchvision's
        ToTensor + Normalize, so the result matches open_clip's transform bit for bit."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div(255)
        return (x - self._mean) / self._std

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [n, S, S, 3] -> float32 [n, D], L2-normalized image embeddings, on the
        teacher's device. On CUDA the uint8 batch is copied (non-blocking from pinned memory)
        and normalized on the GPU, and the forward runs under autocast (bf16 by default)."""
        x = self.normalize_pixels(pixels.to(self.device, non_blocking=True))
        with torch.autocast(device_type="cuda", dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            emb = self.model.encode_image(x)
        return F.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """list of n str -> float32 [n, D], L2-normalized text embeddings."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()


# ---- the registry: how each kind of --teacher value is loaded ------------------------------

def _load_from_hub(name: str, pretrained: str, init_seed: int) -> Teacher:
    model_id = name[len("hf-hub:"):]
    try:
        model = open_clip.create_model(name)
        tokenizer = open_clip.get_tokenizer(name)
        from open_clip.pretrained import download_pretrained_from_hf
        ckpt = download_pretrained_from_hf(model_id)  # already cached by create_model
    except Exception as e:  # hub errors surface as RuntimeError/OSError/HTTP errors
        hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise TeacherError(
            f"cannot load teacher {name!r}: the Hugging Face hub cannot be reached and the "
            f"model is not in the local cache (HF_HOME={hf_home}). On a machine with internet "
            f"run `huggingface-cli download {model_id}` and copy the cache here, or pass "
            f"--teacher=ViT-B-16 --pretrained=/path/to/checkpoint. ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
    return Teacher(model, tokenizer, name, "", sha256_file(ckpt), real_weights=True)


def _load_from_local_dir(name: str, pretrained: str, init_seed: int) -> Teacher:
    folder = name[len("local-dir:"):]
    if not os.path.isdir(folder):
        raise TeacherError(f"--teacher {name!r}: directory {folder!r} not found")
    try:
        model = open_clip.create_model(name)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:
        raise TeacherError(f"--teacher {name!r}: cannot load the model folder: {e}") from None
    # Hash the very file open_clip picked (its own helper, so the choice cannot diverge).
    from pathlib import Path
    from open_clip.factory import _find_checkpoint_in_dir
    ckpt = _find_checkpoint_in_dir(Path(folder))
    sha = sha256_file(ckpt) if ckpt else "random:" + _sha256_state(model)
    return Teacher(model, tokenizer, name, "", sha, real_weights=bool(ckpt))


def _load_architecture(name: str, pretrained: str, init_seed: int) -> Teacher:
    if name not in open_clip.list_models():
        raise TeacherError(
            f"unknown teacher {name!r}: not an alias ({sorted(TEACHER_ALIASES)}), not "
            f"'hf-hub:ORG/NAME' or 'local-dir:PATH', and not an open_clip architecture "
            f"(e.g. ViT-B-16, ViT-L-14; see open_clip.list_models())")
    if not pretrained:
        raise TeacherError(
            f"--teacher={name} needs --pretrained: a checkpoint file, an open_clip tag, or "
            f"'none' for random weights (random-weight targets are only good for tests)")
    if pretrained.lower() in RANDOM_WEIGHTS:
        # Seeded, so every worker and every resumed run builds the very same random teacher.
        torch.manual_seed(init_seed)
        model = open_clip.create_model(name, pretrained=None)
        return Teacher(model, open_clip.get_tokenizer(name), name, "none",
                       "random:" + _sha256_state(model), real_weights=False)
    is_file = os.path.isfile(pretrained)
    if not is_file and (os.sep in pretrained or os.path.splitext(pretrained)[1]):
        raise TeacherError(f"--pretrained {pretrained!r}: checkpoint file not found")
    try:
        model = open_clip.create_model(name, pretrained=pretrained)
    except Exception as e:
        raise TeacherError(f"--teacher={name} --pretrained={pretrained}: cannot load weights: "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    if is_file:
        sha = sha256_file(pretrained)
    else:
        sha = "tag:" + _sha256_state(model)
    return Teacher(model, open_clip.get_tokenizer(name), name, pretrained, sha, real_weights=True)


TEACHER_LOADERS: Dict[str, Callable[[str, str, int], Teacher]] = {
    "hf-hub": _load_from_hub,
    "local-dir": _load_from_local_dir,
    "open_clip": _load_architecture,
}


def teacher_kind(name: str) -> str:
    for prefix in ("hf-hub", "local-dir"):
        if name.startswith(prefix + ":"):
            return prefix
    return "open_clip"


def load_teacher(name: str = DEFAULT_TEACHER, pretrained: str = "", init_seed: int = 0) -> Teacher:
    """Factory for every kind of teacher (module docstring). Raises TeacherError (exit 2)."""
    if not name:
        raise TeacherError("--teacher is empty")
    name = TEACHER_ALIASES.get(name, name)
    kind = teacher_kind(name)
    if kind != "open_clip" and pretrained:
        logging.warning("--pretrained=%s is ignored for --teacher=%s", pretrained, name)
        pretrained = ""
    teacher = TEACHER_LOADERS[kind](name, pretrained, init_seed)
    logging.info("teacher %s (pretrained=%s): D=%d, logit_scale=%.3f, input %dx%d, weights sha256 %s%s",
                 teacher.teacher_id, teacher.pretrained or "-", teacher.embed_dim, teacher.logit_scale,
                 teacher.preprocessing.size, teacher.preprocessing.size, teacher.checkpoint_sha256[:23],
                 "" if teacher.real_weights else " (RANDOM WEIGHTS: targets are meaningless)")
    return teacher
