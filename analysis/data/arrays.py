"""An in-memory image dataset over one tensor of images and one tensor of labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resize float images to ``size`` x ``size`` (antialiased when shrinking).

    Args:
        images: Float tensor (C, H, W) or (N, C, H, W).
        size: Target side in pixels.

    Returns:
        Tensor of the same rank with spatial shape (size, size), clamped to [0, 1].
    """
    if images.shape[-2:] == (size, size):
        return images
    batched = images if images.dim() == 4 else images.unsqueeze(0)
    shrink = size < max(images.shape[-2:])
    out = F.interpolate(
        batched, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
    out = out.clamp_(0.0, 1.0)
    return out if images.dim() == 4 else out.squeeze(0)


class ArrayImageDataset(Dataset):
    """Images held in memory; items are converted to float [0, 1] and resized lazily.

    Args:
        images: (N, C, H, W) tensor, either uint8 (0..255) or float32 already in [0, 1].
        labels: (N,) integer tensor.
        image_size: Side of the returned images; resized per item when it differs from H.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, image_size: int) -> None:
        if images.dim() != 4 or len(images) != len(labels):
            raise ValueError(
                f"need (N, C, H, W) images and N labels, got {tuple(images.shape)} / {len(labels)}"
            )
        self.images = images
        self.labels = labels.long()
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        # Copy float images so a caller that edits its item in place cannot corrupt the dataset.
        img = img.float().div_(255.0) if img.dtype == torch.uint8 else img.clone()
        return resize_square(img, self.image_size), int(self.labels[index])
