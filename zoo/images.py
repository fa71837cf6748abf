"""Image grids and PNG files: the picture format of training, evaluation and the client.

With ``zoo.saving`` (model files) the only zoo module that writes files; the
models and layers do no I/O.
"""
import pathlib

import numpy as np
from PIL import Image


def grid(images, cols=None, pad=2, pad_value=128):
    """Tiles uint8 images (N, H, W, C) into one (rows*H, cols*W, C) image."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + k * (w + pad):pad + k * (w + pad) + w] = img
    return out


def enlarge(image, scale):
    """A uint8 (H, W, C) or (H, W) image enlarged ``scale`` times by pixel repetition; grey
    images come back as (H, W)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if scale > 1:
        image = np.kron(image, np.ones((scale, scale) + (1,) * (image.ndim - 2), np.uint8))
    return image


def save_png(image, path, scale=1):
    """Writes a uint8 (H, W, C) or (H, W) image as PNG, enlarged ``scale`` times."""
    image = enlarge(image, scale)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
