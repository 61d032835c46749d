"""Joint RGB-D geometric and photometric augmentation of pretraining, in torch (authors' datasets/transforms.py:
ColorJitter, RandomGray, RandomHorizontalFlip, RandomVerticalFlip, RandomResizedCrop).

Every random draw comes from the `torch.Generator` passed in, so a batch can be replayed exactly (a resumed run
draws the same crops as an uninterrupted one). RGB is resized bicubic (antialiased), depth nearest only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma, as torchvision's grayscale and saturation use.
_LUMA = (0.299, 0.587, 0.114)
#: How a non-square random crop becomes the square output: resized straight (``"stretch"``), or zero-padded to a
#: centred square first (``"pad"``: RGB black, depth 0 = missing; the authors' datasets/transforms.py,
#: RandomResizedCrop).
CROP_MODES = ("stretch", "pad")
#: Probability of the random gray conversion (the authors' RandomGray(p=0.2)).
GRAY_PROBABILITY = 0.2


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of a RandomResizedCrop: area fraction in `scale`, aspect (w/h) log-uniform in
    `ratio`; 10 tries, then the largest centred crop of a valid aspect (torchvision's rule)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, round(height * ratio[1])
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def crop_and_resize_rgbd(
    rgb: torch.Tensor,
    depth_m: torch.Tensor,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    crop_mode: str = "stretch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop `(3, H, W)` RGB (uint8, or float in [0, 1]) and `(1, H, W)` metres to `box`, then resize to `size` (RGB
    bicubic, depth nearest, so no depth value is invented). Returns float RGB in [0, 1].

    `crop_mode="pad"` first zero-pads a non-square crop to a centred `max(h, w)` square (RGB black, depth 0 =
    missing), so the aspect ratio survives a square `size`, as the authors' RandomResizedCrop does; `"stretch"`
    (default) resizes the crop as it is."""
    if crop_mode not in CROP_MODES:
        raise ValueError(f"`crop_mode` must be one of {CROP_MODES}, got {crop_mode!r}.")
    top, left, crop_h, crop_w = box
    rgb = rgb[:, top : top + crop_h, left : left + crop_w]
    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0  # convert the crop, not the whole frame
    depth_m = depth_m[:, top : top + crop_h, left : left + crop_w]
    if crop_mode == "pad" and crop_h != crop_w:
        side = max(crop_h, crop_w)
        pad_top, pad_left = (side - crop_h) // 2, (side - crop_w) // 2
        padding = (pad_left, side - crop_w - pad_left, pad_top, side - crop_h - pad_top)
        rgb, depth_m = F.pad(rgb, padding, value=0.0), F.pad(depth_m, padding, value=0.0)
    rgb = F.interpolate(rgb[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)
    depth_m = F.interpolate(depth_m[None], size=size, mode="nearest-exact")[0]
    return rgb, depth_m


def _grayscale(rgb: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (rgb * weights).sum(dim=0, keepdim=True)


def _rotate_hue(rgb: torch.Tensor, turns: float) -> torch.Tensor:
    """Hue shift by `turns` of a full circle, as a rotation of the chroma plane in YIQ space (cheap, batched)."""
    angle = 2 * math.pi * turns
    cos, sin = math.cos(angle), math.sin(angle)
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=rgb.dtype, device=rgb.device
    )
    rotation = torch.tensor([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], dtype=rgb.dtype, device=rgb.device)
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    return torch.einsum("ij,jhw->ihw", transform, rgb)


def color_jitter(
    rgb: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ColorJitter on `(3, H, W)` RGB in [0, 1]: factors drawn in [1-x, 1+x] (hue shift in [-hue, hue] turns),
    applied in a random order, clamped to [0, 1]."""
    order = torch.randperm(4, generator=generator).tolist()
    for op in order:
        if op == 0 and brightness > 0:
            rgb = rgb * _uniform(1 - brightness, 1 + brightness, generator)
        elif op == 1 and contrast > 0:
            mean = _grayscale(rgb).mean()
            rgb = (rgb - mean) * _uniform(1 - contrast, 1 + contrast, generator) + mean
        elif op == 2 and saturation > 0:
            gray = _grayscale(rgb)
            rgb = (rgb - gray) * _uniform(1 - saturation, 1 + saturation, generator) + gray
        elif op == 3 and hue > 0:
            rgb = _rotate_hue(rgb, _uniform(-hue, hue, generator))
        rgb = rgb.clamp(0, 1)
    return rgb


def augment_rgbd_pair(
    rgb: torch.Tensor,
    depth_m: torch.Tensor,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_probability: float = 0.5,
    vertical_flip_probability: float = 0.5,
    gray_probability: float = GRAY_PROBABILITY,
    jitter: bool = True,
    crop_mode: str = "stretch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RGB-D augmentation of one pretraining frame: RandomResizedCrop (stretched, or padded to a square with
    `crop_mode="pad"`, see `crop_and_resize_rgbd`), horizontal and vertical flips, colour jitter, random gray.

    The crop comes first so the photometric work runs on the small output instead of the full frame (the jitter is
    a global per-image transform, so the order changes only the contrast reference mean, from frame to crop).

    Args:
        rgb: `(3, H, W)` uint8, or float in [0, 1].
        depth_m: `(1, H, W)` metres, 0 = missing.
        size: output (height, width).

    Returns:
        `(3, h, w)` RGB in [0, 1] and `(1, h, w)` metres.
    """
    box = random_resized_crop_box(rgb.shape[-2], rgb.shape[-1], crop_scale, crop_ratio, generator)
    rgb, depth_m = crop_and_resize_rgbd(rgb, depth_m, box, size, crop_mode=crop_mode)
    if float(torch.rand((), generator=generator)) < flip_probability:
        rgb, depth_m = rgb.flip(-1), depth_m.flip(-1)
    if float(torch.rand((), generator=generator)) < vertical_flip_probability:
        rgb, depth_m = rgb.flip(-2), depth_m.flip(-2)
    if jitter:
        rgb = color_jitter(rgb, generator=generator)
    if float(torch.rand((), generator=generator)) < gray_probability:
        rgb = _grayscale(rgb).expand(3, -1, -1).contiguous()
    return rgb, depth_m


__all__ = [
    "CROP_MODES",
    "GRAY_PROBABILITY",
    "augment_rgbd_pair",
    "color_jitter",
    "crop_and_resize_rgbd",
    "random_resized_crop_box",
]
