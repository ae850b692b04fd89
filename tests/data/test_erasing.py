"""RandomErasing on clips (timm's, as in BEVT's SSv2 fine-tuning): probability, box sizes, the same box in
every frame, clips independent, fill modes, erasing before Normalize equals erasing after it, errors."""

from __future__ import annotations

import math

import pytest
import torch

from vidssl.data import transforms as T
from vidssl.data.transforms.erasing import RandomErasing

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clips(batch: int = 6, channels: int = 3, frames: int = 3, height: int = 20, width: int = 24, seed: int = 0):
    return torch.rand(batch, channels, frames, height, width, generator=gen(seed))


def test_erases_with_probability_p():
    x = clips(batch=4000, frames=1, height=32, width=32)
    for p in (0.25, 0.7):
        out = RandomErasing(p=p)(x, generator=gen(1))
        erased = (out != x).flatten(1).any(dim=1).float().mean().item()
        # std of the rate is sqrt(p(1-p)/4000) <= 0.008; a box that never fits in 10 tries is rare at 32×32
        assert abs(erased - p) < 0.03
    assert torch.equal(RandomErasing(p=0.0)(x, generator=gen(1)), x)


def test_boxes_are_rectangles_within_the_area_and_aspect_bounds():
    """Each erased region is one rectangle whose area and aspect (h/w) are the drawn ones up to the
    rounding of the sides to whole pixels, strictly smaller than the frame (timm's rule)."""
    size, scale, ratio = 64, (0.02, 1 / 3), (0.3, 1 / 0.3)
    x = clips(batch=1500, channels=1, frames=1, height=size, width=size)
    out = RandomErasing(p=1.0, scale=scale, ratio=ratio, mean=-1.0)(x, generator=gen(2))  # erased pixels = -1
    erased = out[:, 0, 0] == -1.0
    fractions = []
    for mask in erased:
        rows, cols = mask.any(dim=1).nonzero().squeeze(1), mask.any(dim=0).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue  # no try fitted
        h, w = rows.max().item() - rows.min().item() + 1, cols.max().item() - cols.min().item() + 1
        assert mask.sum().item() == h * w and h < size and w < size
        slack = 0.5 * (h + w) + 0.25  # |h·w - area| from rounding each side
        assert scale[0] * size * size - slack <= h * w <= scale[1] * size * size + slack
        assert (h + 0.5) / max(w - 0.5, 1e-9) >= ratio[0] and (h - 0.5) / (w + 0.5) <= ratio[1]
        fractions.append(h * w / size**2)
    assert len(fractions) > 1450
    assert min(fractions) < 0.03 and max(fractions) > 0.3  # the whole range is used


def test_count_draws_that_many_boxes_each_with_a_share_of_the_area():
    erase = RandomErasing(p=1.0, count=(1, 3))
    params = erase.draw(torch.Size((3000, 3, 1, 64, 64)), torch.device("cpu"), gen(3))
    boxes_per_clip = params["active"].sum(dim=1)
    share = torch.bincount(boxes_per_clip, minlength=4).float() / 3000
    assert share[0] == 0 and (share[1:] - 1 / 3).abs().max() < 0.04
    sides = params["boxes"][..., 2:] - params["boxes"][..., :2]
    area = sides.prod(dim=-1)[params["active"]]
    count = boxes_per_clip.repeat_interleave(boxes_per_clip).float()
    assert (area <= (1 / 3) * 64 * 64 / count + 0.5 * sides.sum(-1)[params["active"]] + 0.25).all()


@pytest.mark.parametrize("mode", RandomErasing.MODES)
def test_every_frame_is_erased_alike(mode):
    still = clips(frames=1).expand(-1, -1, 4, -1, -1).contiguous()
    out = RandomErasing(p=1.0, mode=mode, count=2)(still, generator=gen(4))
    assert (out != still).any()
    for t in range(1, 4):
        assert torch.equal(out[:, :, t], out[:, :, 0])


def test_each_clip_depends_only_on_its_own_draw_and_draws_differ():
    erase = RandomErasing(p=1.0, mode="rand")
    x = clips(batch=8)
    params = erase.draw(x.shape, x.device, gen(5))
    out = erase.apply(x, params)
    for i in range(8):
        alone = erase.apply(x[i : i + 1], {key: value[i : i + 1] for key, value in params.items()})
        assert torch.equal(out[i : i + 1], alone)
    boxes = {tuple(box) for box in params["boxes"][:, 0].tolist()}
    assert len(boxes) == 8


def test_fill_modes():
    x = clips(batch=50, height=32, width=32)
    const = RandomErasing(p=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD)(x, generator=gen(6))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1).expand_as(x)
    changed = const != x
    assert torch.equal(const[changed], mean[changed])  # the mean colour, 0 after Normalize
    rand = RandomErasing(p=1.0, mode="rand")(x, generator=gen(6))
    pixel = RandomErasing(p=1.0, mode="pixel")(x, generator=gen(6))
    for out, per_pixel in ((rand, False), (pixel, True)):
        for i in range(5):
            values = out[i, 0, 0][out[i, 0, 0] != x[i, 0, 0]]
            assert values.numel() > 1 and (values.unique().numel() > 1) == per_pixel


@pytest.mark.parametrize("mode", RandomErasing.MODES)
def test_erasing_before_normalize_equals_timms_erasing_after_it(mode):
    x = clips(batch=6)
    before = T.Compose([RandomErasing(p=0.5, mode=mode, mean=IMAGENET_MEAN, std=IMAGENET_STD),
                        T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    after = T.Compose([T.Normalize(IMAGENET_MEAN, IMAGENET_STD), RandomErasing(p=0.5, mode=mode)])
    torch.testing.assert_close(before(x, generator=gen(7)), after(x, generator=gen(7)), rtol=0, atol=1e-5)


def test_a_generator_makes_it_reproducible():
    x = clips()
    erase = RandomErasing(p=0.5, mode="pixel")
    assert torch.equal(erase(x, generator=gen(8)), erase(x, generator=gen(8)))
    assert not torch.equal(erase(x, generator=gen(8)), erase(x, generator=gen(9)))


def test_accelerator_path_matches_cpu_path(monkeypatch):
    x = clips(batch=8)
    erase = RandomErasing(p=0.5, count=(1, 2))
    gathered = erase(x, generator=gen(10))
    monkeypatch.setattr(T.core, "_gathers_rows", lambda device: False)
    assert torch.equal(erase(x, generator=gen(10)), gathered)


@pytest.mark.parametrize("kwargs, message", [
    (dict(p=-0.1), "p must be"),
    (dict(p=1.5), "p must be"),
    (dict(scale=(0.0, 0.3)), "scale"),
    (dict(scale=(0.5, 0.2)), "scale"),
    (dict(scale=(0.1, 1.5)), "scale"),
    (dict(ratio=(2.0, 1.0)), "ratio"),
    (dict(ratio=(0.0, 1.0)), "ratio"),
    (dict(mode="noise"), "unknown mode"),
    (dict(count=0), "count"),
    (dict(count=(3, 2)), "count"),
    (dict(count=(1, 2.5)), "count"),
    (dict(attempts=0), "attempts"),
    (dict(std=0.0), "std positive"),
    (dict(mean=math.nan), "mean must be finite"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomErasing(**kwargs)


def test_rejects_what_is_not_a_float_clip():
    with pytest.raises(ValueError, match="B×C×T×H×W"):
        RandomErasing()(torch.zeros(2, 3, 8, 8))
