"""Teacher loading and preprocessing parity with open_clip's own transform and forward."""
import hashlib
import io
import os

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from teacher_cache import demo_data
from teacher_cache.teachers import (SkipSample, TeacherError, decode_and_resize, load_teacher)

import tc_helpers


def _photos():
    """A few JPEGs of different sizes and aspect ratios (so the squash really squashes)."""
    rng = np.random.default_rng(0)
    out = []
    for (w, h), (lineage, _) in zip([(224, 224), (320, 180), (150, 400), (97, 61)],
                                    demo_data.DEMO_SPECIES[::7]):
        pixels = demo_data.render_photo(lineage, rng, 224)
        img = Image.fromarray(pixels).resize((w, h), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def test_preprocess_and_encode_parity_with_open_clip(vit_teacher):
    """Our decode + squash + normalize + encode equals open_clip's transform (squash mode) and
    encode_image on the same random ViT-B-16, and torchvision Resize((224,224)) + Normalize."""
    t = vit_teacher
    assert t.preprocessing.size == 224 and t.embed_dim == 512
    ref_tf = open_clip.image_transform(224, is_train=False, mean=t.preprocessing.mean,
                                       std=t.preprocessing.std, resize_mode="squash",
                                       interpolation="bicubic")
    tv_tf = T.Compose([T.Resize((224, 224), interpolation=T.InterpolationMode.BICUBIC),
                       T.ToTensor(), T.Normalize(t.preprocessing.mean, t.preprocessing.std)])
    photos = _photos()
    ours_pixels = torch.from_numpy(np.stack([decode_and_resize(b, 224) for b in photos]))
    ours_x = t.normalize_pixels(ours_pixels)
    ref_x = torch.stack([ref_tf(Image.open(io.BytesIO(b))) for b in photos])
    tv_x = torch.stack([tv_tf(Image.open(io.BytesIO(b)).convert("RGB")) for b in photos])
    assert ours_x.shape == (4, 3, 224, 224)
    assert torch.max(torch.abs(ours_x - ref_x)).item() < 1e-6
    assert torch.max(torch.abs(ours_x - tv_x)).item() < 1e-6
    ours = t.encode_pixels(ours_pixels)
    with torch.no_grad():
        ref = t.model.encode_image(ref_x)
        ref = ref / ref.norm(dim=-1, keepdim=True)
    assert ours.shape == (4, 512) and ours.dtype == torch.float32
    assert torch.max(torch.abs(ours - ref)).item() < 1e-5
    # A centre crop (open_clip's default) would differ on the non-square photos: the check bites.
    crop_x = open_clip.image_transform(224, is_train=False)(Image.open(io.BytesIO(photos[1])))
    assert torch.max(torch.abs(crop_x - ref_x[1])).item() > 0.1


def test_size_and_width_come_from_the_model(tiny_teacher):
    assert tiny_teacher.preprocessing.size == 64  # from model_configs/bioclip-lite-test-tiny.json
    assert tiny_teacher.embed_dim == 48
    emb = tiny_teacher.encode_pixels(torch.zeros((2, 64, 64, 3), dtype=torch.uint8))
    assert emb.shape == (2, 48)
    np.testing.assert_allclose(emb.norm(dim=-1).numpy(), 1.0, rtol=1e-5)


def test_random_weights_are_seeded():
    a = load_teacher("bioclip-lite-test-tiny", "none", init_seed=0)
    b = load_teacher("bioclip-lite-test-tiny", "none", init_seed=0)
    c = load_teacher("bioclip-lite-test-tiny", "none", init_seed=1)
    assert a.checkpoint_sha256 == b.checkpoint_sha256 != c.checkpoint_sha256
    assert a.checkpoint_sha256.startswith("random:") and not a.real_weights


def test_local_checkpoint_file(vit_teacher, tmp_path):
    """A saved ViT-B-16 state dict loads through --pretrained=/path and gives the same model."""
    torch.manual_seed(123)
    src = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    path = str(tmp_path / "vit_b_16_random.pt")
    torch.save(src.state_dict(), path)
    t = load_teacher("ViT-B-16", path)
    assert t.real_weights and t.pretrained == path
    assert t.checkpoint_sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    for (name, a), (_, b) in zip(src.state_dict().items(), t.model.state_dict().items()):
        assert torch.equal(a, b), name
    # and it is really a different model from the seed-0 random teacher
    assert t.checkpoint_sha256 != vit_teacher.checkpoint_sha256
    x = torch.zeros((1, 224, 224, 3), dtype=torch.uint8)
    assert not torch.allclose(t.encode_pixels(x), vit_teacher.encode_pixels(x))


def test_unknown_teacher_and_missing_checkpoint():
    with pytest.raises(TeacherError, match="unknown teacher 'NoSuchNet'"):
        load_teacher("NoSuchNet", "none")
    with pytest.raises(TeacherError, match="checkpoint file not found"):
        load_teacher("ViT-B-16", "/no/such/ckpt.pt")
    with pytest.raises(TeacherError, match="needs --pretrained"):
        load_teacher("ViT-B-16", "")


def test_hub_id_goes_through_open_clip_hub_path(tmp_path, wds_demo):
    """hf-hub:imageomics/bioclip (the default) reaches open_clip's hub loader; with no network
    and an empty cache that is a clean message and exit code 2, not a traceback."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    r = tc_helpers.cli("teacher_cache", f"--source={wds_demo}", f"--out_dir={tmp_path / 'c'}", env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot load teacher 'hf-hub:imageomics/bioclip'" in r.stderr
    assert "not in the local cache" in r.stderr
    assert "load from HF Hub imageomics/bioclip" in r.stderr  # open_clip's own hub loader said so
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "c" / "manifest.json")


def test_decode_guards():
    with pytest.raises(SkipSample, match="0 bytes"):
        decode_and_resize(b"", 64)
    with pytest.raises(SkipSample, match="corrupt"):
        decode_and_resize(b"\xff\xd8\xff\xe0 definitely not a jpeg", 64)
    good = _photos()[0]
    with pytest.raises(SkipSample, match="corrupt"):
        decode_and_resize(good[: len(good) // 2], 64)  # truncated JPEG
    with pytest.raises(SkipSample, match="too large"):
        decode_and_resize(good, 64, max_pixels=224 * 224 - 1)
    assert decode_and_resize(good, 64).shape == (64, 64, 3)


def test_local_dir_teacher(tiny_teacher, tmp_path):
    """local-dir:PATH (open_clip_config.json + weights, the layout of a downloaded hub repo)."""
    import json
    cfg = open_clip.get_model_config("bioclip-lite-test-tiny")
    folder = tmp_path / "bioclip_like"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": cfg, "preprocess_cfg": {"mean": list(tiny_teacher.preprocessing.mean),
                                              "std": list(tiny_teacher.preprocessing.std)}}))
    torch.save(tiny_teacher.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    t = load_teacher(f"local-dir:{folder}")
    assert t.real_weights and t.embed_dim == 48 and t.preprocessing.size == 64
    assert t.checkpoint_sha256 == hashlib.sha256(
        (folder / "open_clip_pytorch_model.bin").read_bytes()).hexdigest()
    x = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    np.testing.assert_allclose(t.encode_pixels(x).numpy(), tiny_teacher.encode_pixels(x).numpy(), atol=1e-6)
    with pytest.raises(TeacherError, match="not found"):
        load_teacher(f"local-dir:{tmp_path / 'nope'}")
