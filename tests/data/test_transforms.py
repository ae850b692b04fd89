"""Device-side batched augmentation: shapes, per-clip parameters, geometry, colour semantics, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from vidssl.data import transforms as T


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def still_clips(batch: int = 6, frames: int = 3, height: int = 20, width: int = 24, seed: int = 0) -> torch.Tensor:
    """Float B×C×T×H×W clips whose frames are all identical (random content per clip)."""
    image = torch.rand(batch, 3, 1, height, width, generator=gen(seed))
    return image.expand(-1, -1, frames, -1, -1).contiguous()


RANDOM_TRANSFORMS = {
    "rrc": lambda: T.RandomResizedCrop(12, scale=(0.2, 0.8), ratio=(0.5, 2.0)),
    "flip": lambda: T.RandomHorizontalFlip(0.5),
    "jitter": lambda: T.ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8),
    "brave_colour": lambda: T.BraveColorAugment(p=0.8),
    "gray": lambda: T.RandomGrayscale(0.5),
    "blur": lambda: T.GaussianBlur(7, (0.5, 2.0), p=0.5),
    "randconv": lambda: T.RandConv(),
    "normalize": lambda: T.Normalize(0.45, 0.225),
}


@pytest.mark.parametrize("name", sorted(RANDOM_TRANSFORMS))
def test_frames_share_parameters(name):
    """A clip whose frames are identical stays so: parameters are per clip, not per frame."""
    out = RANDOM_TRANSFORMS[name]()(still_clips(), generator=gen(1))
    assert out.dim() == 5 and out.dtype == torch.float32
    for t in range(1, out.shape[2]):
        torch.testing.assert_close(out[:, :, t], out[:, :, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("pipeline", [T.byol_video_augment, T.brave_narrow_augment, T.brave_broad_augment])
def test_pipelines_shapes_and_shared_parameters(pipeline):
    frame = torch.randint(0, 256, (5, 1, 40, 48, 3), dtype=torch.uint8, generator=gen(2))
    clips = frame.expand(-1, 4, -1, -1, -1)  # uint8 B×T×H×W×C, identical frames
    out = pipeline(24)(clips, generator=gen(3))
    assert out.shape == (5, 3, 4, 24, 24) and out.dtype == torch.float32
    for t in range(1, 4):
        torch.testing.assert_close(out[:, :, t], out[:, :, 0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["rrc", "jitter", "brave_colour", "blur", "randconv"])
def test_parameters_differ_between_samples(name):
    """The same clip repeated over the batch comes out differently for each sample."""
    clip = still_clips(batch=1, frames=2)
    batch = clip.expand(8, -1, -1, -1, -1).contiguous()
    transform = RANDOM_TRANSFORMS[name]()
    if hasattr(transform, "p"):
        transform.p = 1.0
    out = transform(batch, generator=gen(4))
    distinct = {tuple(out[i].flatten()[:50].round(decimals=5).tolist()) for i in range(8)}
    assert len(distinct) == 8


def test_generator_makes_runs_reproducible():
    clips = torch.randint(0, 256, (4, 4, 32, 40, 3), dtype=torch.uint8, generator=gen(5))
    augment = T.byol_video_augment(16)
    torch.testing.assert_close(augment(clips, generator=gen(7)), augment(clips, generator=gen(7)), rtol=0, atol=0)
    assert not torch.equal(augment(clips, generator=gen(7)), augment(clips, generator=gen(8)))


def test_to_float_clip_layout_and_errors():
    clips = torch.randint(0, 256, (2, 3, 4, 5, 3), dtype=torch.uint8, generator=gen(0))
    out = T.ToFloatClip()(clips)
    assert out.shape == (2, 3, 3, 4, 5)
    torch.testing.assert_close(out[1, 2, 0], clips[1, 0, :, :, 2].float() / 255)
    floats = clips.float() / 255
    torch.testing.assert_close(T.ToFloatClip()(floats), out)
    with pytest.raises(ValueError, match="B×T×H×W×C"):
        T.ToFloatClip()(torch.zeros(3, 4, 5, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        T.ToFloatClip()(torch.zeros(1, 2, 4, 5, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="float B×C×T×H×W"):
        T.RandomHorizontalFlip()(torch.zeros(1, 2, 4, 5, 3, dtype=torch.uint8))


def test_flip_is_exact():
    x = torch.rand(4, 3, 2, 5, 7, generator=gen(0))
    torch.testing.assert_close(T.RandomHorizontalFlip(1.0)(x), x.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(T.RandomHorizontalFlip(0.0)(x), x, rtol=0, atol=0)
    out = T.RandomHorizontalFlip(0.5)(x[:1].expand(16, -1, -1, -1, -1), generator=gen(1))
    flipped = [torch.equal(o, x[0].flip(-1)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_grayscale_uses_itu_weights():
    primaries = torch.eye(3).view(3, 3, 1, 1, 1)  # pure red, green, blue clips
    out = T.RandomGrayscale(1.0)(primaries)
    expected = torch.tensor(T.GRAY_WEIGHTS)
    for i in range(3):
        torch.testing.assert_close(out[i].flatten(), expected[i].repeat(3))
    x = torch.rand(3, 3, 2, 4, 4, generator=gen(0))
    torch.testing.assert_close(T.RandomGrayscale(0.0)(x), x, rtol=0, atol=0)


def test_random_resized_crop_respects_scale_and_ratio():
    scale, ratio, size = (0.2, 0.766), (0.75, 1.333), 100
    boxes = T.sample_crop_boxes(4000, size, size, scale, ratio, device=torch.device("cpu"), generator=gen(0))
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = width * height / size**2
    aspect = width / height
    # boxes are rounded to whole pixels: allow one pixel of slack
    assert area.min() >= scale[0] - 0.02 and area.max() <= scale[1] + 0.02
    assert aspect.min() >= ratio[0] * 0.97 and aspect.max() <= ratio[1] * 1.03
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= size).all() and (boxes[:, 3] <= size).all()
    assert torch.equal(boxes, boxes.round())
    # offsets cover the whole range
    assert boxes[:, 0].min() == 0 and (boxes[:, 2] == size).any()


def test_random_resized_crop_falls_back_to_centre():
    # an aspect range that cannot fit a 20×40 frame: torchvision's fallback is the full height,
    # width clamped to the largest allowed aspect, centred
    boxes = T.sample_crop_boxes(5, 40, 20, (0.9, 1.0), (4.0, 5.0), device=torch.device("cpu"), generator=gen(0))
    expected = torch.tensor([[0.0, 17.0, 20.0, 22.0]])  # w = 20, h = round(20 / 4) = 5, centred
    torch.testing.assert_close(boxes, expected.expand(5, 4))


def test_crop_and_resize_geometry():
    x = torch.rand(2, 3, 2, 16, 16, generator=gen(0))
    whole = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    torch.testing.assert_close(T.crop_and_resize(x, whole, (16, 16)), x, rtol=0, atol=0)
    box = torch.tensor([[4.0, 2.0, 12.0, 10.0], [0.0, 8.0, 8.0, 16.0]])
    out = T.crop_and_resize(x, box, (8, 8))
    torch.testing.assert_close(out[0], x[0, :, :, 2:10, 4:12], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], x[1, :, :, 8:16, 0:8], rtol=0, atol=1e-6)
    identity = T.RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(identity(x, generator=gen(0)), x, rtol=0, atol=0)


def coordinate_clip(height: int, width: int) -> torch.Tensor:
    """1×3×1×H×W float clip whose value at (y, x) is 1000·y + x."""
    ys = torch.arange(height, dtype=torch.float32)[:, None] * 1000
    xs = torch.arange(width, dtype=torch.float32)[None]
    return (ys + xs).expand(1, 3, 1, height, width).contiguous()


@pytest.mark.parametrize(
    "height, width, layout, expected",
    [
        (32, 48, "long_side", [(0, 0), (0, 8), (0, 16)]),  # landscape: left / centre / right
        (36, 48, "long_side", [(2, 0), (2, 8), (2, 16)]),  # centred (ceil) on the short side
        (48, 32, "long_side", [(0, 0), (8, 0), (16, 0)]),  # portrait: top / centre / bottom
        (40, 60, "diagonal", [(0, 0), (4, 14), (8, 28)]),  # BraVe: linspace offsets zipped
    ],
)
def test_spatial_crop_offsets(height, width, layout, expected):
    crops = T.SpatialCrops(32, 3, layout)
    assert crops.offsets(height, width) == expected
    out = crops(coordinate_clip(height, width))
    assert out.shape == (1, 3, 3, 1, 32, 32)
    for view, (y0, x0) in enumerate(expected):
        assert out[0, view, 0, 0, 0, 0].item() == 1000 * y0 + x0
        assert out[0, view, 0, 0, -1, -1].item() == 1000 * (y0 + 31) + x0 + 31


def test_center_crop_and_bad_crop_settings():
    out = T.CenterCrop(8)(coordinate_clip(12, 16))
    assert out.shape == (1, 3, 1, 8, 8) and out[0, 0, 0, 0, 0].item() == 1000 * 2 + 4
    with pytest.raises(ValueError, match="larger than the frame"):
        T.CenterCrop(20)(coordinate_clip(12, 16))
    with pytest.raises(ValueError, match="unknown crop layout"):
        T.SpatialCrops(8, 3, "corners")


def test_eval_transform_views_order_and_normalisation():
    clips = torch.zeros(2, 5, 4, 32, 48, 3, dtype=torch.uint8)  # B×K×T×H×W×C
    clips[:, :, :, :, :16] = 255  # left third white
    for k in range(5):
        clips[:, k, 0, 0, 0, 0] = k  # tag each temporal clip
    views = T.eval_transform(32, num_spatial_crops=3, mean=None)(clips)
    assert views.shape == (2, 15, 3, 4, 32, 32)
    for k in range(5):  # view k·S + s is temporal clip k, crop s
        assert views[0, 3 * k, 0, 0, 0, 0].item() == pytest.approx(k / 255)
    assert views[0, 0].mean() > views[0, 1].mean() > views[0, 2].mean()  # left, centre, right
    normalised = T.eval_transform(32)(clips[:, 0])
    assert normalised.shape == (2, 1, 3, 4, 32, 32)
    assert normalised.min().item() == pytest.approx(-0.45 / 0.225)
    resized = T.eval_transform(16, short_side=16, mean=None)(clips[:, 0])
    assert resized.shape == (2, 1, 3, 4, 16, 16)


def test_hsv_round_trip():
    x = torch.rand(4, 3, 2, 8, 8, generator=gen(0))
    torch.testing.assert_close(T.hsv_to_rgb(T.rgb_to_hsv(x)), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "ours, theirs, value",
    [
        (T.adjust_brightness, TF.adjust_brightness, 1.4),
        (T.adjust_contrast, TF.adjust_contrast, 0.5),
        (T.adjust_saturation, TF.adjust_saturation, 1.6),
        (T.adjust_hue, TF.adjust_hue, 0.12),
        (T.adjust_hue, TF.adjust_hue, -0.3),
    ],
)
def test_colour_operations_match_torchvision(ours, theirs, value):
    image = torch.rand(3, 16, 16, generator=gen(1))
    out = ours(image[None, :, None], torch.tensor([value]))[0, :, 0]
    torch.testing.assert_close(out, theirs(image, value), rtol=0, atol=2e-5)


def test_colour_jitter_applies_a_random_order_per_clip():
    """Recompute ColorJitter sample by sample from the same draws with torchvision's functions."""
    x = torch.rand(12, 3, 1, 8, 8, generator=gen(0))
    jitter = T.ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8)
    out = jitter(x, generator=gen(5))
    draws = gen(5)
    device = torch.device("cpu")
    applied = T.bernoulli(12, 0.8, device=device, generator=draws)
    factors = [T.uniform(12, low, high, device=device, generator=draws) for low, high in jitter.ranges]
    shift = T.uniform(12, -0.15, 0.15, device=device, generator=draws)
    order = torch.argsort(T.uniform((12, 4), 0.0, 1.0, device=device, generator=draws), dim=1)
    assert len({tuple(o.tolist()) for o in order}) > 3  # several orders in one batch
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for b in range(12):
        expected = x[b, :, 0]
        if applied[b]:
            for op_id in order[b].tolist():
                value = shift[b].item() if op_id == 3 else factors[op_id][b].item()
                expected = ops[op_id](expected, value)
        torch.testing.assert_close(out[b, :, 0], expected, rtol=0, atol=5e-5)


def test_colour_jitter_identity_and_bad_settings():
    x = torch.rand(3, 3, 2, 4, 4, generator=gen(0))
    torch.testing.assert_close(T.ColorJitter(0, 0, 0, 0)(x, generator=gen(1)), x, rtol=0, atol=0)
    torch.testing.assert_close(T.ColorJitter(p=0.0)(x, generator=gen(1)), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="hue"):
        T.ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="brightness"):
        T.ColorJitter(brightness=-1)


def test_brave_colour_augment():
    x = torch.rand(6, 3, 2, 8, 8, generator=gen(0))
    torch.testing.assert_close(T.BraveColorAugment(p=0.0)(x, generator=gen(1)), x, rtol=0, atol=0)
    out = T.BraveColorAugment(p=1.0)(x, generator=gen(1))
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)
    # brightness alone is additive with |delta| <= 32/255 (no clipping in between)
    only_brightness = T.BraveColorAugment(p=1.0, saturation=(1, 1), contrast=(1, 1), hue=0.0)
    mid = torch.full((4, 3, 1, 4, 4), 0.5)
    delta = only_brightness(mid, generator=gen(2)) - mid
    assert delta.abs().max() <= 32 / 255 + 1e-6
    assert torch.allclose(delta, delta[:, :1, :1, :1, :1].expand_as(delta), atol=1e-5)
    # TF's contrast uses the per-frame, per-channel mean: a frame's channel means are kept
    contrast = T.tf_adjust_contrast(x, torch.full((6,), 1.3))
    torch.testing.assert_close(contrast.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=0, atol=1e-5)


def test_gaussian_blur():
    kernels = T.gaussian_kernels(torch.tensor([0.5, 2.0]), 13)
    torch.testing.assert_close(kernels.sum(1), torch.ones(2))
    assert kernels[0, 6] > kernels[1, 6]  # narrower sigma, more weight in the centre
    x = torch.rand(4, 3, 2, 16, 16, generator=gen(0))
    torch.testing.assert_close(T.GaussianBlur(13, p=0.0)(x, generator=gen(1)), x, rtol=0, atol=0)
    blurred = T.GaussianBlur(13, (1.0, 2.0), p=1.0)(x, generator=gen(1))
    assert (blurred.std(dim=(-2, -1)) < x.std(dim=(-2, -1))).all()
    constant = torch.full((2, 3, 1, 8, 8), 0.3)
    torch.testing.assert_close(T.GaussianBlur(5, p=1.0)(constant, generator=gen(0)), constant)
    zero_padded = T.GaussianBlur(5, (2.0, 2.0), p=1.0, padding="zeros")(constant, generator=gen(0))
    assert zero_padded[0, 0, 0, 0, 0] < 0.3 and zero_padded[0, 0, 0, 4, 4] == pytest.approx(0.3)
    assert T.blur_kernel_size_for(224) == 23 and T.blur_kernel_size_for(112) == 11
    with pytest.raises(ValueError, match="odd"):
        T.GaussianBlur(4)


def test_randconv_kernels():
    rand_conv = T.RandConv()
    sides, weights = rand_conv.sample_kernels(600, 3, torch.device("cpu"), gen(0))
    assert set(sides.tolist()) == {1, 3, 5, 7, 9, 11}
    for side in (1, 5, 11):
        chosen = weights[sides == side]
        outside = chosen.abs().sum(dim=(1, 2)) > 0  # K×K support per sample
        rows = outside.any(dim=-1)
        assert rows.sum(dim=-1).eq(side).all()
        nonzero = chosen[chosen != 0]
        assert nonzero.std().item() == pytest.approx(math.sqrt(2 / (side * side * 3)), rel=0.15)
        assert nonzero.abs().max() <= 2 * math.sqrt(2 / (side * side * 3)) / 0.8796 + 1e-5  # truncated at 2σ
    x = torch.rand(2, 3, 2, 12, 12, generator=gen(1))
    out = rand_conv(x, generator=gen(2))
    assert out.shape == x.shape
    # the convolution is linear: the same generator on 2·x gives 2·out
    torch.testing.assert_close(rand_conv(2 * x, generator=gen(2)), 2 * out, rtol=1e-5, atol=1e-5)


def test_normalize():
    x = torch.full((1, 3, 1, 2, 2), 0.45)
    torch.testing.assert_close(T.Normalize(0.45, 0.225)(x), torch.zeros_like(x))
    per_channel = T.Normalize([0.1, 0.2, 0.3], [0.5, 0.5, 0.5])(torch.zeros(1, 3, 1, 1, 1))
    torch.testing.assert_close(per_channel.flatten(), torch.tensor([-0.2, -0.4, -0.6]))
    with pytest.raises(ValueError, match="std must be positive"):
        T.Normalize(0.5, 0.0)


def test_tf_saturation_and_hue_equal_hsv_round_trips_even_out_of_range():
    """BraVe adds brightness without clipping, so values may leave [0, 1] before these steps."""
    x = torch.rand(4, 3, 2, 8, 8, generator=gen(3)) * 1.4 - 0.2
    x[0, :, 0, 0, 0] = torch.tensor([-0.1, -0.2, -0.05])  # a pixel with V <= 0
    factor = torch.tensor([0.6, 1.0, 1.4, 3.0])
    hsv = T.rgb_to_hsv(x)
    saturated = torch.stack([hsv[:, 0], (hsv[:, 1] * factor.view(-1, 1, 1, 1)).clamp(0, 1), hsv[:, 2]], dim=1)
    torch.testing.assert_close(T.tf_adjust_saturation(x, factor), T.hsv_to_rgb(saturated), rtol=0, atol=1e-5)
    shift = torch.tensor([0.1, -0.2, 0.45, 0.0])
    rotated = torch.stack([torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1, 1), 1.0), hsv[:, 1], hsv[:, 2]], dim=1)
    torch.testing.assert_close(T.adjust_hue(x, shift), T.hsv_to_rgb(rotated), rtol=0, atol=1e-5)
    assert torch.allclose(T.adjust_hue(x, shift)[0, :, 0, 0, 0], torch.full((3,), -0.05))  # grey at V <= 0


@pytest.mark.parametrize("pipeline", [T.byol_video_augment, T.brave_broad_augment])
def test_cpu_chunks_give_the_same_result_as_the_whole_batch(pipeline):
    clips = torch.randint(0, 256, (7, 3, 24, 28, 3), dtype=torch.uint8, generator=gen(0))
    chunked, whole = pipeline(16), pipeline(16)
    chunked.cpu_chunk, whole.cpu_chunk = 3, None
    torch.testing.assert_close(chunked(clips, generator=gen(1)), whole(clips, generator=gen(1)), rtol=0, atol=1e-6)
    assert chunked.output_shape(clips.shape) == (7, 3, 3, 16, 16)


@pytest.mark.parametrize("pipeline", [T.byol_video_augment, T.brave_broad_augment])
def test_accelerator_path_matches_cpu_path(pipeline, monkeypatch):
    """On a GPU the selected rows are blended with torch.where instead of gathered (no host
    sync); both strategies must give the same clips."""
    clips = torch.randint(0, 256, (6, 2, 20, 24, 3), dtype=torch.uint8, generator=gen(0))
    gathered = pipeline(16)(clips, generator=gen(1))
    # defined in transforms.core and called there (_apply_where) and in transforms.colour (ColorJitter)
    for module in (T.core, T.colour):
        monkeypatch.setattr(module, "_gathers_rows", lambda device: False)
    blended = pipeline(16)(clips, generator=gen(1))
    torch.testing.assert_close(blended, gathered, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- PySlowFast's crop from the whole frame


def test_blur_after_a_worker_crop_matches_the_seeds_blur_before_it():
    """PySlowFast blurs at source resolution, then crops and resizes; vidssl crops in the worker and blurs
    on the device with sigma × zoom. The two agree closely; an unscaled sigma does not."""
    import torch.nn.functional as F

    from vidssl.data.transforms.filters import gaussian_kernels, separable_blur

    g = torch.Generator().manual_seed(0)
    # a source frame with structure at every scale (256 short side, 16:9)
    frame = F.interpolate(torch.rand(1, 3, 1, 32, 57, generator=g).flatten(1, 2), size=(256, 455), mode="bicubic",
                          align_corners=False) + 0.3 * torch.rand(1, 3, 256, 455, generator=g)
    frame = frame.unsqueeze(2)  # B×C×T×H×W
    x0, y0, w, h = 100, 40, 180, 160  # a crop of the source frame
    out = 112
    zoom = out / w
    sigma = torch.tensor([2.0])

    def crop_resize(x):
        crop = x[..., y0:y0 + h, x0:x0 + w].flatten(1, 2)
        return F.interpolate(crop, size=(out, out), mode="bilinear", antialias=True, align_corners=False)

    seed_order = crop_resize(separable_blur(frame, gaussian_kernels(sigma, 25)))
    ours = separable_blur(crop_resize(frame).unsqueeze(2), gaussian_kernels(sigma * zoom, 13)).squeeze(2)
    unscaled = separable_blur(crop_resize(frame).unsqueeze(2), gaussian_kernels(sigma, 13)).squeeze(2)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the borders' padding
    error = (ours - seed_order)[inner].abs().mean()
    assert float(error) < 0.01
    assert float((unscaled - seed_order)[inner].abs().mean()) > 3 * float(error)


def test_worker_crops_come_from_the_whole_frame():
    import numpy as np

    from vidssl.data.sampling import CropOptions, VideoShape, ViewsPlan, ViewSpec

    view = ViewSpec("clip_1", num_frames=4, canvas=(112, 112), crop=CropOptions((0.2, 0.766), (0.75, 1.333), 256))
    plan = ViewsPlan([view])
    record = VideoShape(300, 30.0, width=640, height=360)  # 16:9: a centre square would hide 22 % of each side
    boxes, zooms = [], []
    for seed in range(400):
        sel = plan.sample(record, np.random.default_rng(seed))
        boxes.append(sel.views["clip_1"].crop_box)
        zooms.append(sel.views["clip_1"].zoom)
    boxes = np.stack(boxes)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert area.min() >= 0.2 - 0.02 and area.max() <= 0.766 + 0.02
    assert boxes[:, 0].min() < 0.02 and boxes[:, 2].max() > 0.98  # the left and right edges are reachable
    width_at_256 = (boxes[:, 2] - boxes[:, 0]) * 455
    np.testing.assert_allclose(zooms, 112 / width_at_256, rtol=0.02)
