"""The public entry point: photo -> face crop -> tensor -> attention -> score and maps, for one image or many files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from attn_core.faces import IMAGE_SUFFIXES, AlignedFace, ImageLike, extract_faces
from attn_core.scoring.quality import QualityResult, resolve_precision, score_faces
from attn_core.zoo.backbone import Backbone, cached_backbone


@dataclass(frozen=True)
class ScoreOptions:
    """What to score: block (default last), heads (None = all), aggregation and token mode (docs/DESIGN.md 1)."""

    block: int = -1
    heads: tuple[int, ...] | None = None
    aggregation: str = "mean"
    tokens: str = "all"


@dataclass(frozen=True)
class FileScore:
    """One row of a batch run: a scored face of a file, or the reason the file was skipped."""

    path: Path
    result: QualityResult | None = None
    error: str | None = None
    face_index: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class FaceQualityModel:
    """``FaceQualityModel("cvlface-vit-s-adaface", weights="vits.pt").score_image("me.jpg")[0].score``."""

    def __init__(
        self,
        backbone: str | Backbone = "",
        *,
        weights: str | os.PathLike | None = None,
        device: str | None = None,
        random_init: bool = False,
        num_heads: int | None = None,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        """``precision``: "fp32" (the reference scores, matched to the method's code), "bf16" or "fp16" (the blocks
        under autocast: 2-3x faster on CPUs with bf16 matrix units and on GPUs, ranking kept to Spearman >= 0.999,
        see benchmarks/RESULTS.md), or "auto" (bf16 where the hardware has it, else fp32). Every result records it
        (``result.precision``). ``compile``: run the blocks through torch.compile."""
        self.compile = compile
        if isinstance(backbone, Backbone):
            self.backbone = backbone
        else:
            self.backbone = cached_backbone(backbone, None if weights is None else str(weights), device, random_init, num_heads)
        self.precision = resolve_precision(precision, self.backbone.device)

    @classmethod
    def from_module(cls, model: torch.nn.Module, *, name: str = "custom-vit", mean: tuple[float, float, float] | None = None,
                    std: tuple[float, float, float] | None = None, face_trained: bool = True, device: str | None = None,
                    precision: str = "fp32") -> FaceQualityModel:
        """Score with your own ViT module: a timm ``VisionTransformer`` or a face ViT of the insightface / CVLFace
        family (``attn_core.zoo.face_vit.FaceViT`` or any module with the same ``patch_embed`` / ``pos_embed`` /
        ``blocks[i].norm1`` / ``blocks[i].attn.qkv`` layout). The architecture is read from the module itself."""
        from attn_core.zoo.backbone import Backbone, spec_of_module

        spec = spec_of_module(model, name=name, mean=mean, std=std, face_trained=face_trained)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(Backbone(spec, model, torch.device(device), f"module {type(model).__name__} ({name})"),
                   precision=precision)

    @property
    def spec(self):
        return self.backbone.spec

    def score_faces(self, aligned: np.ndarray | Sequence[np.ndarray], options: ScoreOptions = ScoreOptions(), *,
                    with_embedding: bool = False, batch_size: int = 64) -> list[QualityResult]:
        """Score already-aligned 112x112 RGB uint8 crops."""
        return score_faces(self.backbone, aligned, block=options.block, heads=options.heads,
                           aggregation=options.aggregation, tokens=options.tokens,
                           with_embedding=with_embedding, batch_size=batch_size,
                           precision=self.precision, compile=self.compile)

    def score_aligned(self, faces: Sequence[AlignedFace], options: ScoreOptions = ScoreOptions(), *,
                      with_embedding: bool = False) -> list[QualityResult]:
        results = self.score_faces([f.aligned for f in faces], options, with_embedding=with_embedding)
        return [replace(result, face=face) for result, face in zip(results, faces)]

    def score_image(self, image: ImageLike, options: ScoreOptions = ScoreOptions(), *, all_faces: bool = False,
                    on_no_face: str = "error", with_embedding: bool = False) -> list[QualityResult]:
        """Detect, align and score a photo: the largest face, or every face with ``all_faces=True``."""
        faces = extract_faces(image, on_no_face=on_no_face, all_faces=all_faces)
        return self.score_aligned(faces, options, with_embedding=with_embedding)

    def score_files(self, paths: Iterable[str | os.PathLike], options: ScoreOptions = ScoreOptions(), *,
                    batch_size: int = 32, workers: int = 0, all_faces: bool = False, on_no_face: str = "error",
                    with_embedding: bool = False) -> Iterator[FileScore]:
        """Score many files; a file that cannot be read or has no face is yielded with its error, never raised."""
        dataset = _FaceFiles([Path(p) for p in paths], all_faces, on_no_face)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, collate_fn=_flatten, shuffle=False,
            persistent_workers=False,
        )
        for batch in loader:
            good = [item for item in batch if item.error is None]
            if good:
                results = self.score_aligned([item.face for item in good], options, with_embedding=with_embedding)
                scored = iter(results)
            for item in batch:
                if item.error is not None:
                    yield FileScore(item.path, error=item.error)
                else:
                    yield FileScore(item.path, result=next(scored), face_index=item.face_index)


def create_model(backbone: str = "", *, weights: str | os.PathLike | None = None, device: str | None = None,
                 random_init: bool = False, num_heads: int | None = None, precision: str = "fp32") -> FaceQualityModel:
    """The one factory (like ``timm.create_model``): a registry name, ``timm:NAME``, or "" for the default backbone
    (installed face-trained weights first; online, the method's ViT-B is downloaded on first use). The model carries
    its preprocessing (input size, mean/std, colour order) in ``model.spec``."""
    return FaceQualityModel(backbone, weights=weights, device=device, random_init=random_init, num_heads=num_heads,
                            precision=precision)


@dataclass
class _Prepared:
    path: Path
    face: AlignedFace | None = None
    error: str | None = None
    face_index: int = 0


class _FaceFiles(torch.utils.data.Dataset):
    """Decoding, detection and alignment of each file, run in DataLoader workers."""

    def __init__(self, paths: list[Path], all_faces: bool, on_no_face: str) -> None:
        self.paths, self.all_faces, self.on_no_face = paths, all_faces, on_no_face

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> list[_Prepared]:
        path = self.paths[index]
        try:
            faces = extract_faces(path, on_no_face=self.on_no_face, all_faces=self.all_faces)
        except ValueError as error:  # ImageLoadError, NoFaceError: expected, reported per file
            return [_Prepared(path, error=str(error))]
        except Exception as error:  # never let one file stop a run of 10,000
            return [_Prepared(path, error=f"{type(error).__name__}: {error}")]
        return [_Prepared(path, face=face, face_index=i) for i, face in enumerate(faces)]


def _flatten(batch: list[list[_Prepared]]) -> list[_Prepared]:
    return [item for items in batch for item in items]


def _not_a_file_reason(path: Path) -> str:
    """Why an existing-looking path cannot be read as an image file, in words."""
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return f"{path} is a symlink loop"
        except OSError:
            return f"{path} is a broken symlink (its target does not exist)"
        return f"{path} is a broken symlink"
    if path.exists():
        kind = "a fifo (named pipe)" if path.is_fifo() else "a socket" if path.is_socket() else \
            "a device" if path.is_block_device() or path.is_char_device() else "not a regular file"
        return f"{path} is {kind}, not an image file"
    return f"{path} does not exist"


def expand_paths(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files from files and folders (recursively, image suffixes only), plus the inputs that cannot be read with the
    reason (missing, a fifo, a broken symlink or symlink loop); inside folders such entries are reported, not skipped."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for entry in sorted(path.rglob("*")):
                if entry.suffix.lower() not in IMAGE_SUFFIXES or entry.is_dir():
                    continue
                if entry.is_file():
                    files.append(entry)
                else:
                    missing.append((entry, _not_a_file_reason(entry)))
        elif path.is_file():
            files.append(path)
        else:
            missing.append((path, _not_a_file_reason(path)))
    return files, missing
