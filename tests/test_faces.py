"""Tests for attn_core.faces: loading, YuNet detection, 5-point alignment and the crop <-> photo mapping.

Expected values come from known geometry (similarities we apply ourselves), from raw cv2.FaceDetectorYN calls,
or from arithmetic on pixel values, never from the functions under test.
"""

from __future__ import annotations

import io
import math
import threading

import cv2
import numpy as np
import pytest
from PIL import Image

import attn_core.faces as faces
import attn_core.faces.images
from attn_core.faces import (
    ARCFACE_TEMPLATE,
    AlignedFace,
    ImageLoadError,
    NoFaceError,
    align_face,
    extract_faces,
    get_detector,
    load_image,
    similarity_transform,
)
from attn_core.paths import ASSETS_DIR

EXAMPLES = ASSETS_DIR / "examples"
GRAY = 127


# --------------------------------------------------------------------------------------------------- helpers


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    theta = math.radians(angle_deg)
    c, s = scale * math.cos(theta), scale * math.sin(theta)
    return np.array([[c, -s, tx], [s, c, ty]])


def _crop_to_canvas(angle_deg: float, scale: float, center: tuple[float, float]) -> np.ndarray:
    """Known similarity putting the 112 crop's centre at `center`, rotated and scaled about that centre."""
    matrix = cv2.getRotationMatrix2D((55.5, 55.5), angle_deg, scale)
    matrix[:, 2] += np.array(center) - np.array([55.5, 55.5])
    return matrix


def _raw_yunet(image_rgb: np.ndarray) -> np.ndarray:
    """Rows of a plain cv2.FaceDetectorYN call on the bundled model (independent of FaceDetector's bookkeeping)."""
    net = cv2.FaceDetectorYN.create(str(ASSETS_DIR / faces.YUNET_FILENAME), "", (320, 320), 0.6, 0.3, 5000)
    net.setInputSize((image_rgb.shape[1], image_rgb.shape[0]))
    _, rows = net.detect(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert rows is not None
    return rows


@pytest.fixture(scope="module")
def aligned_face_112() -> np.ndarray:
    crop = np.asarray(Image.open(EXAMPLES / "aligned_112.png").convert("RGB"))
    assert crop.shape == (112, 112, 3)
    return crop


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "astronaut.jpg").convert("RGB"))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------- template + transform


def test_template_is_the_arcface_template():
    assert ARCFACE_TEMPLATE.shape == (5, 2) and ARCFACE_TEMPLATE.dtype == np.float32
    assert ARCFACE_TEMPLATE[0, 0] == pytest.approx(38.2946) and ARCFACE_TEMPLATE[4, 1] == pytest.approx(92.2041)
    assert ARCFACE_TEMPLATE[0, 0] < ARCFACE_TEMPLATE[1, 0]  # row 0 is the image-left eye


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (17, 0.35, -40, 12.5), (-120, 2.7, 300, -80)])
def test_similarity_transform_recovers_known_matrix(angle, scale, tx, ty):
    photo_to_crop = _similarity(angle, scale, tx, ty)
    crop_to_photo = np.linalg.inv(np.vstack([photo_to_crop, [0, 0, 1]]))[:2]
    photo_landmarks = _apply(crop_to_photo, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(similarity_transform(photo_landmarks), photo_to_crop, atol=1e-4)


def test_similarity_transform_custom_template_and_no_reflection():
    template = np.array([[0, 0], [10, 0], [5, 5], [0, 10], [10, 10]], dtype=np.float64)
    known = _similarity(30, 2.0, 5, 7)
    np.testing.assert_allclose(similarity_transform(template, _apply(known, template)), known, atol=1e-9)
    mirrored = ARCFACE_TEMPLATE * np.array([-1, 1], dtype=np.float32)
    matrix = similarity_transform(mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation, never a flip


def test_similarity_transform_rejects_bad_landmarks():
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)))
    with pytest.raises(ValueError):
        similarity_transform(np.ones((4, 2)))


# --------------------------------------------------------------------------------------------------- detection + alignment


def test_landmark_order_matches_template_on_upright_photo(astronaut):
    face = get_detector().detect(astronaut)[0]
    eye_a, eye_b, nose, mouth_a, mouth_b = face.landmarks
    assert eye_a[0] < nose[0] < eye_b[0]  # row 0 is the image-left eye, as in the template
    assert mouth_a[0] < mouth_b[0]
    assert max(eye_a[1], eye_b[1]) < nose[1] < min(mouth_a[1], mouth_b[1])
    x, y, w, h = face.box
    assert x <= eye_a[0] and eye_b[0] <= x + w and y <= eye_a[1] and mouth_b[1] <= y + h


class _KnownLandmarks(faces.FaceDetector):
    """A detector stub that reports landmarks we placed ourselves, so alignment is tested without detector noise."""

    def __init__(self, landmarks: np.ndarray) -> None:
        self._landmarks = np.asarray(landmarks, np.float32)

    def detect(self, image_rgb: np.ndarray) -> list[faces.DetectedFace]:
        x0, y0 = self._landmarks.min(0)
        x1, y1 = self._landmarks.max(0)
        return [faces.DetectedFace((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), self._landmarks, 0.99)]


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (35.0, 1.7), (-120.0, 2.5), (10.0, 6.0)])
def test_alignment_undoes_a_known_similarity(aligned_face_112, angle, scale):
    width, height = int(112 * scale * 1.6) + 40, int(112 * scale * 1.4) + 30
    crop_to_canvas = _crop_to_canvas(angle, scale, (width * 0.45, height * 0.55))
    canvas = cv2.warpAffine(
        aligned_face_112, crop_to_canvas, (width, height), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(GRAY, GRAY, GRAY),
    )
    canvas_landmarks = _apply(crop_to_canvas, ARCFACE_TEMPLATE)

    [face] = extract_faces(canvas, detector=_KnownLandmarks(canvas_landmarks))
    expected_transform = cv2.invertAffineTransform(crop_to_canvas)
    np.testing.assert_allclose(face.transform, expected_transform, atol=1e-5 * max(1.0, scale * 56))
    np.testing.assert_allclose(_apply(face.transform, face.landmarks), ARCFACE_TEMPLATE, atol=0.01)
    np.testing.assert_allclose(face.crop_to_image(ARCFACE_TEMPLATE), canvas_landmarks, atol=0.01)
    inner = (slice(4, 108), slice(4, 108))
    diff = np.abs(face.aligned[inner].astype(float) - aligned_face_112[inner].astype(float))
    assert diff.mean() < (4.0 if scale >= 1 else 8.0)


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (0.0, 1.6), (8.0, 1.3), (-8.0, 2.0), (-5.0, 0.7), (5.0, 5.0)])
def test_yunet_landmarks_follow_a_known_similarity(astronaut, angle, scale):
    """Real detector on the astronaut photo warped by a known similarity (scale 5 exercises detect-on-downscaled).

    YuNet's landmarks carry a few pixels of noise (up to ~20 % of the eye distance between two renderings of one
    face), and this int8 model barely follows head roll beyond ~10 degrees, so tolerances are relative and rotations
    modest; exact geometry is covered by test_alignment_undoes_a_known_similarity.
    """
    reference = _raw_yunet(astronaut)[0, 4:14].reshape(5, 2).astype(np.float64)
    eye_distance = np.linalg.norm(reference[1] - reference[0])
    size = int(512 * scale) + 200
    photo_to_canvas = cv2.getRotationMatrix2D((256, 256), angle, scale)
    photo_to_canvas[:, 2] += size / 2 - 256
    canvas = cv2.warpAffine(astronaut, photo_to_canvas, (size, size), borderValue=(GRAY, GRAY, GRAY))

    [face] = extract_faces(canvas)
    assert face.method == "detected" and face.num_faces == 1
    back_in_photo = _apply(cv2.invertAffineTransform(photo_to_canvas), face.landmarks)
    assert np.linalg.norm(back_in_photo - reference, axis=1).max() < 0.25 * eye_distance

    # Where the reference landmarks end up in the crop: on the template, up to detector noise and face shape.
    reference_in_crop = _apply(face.transform @ np.vstack([photo_to_canvas, [0, 0, 1]]), reference)
    np.testing.assert_allclose(reference_in_crop.mean(0), ARCFACE_TEMPLATE.mean(0), atol=5.0)
    eye_vector = reference_in_crop[1] - reference_in_crop[0]
    assert abs(math.degrees(math.atan2(eye_vector[1], eye_vector[0]))) < 8.0
    def spread(points: np.ndarray) -> float:
        return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))

    assert spread(reference_in_crop) == pytest.approx(spread(ARCFACE_TEMPLATE), rel=0.1)
    assert np.linalg.norm(reference_in_crop - ARCFACE_TEMPLATE, axis=1).max() < 9.0


def test_detector_matches_raw_yunet_on_small_photo(astronaut):
    rows = _raw_yunet(astronaut)
    face = get_detector().detect(astronaut)[0]
    np.testing.assert_allclose(face.box, rows[0, :4], atol=1e-3)
    np.testing.assert_allclose(face.landmarks, rows[0, 4:14].reshape(5, 2), atol=1e-3)
    assert face.confidence == pytest.approx(float(rows[0, 14]), abs=1e-5)


def _two_face_canvas(astronaut: np.ndarray) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Two copies of the astronaut's head (big and small) on a gray canvas; returns face centres too."""
    head = astronaut[20:220, 140:310]  # the face box is about x 178..269, y 62..176
    face_center_in_head = np.array([(178 + 269) / 2 - 140, (62 + 176) / 2 - 20])
    canvas = np.full((520, 820, 3), GRAY, np.uint8)
    big = cv2.resize(head, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(head, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    canvas[300 : 300 + small.shape[0], 40 : 40 + small.shape[1]] = small  # small one first, top-left-ish
    canvas[40 : 40 + big.shape[0], 480 : 480 + big.shape[1]] = big
    big_center = tuple(np.array([480, 40]) + face_center_in_head * 1.5)
    small_center = tuple(np.array([40, 300]) + face_center_in_head * 0.8)
    return canvas, big_center, small_center


def _box_center(box):
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2])


def test_two_faces_largest_first(astronaut):
    canvas, big_center, small_center = _two_face_canvas(astronaut)
    largest = extract_faces(canvas)
    assert len(largest) == 1 and largest[0].num_faces == 2
    assert np.linalg.norm(_box_center(largest[0].box) - big_center) < 20

    both = extract_faces(canvas, all_faces=True)
    assert len(both) == 2 and all(face.num_faces == 2 for face in both)
    assert both[0].box[2] * both[0].box[3] > both[1].box[2] * both[1].box[3]
    assert np.linalg.norm(_box_center(both[0].box) - big_center) < 20
    assert np.linalg.norm(_box_center(both[1].box) - small_center) < 15
    assert all(face.aligned.shape == (112, 112, 3) for face in both)


def test_detector_is_thread_safe(astronaut):
    canvas, _, _ = _two_face_canvas(astronaut)
    inputs = [astronaut, canvas, astronaut[:400], canvas[:, 300:]] * 3
    detector = get_detector()
    expected = [[face.box for face in detector.detect(image)] for image in inputs]
    results: list = [None] * len(inputs)

    def work(index: int) -> None:
        results[index] = [face.box for face in detector.detect(inputs[index])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_no_face_raises_with_advice(tmp_path):
    blank = np.full((240, 320, 3), 200, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    for index, image in enumerate((blank, noise)):
        path = tmp_path / f"empty_scene_{index}.png"
        Image.fromarray(image).save(path)
        with pytest.raises(NoFaceError) as caught:
            extract_faces(path)
        message = str(caught.value)
        assert f"empty_scene_{index}.png" in message and "center_crop" in message and "--no-face" in message


def test_center_crop_fallback():
    height, width = 200, 300
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :] = (255, 0, 0)
    image[:, 50:250] = (0, 255, 0)  # the centre square is green, the side bands red
    result = extract_faces(image, on_no_face="center_crop")
    assert len(result) == 1
    face = result[0]
    assert face.method == "center_crop" and face.num_faces == 0
    assert face.aligned.shape == (112, 112, 3) and face.aligned.dtype == np.uint8
    assert np.all(face.aligned == (0, 255, 0))
    # crop corners map onto the square's corners in the photo
    np.testing.assert_allclose(face.crop_to_image(np.array([[0.0, 0.0], [112.0, 112.0]])), [[50, 0], [250, 200]], atol=1e-6)


def test_pre_aligned_passes_through_byte_identical(tmp_path):
    crop = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    result = extract_faces(crop)
    assert len(result) == 1
    face = result[0]
    assert face.method == "pre_aligned" and face.num_faces == 1 and face.box is None and face.landmarks is None
    assert face.aligned.dtype == np.uint8 and face.aligned.tobytes() == crop.tobytes()
    np.testing.assert_array_equal(face.transform, [[1, 0, 0], [0, 1, 0]])

    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    assert extract_faces(path)[0].aligned.tobytes() == crop.tobytes()


def test_bad_on_no_face_value():
    with pytest.raises(ValueError):
        extract_faces(np.zeros((50, 60, 3), np.uint8), on_no_face="ignore")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- crop <-> photo


def _known_face(photo_shape=(300, 400)) -> tuple[AlignedFace, np.ndarray]:
    photo_to_crop = _similarity(20, 0.5, -30, 10)
    photo = np.random.default_rng(2).integers(0, 256, (*photo_shape, 3), dtype=np.uint8)
    crop = np.zeros((112, 112, 3), np.uint8)
    return AlignedFace(crop, photo, None, None, photo_to_crop, 1, "detected"), photo_to_crop


def test_crop_to_image_inverts_the_transform():
    face, photo_to_crop = _known_face()
    photo_points = np.array([[120.0, 80.0], [200.5, 150.25], [0, 0]])
    crop_points = _apply(photo_to_crop, photo_points)
    np.testing.assert_allclose(face.crop_to_image(crop_points), photo_points, atol=1e-9)


def test_warp_to_image_float_places_values_and_nans():
    face, photo_to_crop = _known_face()
    # A crop-space map whose value is its own crop x coordinate: after warping back, every covered photo pixel
    # must hold the crop x its centre maps to.
    crop_x = np.tile(np.arange(112, dtype=np.float32), (112, 1))
    warped = face.warp_to_image(crop_x)
    assert warped.shape == (300, 400) and warped.dtype == np.float32

    ys, xs = np.mgrid[0:300, 0:400]
    mapped = _apply(photo_to_crop, np.stack([xs.ravel(), ys.ravel()], 1)).reshape(300, 400, 2)
    well_inside = np.all((mapped > 1) & (mapped < 110), axis=2)
    clearly_outside = np.any((mapped < -1) | (mapped > 112), axis=2)
    assert well_inside.sum() > 1000 and clearly_outside.sum() > 1000
    np.testing.assert_allclose(warped[well_inside], mapped[..., 0][well_inside], atol=1e-3)
    assert np.all(np.isnan(warped[clearly_outside]))

    three_channel = face.warp_to_image(np.repeat(crop_x[..., None], 3, axis=2).astype(np.float64))
    assert three_channel.shape == (300, 400, 3) and three_channel.dtype == np.float64
    assert np.all(np.isnan(three_channel[clearly_outside]))
    with pytest.raises(ValueError):
        face.warp_to_image(np.zeros((56, 56), np.float32))


def test_align_then_warp_back_round_trip():
    # A smooth photo so bilinear resampling twice loses little.
    ys, xs = np.mgrid[0:300, 0:400].astype(np.float64)
    photo = np.stack(
        [127 + 100 * np.sin(xs / 23.0), 127 + 100 * np.cos(ys / 19.0), 127 + 60 * np.sin((xs + ys) / 31.0)], axis=2
    ).astype(np.uint8)
    landmarks = _apply(np.linalg.inv(np.vstack([_similarity(-15, 0.6, -50, 20), [0, 0, 1]]))[:2], ARCFACE_TEMPLATE)
    crop, matrix = align_face(photo, landmarks)
    np.testing.assert_allclose(matrix, _similarity(-15, 0.6, -50, 20), atol=1e-6)
    face = AlignedFace(crop, photo, None, landmarks, matrix, 1, "detected")

    back = face.warp_to_image(crop)
    assert back.dtype == np.uint8 and back.shape == photo.shape
    float_back = face.warp_to_image(crop.astype(np.float32))
    covered = ~np.isnan(float_back[..., 0])
    interior = cv2.erode(covered.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert interior.sum() > 10000
    assert np.abs(back[interior].astype(float) - photo[interior].astype(float)).mean() < 3.0
    assert np.all(back[~covered] == 0)
    np.testing.assert_allclose(face.crop_to_image(ARCFACE_TEMPLATE), landmarks, atol=1e-6)


# --------------------------------------------------------------------------------------------------- loading


def _two_block_image() -> np.ndarray:
    """40 wide, 20 high: left half red, right half blue, top-left 10x10 white: asymmetric under any rotation."""
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)
    image[:, 20:] = (0, 0, 255)
    image[:10, :10] = (255, 255, 255)
    return image


@pytest.mark.parametrize("orientation,rot90_k", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_honoured(tmp_path, orientation, rot90_k):
    # EXIF 6: display = stored rotated 90 deg clockwise; 8: counter-clockwise; 3: 180 deg.
    stored = _two_block_image()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated_{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    loaded = load_image(path)
    expected = np.rot90(stored, k=rot90_k)
    assert loaded.shape == expected.shape
    assert np.abs(loaded.astype(int) - expected.astype(int)).mean() < 6


def test_grayscale_palette_rgba_16bit_png(tmp_path):
    gray = np.array([[0, 64, 128, 255]], np.uint8)
    (tmp_path / "gray.png").write_bytes(_png_bytes(Image.fromarray(gray, "L")))
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, axis=2))

    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([10, 20, 30, 200, 100, 0, 0, 255, 7] + [0] * (256 * 3 - 9))
    palette_image.putdata([2, 0, 1])
    (tmp_path / "palette.png").write_bytes(_png_bytes(palette_image))
    np.testing.assert_array_equal(load_image(tmp_path / "palette.png"), [[[0, 255, 7], [10, 20, 30], [200, 100, 0]]])

    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    (tmp_path / "rgba.png").write_bytes(_png_bytes(Image.fromarray(rgba, "RGBA")))
    half = [round(c * 128 / 255 + 255 * 127 / 255) for c in (200, 100, 50)]
    expected_rgba = np.array([[[200, 100, 50], [255, 255, 255], half]])
    assert np.abs(load_image(tmp_path / "rgba.png").astype(int) - expected_rgba).max() <= 1

    deep = np.array([[0, 257, 32896, 65535, 1000]], np.uint16)
    deep_image = Image.fromarray(deep)
    (tmp_path / "deep.png").write_bytes(_png_bytes(deep_image))
    expected_deep = np.rint(deep.astype(float) * 255 / 65535)
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.dtype == np.uint8
    assert np.abs(loaded[..., 0].astype(int) - expected_deep).max() <= 0
    assert np.all(loaded[..., 0] == loaded[..., 2])


def test_array_and_pil_inputs():
    floats = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    np.testing.assert_array_equal(load_image(floats), [[[0, 128, 255]]])
    with pytest.raises(ImageLoadError, match=r"\[0, 1\]"):
        load_image(floats * 255)
    rgb = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    loaded = load_image(rgb)
    np.testing.assert_array_equal(loaded, rgb)
    assert loaded is not rgb  # callers may mutate the result
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(load_image(rgb[..., 0]), np.repeat(rgb[..., :1], 3, axis=2))
    np.testing.assert_array_equal(load_image(_png_bytes(Image.fromarray(rgb))), rgb)
    with pytest.raises(ImageLoadError):
        load_image(np.zeros((4, 4, 2), np.uint8))


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(4).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "filename,content",
    [
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
        ("random.jpg", np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()),
        ("empty.jpg", b""),
        ("truncated.jpg", _jpeg_bytes()[: len(_jpeg_bytes()) // 2]),
        ("notes.jpg", b"This is a text file, not a photo.\n" * 20),
        (None, None),  # missing file
    ],
)
def test_bad_files_raise_image_load_error_naming_the_file(tmp_path, filename, content):
    path = tmp_path / (filename or "does_not_exist.jpg")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert path.name in str(caught.value)
    with pytest.raises(ImageLoadError):
        extract_faces(str(path))


def test_bad_bytes_raise_image_load_error():
    with pytest.raises(ImageLoadError):
        load_image(b"")
    with pytest.raises(ImageLoadError):
        load_image(b"not an image")


def test_over_limit_image_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "huge_photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    monkeypatch.setattr(attn_core.faces.images, "MAX_PIXELS", 500)
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert "huge_photo.png" in str(caught.value) and "megapixel" in str(caught.value)
    with pytest.raises(ImageLoadError):
        load_image(np.zeros((20, 30, 3), np.uint8))
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(path)
    assert load_image(path).shape == (10, 20, 3)


def test_example_assets_load_and_have_one_face():
    examples = sorted(EXAMPLES.glob("*.jpg"))
    assert len(examples) == 7
    assert sum(path.stat().st_size for path in EXAMPLES.iterdir()) < 1.5e6
    for path in examples:
        found = extract_faces(path)
        assert found[0].method == "detected" and found[0].num_faces == 1, path.name


def test_large_photos_are_reduced_at_decoding(tmp_path) -> None:
    from PIL import Image as PILImage

    from attn_core.faces import extract_faces, load_image

    photo = PILImage.open(ASSETS_DIR / "examples" / "person_a_1.jpg").convert("RGB")
    scale = 6000 / max(photo.size)
    big = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    for suffix in ("jpg", "png"):
        path = tmp_path / f"big.{suffix}"
        big.save(path)
        image = load_image(path)
        assert max(image.shape[:2]) <= faces.DECODE_MAX_SIDE
        assert abs(image.shape[1] / image.shape[0] - big.width / big.height) < 0.01  # aspect kept
        (face,) = extract_faces(path)
        assert face.aligned.shape == (112, 112, 3) and face.num_faces == 1
