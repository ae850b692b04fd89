"""RandAugment on clips (imgaug's policy, as in BEVT's SSv2 fine-tuning): one draw per clip shared by its
frames, clips independent of each other, operations against PIL, the magnitude scale, identity cases,
reproducibility, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from vidssl.data import transforms as T
from vidssl.data.transforms import randaugment as R

MAGNITUDE_OPS = tuple(name for name in R.RANDAUGMENT_OPS if name not in R.MAGNITUDE_FREE_OPS)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clips(batch: int = 6, frames: int = 3, height: int = 20, width: int = 24, seed: int = 0) -> torch.Tensor:
    """Float B×C×T×H×W in [0, 1], every frame different."""
    return torch.rand(batch, 3, frames, height, width, generator=gen(seed))


def one(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float32)


# ---------------------------------------------------------------- shapes, frames, clips


@pytest.mark.parametrize("augment", [
    R.RandAugment(4, 7),
    R.RandAugment(4, 30, magnitude_std=5.0, flip_p=0.5),
    R.RandAugment(len(R.RANDAUGMENT_OPS), 30),
])
def test_shape_dtype_and_range_are_kept(augment):
    for x in (clips(), torch.zeros(3, 3, 2, 20, 24), torch.ones(3, 3, 2, 20, 24)):
        out = augment(x, generator=gen(1))
        assert out.shape == x.shape and out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0 and torch.isfinite(out).all()


def test_every_frame_gets_the_same_operations_with_the_same_parameters():
    """Frame t of the augmented clip is the single-frame clip t augmented with the same draw:
    the operations and their parameters do not depend on the frame (statistics are per frame)."""
    augment = R.RandAugment(4, 15, flip_p=0.5)
    x = clips(batch=8, frames=3)
    params = augment.draw(x.shape, x.device, gen(2))
    out = augment.apply(x, params)
    for t in range(x.shape[2]):
        alone = augment.apply(x[:, :, t : t + 1].contiguous(), params)
        torch.testing.assert_close(out[:, :, t : t + 1], alone, rtol=0, atol=1e-6)
    # and a clip whose frames are identical stays so
    still = x[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()
    out = augment(still, generator=gen(3))
    for t in range(1, 4):
        torch.testing.assert_close(out[:, :, t], out[:, :, 0], rtol=0, atol=1e-6)


def test_each_clip_depends_only_on_its_own_draw_and_draws_differ():
    augment = R.RandAugment(4, 7)
    x = clips(batch=6)
    params = augment.draw(x.shape, x.device, gen(4))
    out = augment.apply(x, params)
    for i in range(6):
        alone = augment.apply(x[i : i + 1], {key: value[i : i + 1] for key, value in params.items()})
        torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-6)
    # the same clip 16 times comes out 16 different ways
    repeated = x[:1].expand(16, -1, -1, -1, -1).contiguous()
    out = augment(repeated, generator=gen(5))
    assert len({tuple(out[i].flatten().round(decimals=5).tolist()) for i in range(16)}) == 16


def test_draws_pick_distinct_ops_uniformly_with_the_configured_magnitude():
    augment = R.RandAugment(4, 7)
    params = augment.draw(torch.Size((4000, 3, 1, 224, 224)), torch.device("cpu"), gen(6))
    ops = params["ops"]
    assert ops.shape == (4000, 4)
    assert all(len(set(row)) == 4 for row in ops.tolist())  # without replacement
    frequency = torch.bincount(ops.flatten(), minlength=len(R.RANDAUGMENT_OPS)).float() / 4000
    # each op is in a clip's 4 with probability 4/18 = 0.222 (std 0.0066 over 4000 clips)
    assert (frequency - 4 / 18).abs().max() < 0.03
    first = torch.bincount(ops[:, 0], minlength=18).float() / 4000  # and in every position
    assert (first - 1 / 18).abs().max() < 0.02
    assert (params["magnitude"] == 7).all()
    assert set(params["sign"].unique().tolist()) == {-1.0, 1.0} and abs(params["sign"].mean()) < 0.05
    # edge crop: at most round(7/224 · 224) = 7 pixels off each side
    boxes = params["boxes"]
    cut = torch.stack([boxes[:, 0], boxes[:, 1], 224 - boxes[:, 2], 224 - boxes[:, 3]], dim=1)
    assert cut.min() == 0 and cut.max() == 7

    spread = R.RandAugment(2, 9, magnitude_std=0.5, ops=("rotate", "equalize")).draw(
        torch.Size((2000, 3, 1, 8, 8)), torch.device("cpu"), gen(7))
    assert set(spread["ops"].unique().tolist()) == {R._CODE["rotate"], R._CODE["equalize"]}
    magnitude = spread["magnitude"]
    assert magnitude.min() >= 0 and magnitude.max() <= 30
    assert abs(magnitude.mean() - 9) < 0.05 and abs(magnitude.std() - 0.5) < 0.05


# ---------------------------------------------------------------- identity cases


def test_no_operations_and_no_crop_is_the_identity():
    x = clips()
    assert torch.equal(R.RandAugment(0, 7, edge_crop=False)(x, generator=gen(0)), x)
    # at magnitude 0 the edge crop cuts nothing
    torch.testing.assert_close(R.RandAugment(0, 0)(x, generator=gen(0)), x, rtol=0, atol=1e-6)


def test_magnitude_zero_leaves_the_clip_unchanged():
    """Every operation that scales with the magnitude is the identity at 0 (all of them, in a random
    order). The magnitude-free ones (autocontrast, equalize, invert, blur, smooth) are not, as in imgaug."""
    x = clips(batch=12)
    augment = R.RandAugment(len(MAGNITUDE_OPS), 0, ops=MAGNITUDE_OPS)
    torch.testing.assert_close(augment(x, generator=gen(8)), x, rtol=0, atol=1e-6)
    inverted = R.RandAugment(1, 0, ops=("invert",))(x, generator=gen(8))
    torch.testing.assert_close(inverted, 1 - x, rtol=0, atol=1e-6)


def test_flip_p_mirrors_whole_clips():
    x = clips()
    flipped = R.RandAugment(0, 7, edge_crop=False, flip_p=1.0)(x, generator=gen(0))
    assert torch.equal(flipped, x.flip(-1))


# ---------------------------------------------------------------- the operations


def _frame(narrow: bool = False) -> np.ndarray:
    """A 24×28 uint8 RGB frame: gradients plus noise (``narrow``: levels 40..167 only)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:28]
    image = np.stack([(xx * 9) % 256, (yy * 10) % 256, ((xx + yy) * 5) % 256], -1) + rng.integers(-30, 30, (24, 28, 3))
    image = np.clip(image, 0, 255)
    return (image // 2 + 40 if narrow else image).astype(np.uint8)


def _as_clip(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None, :, None]  # 1×3×1×H×W


def _filter(name: str, factor: float = 1.0):
    return lambda x: R.filter_frames(x, *R._filter_kernels(torch.tensor([R._CODE[name]]), one(factor)))


PIL_CASES = {
    # PIL truncates the stretched levels to uint8, we don't: under one level
    "autocontrast": (R.autocontrast, ImageOps.autocontrast, 1.0),
    # exact on 256 levels
    "equalize": (R.equalize, ImageOps.equalize, 1e-3),
    "invert": (R.invert, ImageOps.invert, 1e-3),
    "posterize_7": (lambda x: R.posterize(x, one(7)), lambda im: ImageOps.posterize(im, 7), 1e-3),
    "posterize_3": (lambda x: R.posterize(x, one(3)), lambda im: ImageOps.posterize(im, 3), 1e-3),
    "solarize_197": (lambda x: R.solarize(x, one(197)), lambda im: ImageOps.solarize(im, 197), 1e-3),
    # PIL rounds (or truncates) to uint8 after blending and filtering: within 1.5 levels
    "blur": (_filter("blur"), lambda im: im.filter(ImageFilter.BLUR), 1.5),
    "smooth": (_filter("smooth"), lambda im: im.filter(ImageFilter.SMOOTH), 1.5),
    **{f"{name}_{f}": (lambda x, fn=fn, f=f: fn(x, one(f)), lambda im, cls=cls, f=f: cls(im).enhance(f), 1.5)
       for name, fn, cls in (("color", R.adjust_color, ImageEnhance.Color),
                             ("contrast", R.adjust_contrast_per_frame, ImageEnhance.Contrast),
                             ("brightness", T.adjust_brightness, ImageEnhance.Brightness))
       for f in (0.1, 0.79, 1.21, 1.9)},
    **{f"sharpness_{f}": (_filter("sharpness", f), lambda im, f=f: ImageEnhance.Sharpness(im).enhance(f), 1.5)
       for f in (0.1, 0.79, 1.21, 1.9)},
}


@pytest.mark.parametrize("case", sorted(PIL_CASES))
def test_operations_match_pil(case):
    ours, theirs, levels = PIL_CASES[case]
    image = _frame(narrow=case == "autocontrast")
    out = ours(_as_clip(image))[0, :, 0].permute(1, 2, 0) * 255
    expected = torch.from_numpy(np.array(theirs(Image.fromarray(image)))).float()
    assert (out - expected).abs().max() <= levels


def test_affine_maps_and_cutout():
    x = clips(batch=1, height=16, width=16)
    code = torch.tensor([R._CODE["rotate"]])
    rotated = R.affine_nearest(x, R._affine_inverse(code, one(90.0), one(0.0), 16, 16), fill=0.5)
    assert torch.equal(rotated, torch.rot90(x, 1, dims=(-2, -1))) or torch.equal(rotated, torch.rot90(x, -1, (-2, -1)))
    shift = R._affine_inverse(torch.tensor([R._CODE["translate_x"]]), one(0.0), one(3 / 16), 16, 16)
    moved = R.affine_nearest(x, shift, fill=0.5)
    assert torch.equal(moved[..., 3:], x[..., :-3]) and (moved[..., :3] == 0.5).all()
    identity = R._affine_inverse(torch.tensor([R._CODE["shear_x"]]), one(0.0), one(0.0), 16, 16)
    assert torch.equal(R.affine_nearest(x, identity, fill=0.5), x)
    square = R.cutout(x, torch.tensor([[0.5, 0.5]]), one(6.0), fill=0.25)
    assert ((square == 0.25).all(dim=(1, 2)).sum() == 36) and (square[..., 5:11, 5:11] == 0.25).all()


def test_magnitude_seven_gives_imgaugs_values():
    """m is out of 30, as imgaug's: posterize keeps 7 bits, solarize starts at level 197, enhance
    factors are 0.79 / 1.21, rotations ±7°."""
    x = clips(batch=8)

    def run(name):
        augment = R.RandAugment(1, 7, ops=(name,), edge_crop=False)
        params = augment.draw(x.shape, x.device, gen(9))
        return augment.apply(x, params), params["sign"][:, 0]

    out, _ = run("posterize")
    torch.testing.assert_close(out, R.posterize(x, torch.full((8,), 7.0)), rtol=0, atol=0)
    out, _ = run("solarize")
    torch.testing.assert_close(out, R.solarize(x, torch.full((8,), 197.0)), rtol=0, atol=0)
    out, sign = run("brightness")
    torch.testing.assert_close(out, T.adjust_brightness(x, 1 + 0.21 * sign), rtol=0, atol=1e-6)
    out, sign = run("rotate")
    code = torch.full((8,), R._CODE["rotate"])
    inverse = R._affine_inverse(code, 7.0 * sign, 0 * sign, 20, 24)
    torch.testing.assert_close(out, R.affine_nearest(x, inverse, 128 / 255), rtol=0, atol=0)


# ---------------------------------------------------------------- reproducibility, paths, errors


def test_a_generator_makes_it_reproducible():
    x = clips()
    augment = R.RandAugment(4, 7, magnitude_std=0.5)
    assert torch.equal(augment(x, generator=gen(10)), augment(x, generator=gen(10)))
    assert not torch.equal(augment(x, generator=gen(10)), augment(x, generator=gen(11)))


def test_accelerator_path_matches_cpu_path(monkeypatch):
    """On a GPU every op runs on all clips and is selected with torch.where (no host sync)."""
    x = clips(batch=8)
    augment = R.RandAugment(6, 12, flip_p=0.5)
    gathered = augment(x, generator=gen(12))
    for module in (T.core, R):
        monkeypatch.setattr(module, "_gathers_rows", lambda device: False)
    blended = augment(x, generator=gen(12))
    torch.testing.assert_close(blended, gathered, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_ops=-1), "num_ops"),
    (dict(num_ops=19), "num_ops"),
    (dict(num_ops=1.5), "num_ops"),
    (dict(magnitude=-1), "magnitude must be"),
    (dict(magnitude=31), "magnitude must be"),
    (dict(magnitude_max=0), "magnitude_max"),
    (dict(magnitude_std=-0.5), "magnitude_std"),
    (dict(magnitude_std=float("inf")), "magnitude_std"),
    (dict(ops=("rotate", "spin")), "unknown operation"),
    (dict(ops=("rotate", "rotate")), "distinct"),
    (dict(ops=()), "distinct"),
    (dict(flip_p=1.5), "flip_p"),
    (dict(fill=2.0), "fill"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        R.RandAugment(**kwargs)


def test_rejects_what_is_not_a_float_clip():
    with pytest.raises(ValueError, match="B×C×T×H×W"):
        R.RandAugment()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
