"""Blur as pure functions: a batch of uint8 images in, a batch of the same shape and dtype out.

Box blur is OpenCV's `cv2.blur` (the original study's choice): the mean over a k x k window. k <= 1 means
no blur, and any k works, also kernels as wide as the 28-pixel image or wider (k = 20, 30), where every
pixel becomes nearly the image's mean. Gaussian blur (`cv2.GaussianBlur`) takes sigma; its window is
OpenCV's default for that sigma.

Border: OpenCV's default BORDER_REFLECT_101 (the image is mirrored without repeating the edge pixel:
... 2 1 | 0 1 2 ... | ... n-2 n-1 | n-2 ...), reflected again as often as a wide kernel needs.
Even k: the window has no centre pixel; OpenCV anchors it at k // 2, so output pixel x averages
[x - k/2, x + k/2 - 1], a window centred at x - 1/2: the blurred letter moves half a pixel towards the
bottom-right (a dot at 14 spreads over 13..16, centred at 14.5).

Speed: OpenCV filters each channel of an image independently, so the batch is laid out as the channels of
one image (28 x 28 x up to 128) and filtered in one call per 128 images; no Python loop per image.
"""

from __future__ import annotations

import numpy as np

BLUR_KINDS = ("box", "gaussian")
_CV_MAX_CHANNELS = 128  # OpenCV 5 takes at most 128 channels per image from numpy (OpenCV 4: 512)


def _filter_as_channels(images: np.ndarray, fn) -> np.ndarray:
    if images.ndim != 3:
        raise ValueError(f"expected a batch of shape (N, H, W), got {images.shape}")
    out = np.empty_like(images)
    for start in range(0, len(images), _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(images[start:start + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        res = fn(chunk)
        if res.ndim == 2:  # OpenCV drops a single channel
            res = res[:, :, None]
        out[start:start + _CV_MAX_CHANNELS] = res.transpose(2, 0, 1)
    return out


def box_blur(images: np.ndarray, k: int) -> np.ndarray:
    """Mean over a k x k window (cv2.blur); k <= 1 returns the images unchanged (a copy)."""
    import cv2

    k = int(k)
    if k <= 1:
        return images.copy()
    return _filter_as_channels(images, lambda im: cv2.blur(im, (k, k)))


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation sigma (pixels); sigma <= 0 returns the images unchanged."""
    import cv2

    sigma = float(sigma)
    if sigma <= 0:
        return images.copy()
    return _filter_as_channels(images, lambda im: cv2.GaussianBlur(im, (0, 0), sigmaX=sigma, sigmaY=sigma))


BLURS = {"box": box_blur, "gaussian": gaussian_blur}


def blur(images: np.ndarray, level: float, kind: str = "box") -> np.ndarray:
    """Blur a batch at one level: the kernel width for box blur, sigma for Gaussian blur."""
    if kind not in BLURS:
        raise ValueError(f"blur kind {kind!r}; allowed: {', '.join(BLURS)}")
    return BLURS[kind](images, level)
