"""Training-time augmentation on batch tensors (N, C, H, W), on the device: one op per batch."""

from collections.abc import Sequence

import torch
from torch import Tensor


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Pad each image by `padding` and cut it back at a random offset (one gather per batch)."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, [padding] * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=images.device)
    rows = (torch.arange(height, device=images.device).view(1, -1, 1) + dy).expand(n, height, width)
    cols = (torch.arange(width, device=images.device).view(1, 1, -1) + dx).expand(n, height, width)
    batch = torch.arange(n, device=images.device).view(-1, 1, 1)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def random_resized_crop(images: Tensor, scale: Sequence[float], ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """A random box per image (a `scale` fraction of its area, aspect ratio in `ratio`) resized back to the
    image's size: one bilinear grid sample per batch."""
    n = images.shape[0]
    device = images.device
    area = torch.empty(n, device=device).uniform_(*scale)
    log_ratio = torch.empty(n, device=device).uniform_(*torch.tensor(ratio).log().tolist())
    aspect = log_ratio.exp()
    # box width and height as fractions of the image's, each at most 1
    width = (area * aspect).sqrt().clamp(max=1.0)
    height = (area / aspect).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
    cy = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, cx, height, cy
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(images: Tensor) -> Tensor:
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
