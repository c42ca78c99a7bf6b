"""Degradations: identity at 0, monotone damage, seeded determinism, occlusion geometry, argument checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from attn_core.faces.degradations import DEGRADATIONS, degrade

# docs/DESIGN.md 3: ArcFace 112x112 template (left eye, right eye, nose, left and right mouth corners).
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]])

EXPECTED_NAMES = {"gaussian_blur", "motion_blur", "noise", "jpeg", "low_light", "over_exposure", "downscale",
                  "occlude_eyes", "occlude_mouth", "occlude_patch"}
SEEDED = {"motion_blur", "noise", "occlude_patch"}


def textured_face_like(seed: int, size: int = 112) -> np.ndarray:
    """Mid-grey image with detail at several scales (like skin, features and edges), never saturated."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 128.0)
    for sigma, amplitude in [(1.0, 20.0), (3.0, 25.0), (8.0, 30.0)]:
        field = cv2.GaussianBlur(rng.standard_normal((size, size, 3)), (0, 0), sigma)
        image += amplitude * field / field.std()
    return np.clip(image, 0, 255).astype(np.uint8)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def test_registry_names_and_metadata() -> None:
    assert set(DEGRADATIONS) == EXPECTED_NAMES
    for name, degradation in DEGRADATIONS.items():
        assert degradation.name == name and degradation.label and degradation.description


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_strength_zero_is_byte_identical_copy(name: str) -> None:
    image = textured_face_like(0)
    out = degrade(image, name, 0.0, seed=5)
    assert out is not image
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
@pytest.mark.parametrize("size", [112, 97])
def test_output_dtype_shape_and_input_untouched(name: str, size: int) -> None:
    image = textured_face_like(1, size)
    before = image.copy()
    out = degrade(image, name, 0.6, seed=2)
    assert out.dtype == np.uint8 and out.shape == image.shape and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image, before)
    assert not np.array_equal(out, image)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
@pytest.mark.parametrize("image_seed", [0, 1])
def test_damage_grows_with_strength(name: str, image_seed: int) -> None:
    image = textured_face_like(image_seed)
    strengths = np.linspace(0.0, 1.0, 11)
    for seed in (0, 3):
        quality = [psnr(image, degrade(image, name, s, seed=seed)) for s in strengths]
        assert quality[0] == float("inf")
        assert all(later < earlier for earlier, later in zip(quality, quality[1:])), (name, seed, quality)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_seeded_determinism(name: str) -> None:
    image = textured_face_like(2)
    np.testing.assert_array_equal(degrade(image, name, 0.7, seed=11), degrade(image, name, 0.7, seed=11))
    if name in SEEDED:
        assert not np.array_equal(degrade(image, name, 0.7, seed=11), degrade(image, name, 0.7, seed=12))


def test_parameter_end_points() -> None:
    flat = np.full((112, 112, 3), 200, np.uint8)
    assert degrade(flat, "low_light", 1.0).mean() == pytest.approx(0.1 * 255 * (200 / 255) ** 1.5, abs=0.5)
    assert degrade(flat, "over_exposure", 1.0).min() == 255
    # Noise sigma 60 at full strength; the median absolute deviation (x 1.4826) is unaffected by clipping.
    noise = degrade(np.full((112, 112, 3), 128, np.uint8), "noise", 1.0).astype(np.float64) - 128
    assert 1.4826 * np.median(np.abs(noise)) == pytest.approx(60, rel=0.05)
    # Downscale by 8: the image is rebuilt from a 14x14 version, so 8x8 blocks are nearly constant inside.
    checker = (np.indices((112, 112)).sum(axis=0) % 2 * 255).astype(np.uint8)
    rebuilt = degrade(np.dstack([checker] * 3), "downscale", 1.0)
    assert np.abs(rebuilt.astype(int) - 127).max() <= 2


def _covered(image: np.ndarray, out: np.ndarray, point: np.ndarray, colour: int) -> bool:
    x, y = int(round(point[0])), int(round(point[1]))
    return bool(np.all(out[y - 1:y + 2, x - 1:x + 2] == colour))


@pytest.mark.parametrize("strength", [0.05, 0.5, 1.0])
def test_occlusion_bars_cover_template_points(strength: float) -> None:
    image = textured_face_like(3)
    eyes = degrade(image, "occlude_eyes", strength)
    mouth = degrade(image, "occlude_mouth", strength)
    for point in ARCFACE_TEMPLATE_112[:2]:
        assert _covered(image, eyes, point, 0)
    for point in ARCFACE_TEMPLATE_112[3:]:
        assert _covered(image, mouth, point, 128)
    # Each bar stays on its own region: eyes bar off the mouth, mouth bar off the eyes.
    assert not _covered(image, eyes, ARCFACE_TEMPLATE_112[3], 0)
    assert not _covered(image, mouth, ARCFACE_TEMPLATE_112[0], 128)
    # The bar grows with strength: more pixels replaced.
    if strength < 1.0:
        assert np.sum(np.any(degrade(image, "occlude_eyes", 1.0) != image, axis=2)) > \
            np.sum(np.any(eyes != image, axis=2))


def test_occlusion_scales_with_image_and_follows_given_landmarks() -> None:
    big = textured_face_like(4, 224)
    eyes = degrade(big, "occlude_eyes", 0.3)
    for point in ARCFACE_TEMPLATE_112[:2] * 2:
        assert _covered(big, eyes, point, 0)
    # A tilted face: the bar follows the given eye positions, not the template.
    landmarks = np.array([[30.0, 40.0], [70.0, 60.0], [50.0, 70.0], [40.0, 95.0], [75.0, 100.0]])
    image = textured_face_like(5)
    tilted = degrade(image, "occlude_eyes", 0.2, landmarks=landmarks)
    for point in landmarks[:2]:
        assert _covered(image, tilted, point, 0)
    assert not _covered(image, tilted, ARCFACE_TEMPLATE_112[1], 0)  # template right eye (73.5, 51.5) is free
    # Landmarks are ignored by degradations that do not use them.
    np.testing.assert_array_equal(degrade(image, "noise", 0.5, landmarks=landmarks), degrade(image, "noise", 0.5))
    with pytest.raises(ValueError, match="5, 2"):
        degrade(image, "occlude_mouth", 0.5, landmarks=landmarks[:4])


def test_random_patch_is_nested_across_strengths() -> None:
    image = textured_face_like(6)
    changed = [np.any(degrade(image, "occlude_patch", s, seed=9) != image, axis=2) for s in (0.2, 0.5, 0.9)]
    assert changed[0].sum() < changed[1].sum() < changed[2].sum()
    assert np.all(changed[1][changed[0]]) and np.all(changed[2][changed[1]])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("blur", 0.5), "valid names: gaussian_blur"),
        (("noise", 1.5), r"\[0, 1\]"),
        (("noise", -0.1), r"\[0, 1\]"),
        (("noise", float("nan")), r"\[0, 1\]"),
    ],
)
def test_bad_arguments_raise(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        degrade(textured_face_like(0), *args)


def test_bad_image_raises() -> None:
    with pytest.raises(ValueError, match="uint8"):
        degrade(np.zeros((112, 112, 3), np.float32), "noise", 0.5)
    with pytest.raises(ValueError, match="uint8"):
        degrade(np.zeros((112, 112), np.uint8), "noise", 0.5)
