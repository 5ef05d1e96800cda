"""Blur: against an independent numpy reference, identity, mean preservation, wide kernels, speed shape."""

from __future__ import annotations

import numpy as np
import pytest

from hwclf.blur import blur, box_blur, gaussian_blur


def sliding_mean(image: np.ndarray, k: int) -> np.ndarray:
    """Direct k x k mean with reflect-101 borders (numpy 'reflect'), window [x - k//2, x + k - 1 - k//2]."""
    a, b = k // 2, k - 1 - k // 2
    padded = np.pad(image.astype(np.float64), ((a, b), (a, b)), mode="reflect")
    h, w = image.shape
    return sum(padded[i:i + h, j:j + w] for i in range(k) for j in range(k)) / (k * k)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 7, 10, 20, 30, 41])
def test_box_blur_matches_a_direct_sliding_mean(images, k):
    out = box_blur(images, k)
    assert out.shape == images.shape and out.dtype == np.uint8
    for i in (0, 137, 299):  # across the 128-image chunks
        ref = sliding_mean(images[i], k)
        assert np.abs(out[i] - ref).max() < 1.0  # OpenCV's uint8 path rounds in fixed point
    exact = box_blur(images[:5].astype(np.float32), k)
    np.testing.assert_allclose(exact[3], sliding_mean(images[3], k), atol=1e-3)


@pytest.mark.parametrize("k", [0, 1, -3])
def test_kernel_up_to_one_is_identity_and_a_copy(images, k):
    out = box_blur(images, k)
    np.testing.assert_array_equal(out, images)
    assert out is not images
    np.testing.assert_array_equal(gaussian_blur(images, 0), images)


def test_mean_intensity_preserved_away_from_borders():
    img = np.zeros((1, 28, 28), np.float32)
    img[0, 10:18, 12:16] = 200.0
    out = box_blur(img, 5)
    assert out[0].sum() == pytest.approx(img[0].sum(), rel=1e-4)  # the ink stays inside the frame
    g = gaussian_blur(img, 1.5)
    assert g[0].sum() == pytest.approx(img[0].sum(), rel=1e-3)


def test_kernels_as_wide_as_the_image_leave_almost_no_letter(images):
    letter = np.zeros((1, 28, 28), np.uint8)
    letter[0, 4:24, 13:15] = 255  # a thin vertical stroke
    contrast = [np.ptp(box_blur(letter, k)) for k in (0, 5, 10, 20, 30)]
    assert contrast == sorted(contrast, reverse=True) and contrast[0] == 255
    assert contrast[-1] < 40  # k=30 > 28 pixels: the stroke is nearly gone


def test_even_kernel_shifts_half_a_pixel_towards_bottom_right():
    dot = np.zeros((1, 28, 28), np.float32)
    dot[0, 14, 14] = 1.0
    out = box_blur(dot, 4)[0]
    rows, cols = np.nonzero(out)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (13, 16, 13, 16)  # centre at 14.5


def test_dispatch_and_gaussian_shape(images):
    np.testing.assert_array_equal(blur(images, 5, "box"), box_blur(images, 5))
    out = blur(images, 2.0, "gaussian")
    assert out.shape == images.shape and out.dtype == np.uint8 and out.std() < images.std()
    with pytest.raises(ValueError, match="allowed: box, gaussian"):
        blur(images, 3, "median")


def test_a_single_image_batch_keeps_its_shape():
    one = np.random.default_rng(1).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    assert box_blur(one, 3).shape == (1, 28, 28)
