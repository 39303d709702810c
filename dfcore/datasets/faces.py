"""Faces: detection (MTCNN, OpenCV's Haar cascade as the fallback), square crops with a margin, and a
data root of videos or whole photographs turned into a data root of face crops.

Training data and new inputs are cropped by the same code with the same `CropSettings`; the
settings travel with the run (``manifests/info.json``) and from there into checkpoints, so a
model is always shown faces cut the way it was trained on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm import tqdm

from dfcore.datasets.manifest import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    DataError,
    apply_metadata,
    list_layout,
)
from dfcore.datasets.video import read_frames

DETECTORS = ("mtcnn", "haar")
KEEP = ("largest", "all")
_VERSION = 1  # bump when cropping changes, so cached crops are remade


@dataclass(frozen=True)
class CropSettings:
    """How faces are found and cut; part of the cache key of every crop and stored with the run."""

    detector: str = "mtcnn"  # 'mtcnn' (facenet-pytorch, 5 landmarks) or 'haar' (OpenCV, no landmarks)
    frames_per_video: int = 16  # frames sampled evenly from each video
    margin: float = 0.3  # added on every side of the face box, as a share of its longer side (negative: tighter)
    offset: float = 0.0  # the crop's centre moved down from the box's by this share of the box's side
    size: int = 224  # side of the square crop, pixels
    min_face: int = 40  # smallest face side kept, in pixels of the original frame
    keep: str = "largest"  # 'largest' face per frame, or 'all' of them
    detect_side: int = 960  # frames are downscaled to this longer side for detection only

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f"face detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {self.keep!r}")
        if not -0.45 <= self.margin or self.size < 8 or self.min_face < 1 or self.frames_per_video < 1:
            raise ValueError(f"crop settings out of range: {self}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Face:
    """One detected face: its box (x1, y1, x2, y2) and 5 landmarks (eyes, nose, mouth corners; None from
    the Haar cascade) in pixels of the image it was found in, and the detector's score."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector:
    """Finds faces in RGB frames with the detector `CropSettings` names; faces sorted largest first."""

    def __init__(self, settings: CropSettings = CropSettings(), device: str = "cpu"):
        self.settings = settings
        if settings.detector == "mtcnn":
            from facenet_pytorch import MTCNN  # weights ship inside the wheel: nothing is downloaded

            # the smallest face MTCNN looks for, in pixels of the downscaled frame (it needs >= 12)
            self._mtcnn = lambda min_size: MTCNN(keep_all=True, min_face_size=min_size, device=device,
                                                 post_process=False)
            self._models = {}
        else:
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            self._haar = cv2.CascadeClassifier(str(cascade))
            if self._haar.empty():
                raise DataError(f"OpenCV's face cascade {cascade} did not load: reinstall opencv-python-headless<5.")

    def _scale(self, image: np.ndarray) -> float:
        return min(1.0, self.settings.detect_side / max(image.shape[:2]))

    def _detect_mtcnn(self, small: np.ndarray, scale: float) -> list[Face]:
        min_size = max(12, int(self.settings.min_face * scale))
        model = self._models.get(min_size) or self._models.setdefault(min_size, self._mtcnn(min_size))
        boxes, scores, points = model.detect(small, landmarks=True)
        if boxes is None:
            return []
        return [Face(tuple(float(v) / scale for v in box), float(score),
                     tuple((float(x) / scale, float(y) / scale) for x, y in pts))
                for box, score, pts in zip(boxes, scores, points)]

    def _detect_haar(self, small: np.ndarray, scale: float) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_size = max(12, int(self.settings.min_face * scale))
        boxes, _, weights = self._haar.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                          minSize=(min_size, min_size), outputRejectLevels=True)
        return [Face((x / scale, y / scale, (x + w) / scale, (y + h) / scale), float(weight))
                for (x, y, w, h), weight in zip(boxes, np.ravel(weights))]

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Returns the faces in one HxWx3 uint8 RGB image at least ``min_face`` pixels across, largest first
        (only the largest with ``keep='largest'``)."""
        scale = self._scale(image)
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        detect = self._detect_mtcnn if self.settings.detector == "mtcnn" else self._detect_haar
        faces = sorted((f for f in detect(np.ascontiguousarray(small), scale) if f.side >= self.settings.min_face),
                       key=lambda f: -f.side)
        return faces[:1] if self.settings.keep == "largest" else faces


def crop_face(image: np.ndarray, face: Face, *, margin: float, size: int, offset: float = 0.0):
    """Returns the square crop around ``face`` (``margin`` of its longer side added on every side, its centre
    ``offset`` of that side below the box's), resized to ``size``, and the face's landmarks in crop pixels (None
    without landmarks).

    The square is shifted to stay inside the image where it fits, and padded with black only
    where the image is smaller than the square.
    """
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    side = max(1, int(round(face.side * (1 + 2 * margin))))
    x0 = int(round((x1 + x2 - side) / 2))
    y0 = int(round((y1 + y2 - side) / 2 + offset * face.side))
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    source = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) if pad else image
    crop = source[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)
    landmarks = None
    if face.landmarks is not None:
        landmarks = [[round((x - x0) * size / side, 2), round((y - y0) * size / side, 2)] for x, y in face.landmarks]
    return crop, landmarks


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Returns the hex sha256 of the file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


MAX_PIXELS = 400_000_000  # PIL refuses images over 179 MP as possible decompression bombs; photographs reach 200
_DECODE_SIDE = 8192  # JPEGs larger than this are decoded at a reduced scale (faces are found at 960 px anyway)


def read_image_rgb(path) -> np.ndarray:
    """Returns any image PIL opens (grey, RGBA, CMYK, palette, 16-bit, up to `MAX_PIXELS`) as an HxWx3 uint8 RGB
    array, EXIF orientation applied; a `DataError` naming the file when it does not decode."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.draft("RGB", (_DECODE_SIDE, _DECODE_SIDE))  # JPEG only: decode huge ones at 1/2, 1/4, 1/8
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16"):  # 16-bit grey: the top 8 bits, as an 8-bit export would keep
                array = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(array[..., None], 3, axis=2)
            if image.mode in ("I", "F"):  # 32-bit integer or float grey: scaled into 0-255
                array = np.asarray(image, dtype=np.float64)
                low, high = float(array.min()), float(array.max())
                array = (array - low) / max(high - low, 1e-12) * 255
                return np.repeat(array.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except Exception as err:
        raise DataError(f"Cannot read image {path} ({type(err).__name__}: {err}): it is not an image this "
                        "study can decode, or it is truncated. Re-save it as JPEG or PNG, or remove it.") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@dataclass
class CropResult:
    """What `crop_data_root` made: the data root of crops, one row per source file, and the sources left out."""

    root: Path
    layout: str
    group_rule: str
    settings: CropSettings
    sources: pd.DataFrame  # path, kind, label, split, group, frames, frames_with_face, crops, reused, error
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)

    @property
    def crops(self) -> pd.DataFrame:
        """The crops' metadata (path relative to ``root``, label, split where the sources had one, group, video,
        frame, face, box, landmarks)."""
        return pd.read_csv(self.root / "metadata.csv", dtype={"group": str})


def holds_videos(root) -> bool:
    """Returns whether the data root ``root`` holds any video file in its class folders."""
    _, videos = list_layout(Path(root), VIDEO_SUFFIXES, all_splits=False)
    return not videos.empty


def sample_crops(crops: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """Returns up to ``n`` rows of ``crops`` spread over as many sources (videos, photographs) as possible (one
    crop of each first, then a second, ...), for contact sheets."""
    shuffled = crops.sample(frac=1, random_state=seed)
    source = shuffled["path"].map(lambda p: Path(p).parent.as_posix())  # crops are <source path>/<crop>.jpg
    rank = source.groupby(source).cumcount()
    return shuffled.assign(_rank=rank, _source=source).sort_values(["_rank", "_source"]).head(n).drop(
        columns=["_rank", "_source"])


def _crop_source(path: Path, kind: str, detector: FaceDetector, settings: CropSettings, out: Path) -> dict:
    """Writes the face crops of one video or photo under ``out``; returns its record (crops listed)."""
    if kind == "video":
        sampled = read_frames(path, settings.frames_per_video)
        frames = list(zip(sampled.indices, sampled.frames))
    else:
        frames = [(0, read_image_rgb(path))]
    out.mkdir(parents=True, exist_ok=True)
    crops, with_face = [], 0
    for index, frame in frames:
        faces = detector(frame)
        with_face += bool(faces)
        for k, face in enumerate(faces):
            crop, landmarks = crop_face(frame, face, margin=settings.margin, size=settings.size, offset=settings.offset)
            name = f"f{index:06d}_{k}.jpg"
            Image.fromarray(crop).save(out / name, quality=95)
            crops.append({"file": name, "frame": index, "face": k, "face_score": round(face.score, 4),
                          "face_box": [round(v, 1) for v in face.box], "landmarks": landmarks})
    error = "" if crops else f"no face of at least {settings.min_face} px in any of {len(frames)} sampled frames"
    return {"frames": len(frames), "frames_with_face": with_face, "crops": crops, "error": error}


def crop_data_root(root, out_dir, settings: CropSettings = CropSettings(), *, device: str = "cpu",
                   eval_only: bool = False, include: str | None = None, progress: bool = True) -> CropResult:
    """Returns the data root of face crops made under ``out_dir`` from the videos and photographs under ``root``.

    ``root`` has one of the layouts `build_manifest` reads (Kaggle split folders, ``real/`` +
    ``fake/``, optionally a ``metadata.csv`` whose group column, e.g. the real video a fake was
    made from, is kept). Every video gives ``frames_per_video`` evenly sampled frames, every
    photograph one; each face found is cut square and written as JPEG in the same layout
    (``<source path>/f<frame>_<face>.jpg``), and ``out_dir/metadata.csv`` gives each crop its
    source's label and group, the frame, box and landmarks. A source already cropped with the
    same content and settings is reused. A source that cannot be decoded, has no frame or shows
    no face is named in the result's ``failed`` and left out; the others go on. ``include`` (a
    glob on the path relative to ``root``) keeps only the sources that match it.
    """
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise DataError(f"Data root {root} does not exist or is not a folder: pass the folder that holds the videos.")
    layout, videos = list_layout(root, VIDEO_SUFFIXES, all_splits=not eval_only)
    _, photos = list_layout(root, IMAGE_SUFFIXES, all_splits=not eval_only)
    sources = pd.concat([videos.assign(kind="video"), photos.assign(kind="photo")], ignore_index=True)
    if include:
        sources = sources[sources["path"].map(lambda p: fnmatch.fnmatch(p, include))].reset_index(drop=True)
    if sources.empty:
        raise DataError(f"No videos ({', '.join(sorted(VIDEO_SUFFIXES))}) or images found under {root}.")
    sources, group_rule = apply_metadata(root, sources, layout)
    sources = sources.sort_values("path").reset_index(drop=True)
    detector = FaceDetector(settings, device=device)
    key_settings = json.dumps({"version": _VERSION, **settings.as_dict()}, sort_keys=True)
    rows, records, failed = [], [], []
    bar = tqdm(sources.itertuples(), total=len(sources), desc="sources cropped", unit="file", mininterval=10,
               disable=not progress)
    for source in bar:
        out = out_dir / source.path
        stamp = out / "faces.json"
        try:
            key = hashlib.sha256((sha256_file(root / source.path) + key_settings).encode()).hexdigest()
            cached = json.loads(stamp.read_text()) if stamp.is_file() else {}
            reused = cached.get("key") == key
            if not reused:
                shutil.rmtree(out, ignore_errors=True)
                record = _crop_source(root / source.path, source.kind, detector, settings, out)
                stamp.write_text(json.dumps({"key": key, "source": source.path, **record}))
            else:
                record = cached
        except (DataError, OSError) as err:  # VideoError is a DataError: named, left out, the run goes on
            shutil.rmtree(out, ignore_errors=True)
            record, reused = {"frames": 0, "frames_with_face": 0, "crops": [], "error": str(err)}, False
        if record["error"]:
            failed.append((source.path, record["error"]))
        records.append({"path": source.path, "kind": source.kind, "label": source.label, "split": source.split,
                        "group": source.group, "frames": record["frames"],
                        "frames_with_face": record["frames_with_face"], "crops": len(record["crops"]),
                        "reused": reused, "error": record["error"]})
        rows += [{"path": f"{source.path}/{c['file']}", "label": source.label, "split": source.split,
                  "group": source.group,
                  "video": source.path if source.kind == "video" else "",  # photos: scored per group, not as clips
                  "frame": c["frame"], "face": c["face"], "face_score": c["face_score"],
                  "face_box": json.dumps(c["face_box"]),
                  "landmarks": json.dumps(c["landmarks"]) if c["landmarks"] is not None else ""} for c in record["crops"]]
    _prune(out_dir, set(sources["path"]), {row["path"] for row in rows})
    columns = ["path", "label", "split", "group", "video", "frame", "face", "face_score", "face_box", "landmarks"]
    if sources["split"].isna().all():  # no split given: build_manifest splits the crops by group
        columns.remove("split")
    pd.DataFrame(rows, columns=columns).to_csv(out_dir / "metadata.csv", index=False)
    (out_dir / "crops.json").write_text(json.dumps({"source_root": str(root), **settings.as_dict()}, indent=2))
    if failed:
        warnings.warn(f"Left out {len(failed)} of {len(sources)} sources under {root}: "
                      + "; ".join(f"{p} ({why})" for p, why in failed[:20]))
    return CropResult(out_dir, layout, group_rule, settings, pd.DataFrame(records), failed)


LANDMARK_COLUMNS = ["face_box", "face_score", "landmarks"]


def find_landmarks(root, manifest: pd.DataFrame, cache_file, settings: CropSettings = CropSettings(), *,
                   which=None, progress: bool = True) -> pd.DataFrame:
    """Returns ``manifest`` with the face box, detector score and 5 landmarks MTCNN finds in each of its images
    that are face crops already (the rows ``which`` selects; all by default), in pixels of the stored image.

    For data that came pre-cropped (dfdc_faces_small, the Kaggle set) nothing gave landmarks, so
    self-blended pseudo-fakes fell back to an ellipse on the central face box; with them, the
    blend mask follows each face. An image with no face found keeps empty cells (the ellipse
    fallback); rows with landmarks already keep theirs. Results are cached in ``cache_file``
    (CSV) by the image's sha256 and the detector settings, so a re-run detects nothing again.
    """
    if settings.detector != "mtcnn":
        raise ValueError(f"landmarks need the 'mtcnn' detector (5 points); got {settings.detector!r}")
    root, cache_file = Path(root), Path(cache_file)
    out = manifest.copy()
    for column in LANDMARK_COLUMNS:
        out[column] = out[column] if column in out else ""
    out[LANDMARK_COLUMNS] = out[LANDMARK_COLUMNS].fillna("").astype(str)
    which = pd.Series(True, index=out.index) if which is None else pd.Series(which, index=out.index)
    todo = which & (out["landmarks"].str.strip() == "")
    key = json.dumps({"version": _VERSION, "detector": settings.detector, "min_face": settings.min_face,
                      "detect_side": settings.detect_side, "pad": 0.5}, sort_keys=True)
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = pd.read_csv(cache_file, dtype=str, keep_default_na=False) if cache_file.is_file() else pd.DataFrame()
    known = {r["sha256"]: r for r in cache.to_dict("records") if r.get("key") == key}
    detector, found = None, 0
    rows = out[todo]
    for index, row in tqdm(rows.iterrows(), total=len(rows), desc="landmarks", unit="image", mininterval=10,
                           disable=not progress):
        if row["sha256"] not in known:
            detector = detector or FaceDetector(replace(settings, keep="largest"))
            image = read_image_rgb(root / row["path"])
            # MTCNN misjudges a face cut inside its own box (the usual pre-cropped face): on a crop with its box
            # 1.4 times its side it returned a box and eye distance near twice the true ones. On a black border
            # of half the side it sees a whole face and is within 7% (box) and 2% (eye distance) of the truth
            # (an astronaut photograph cut at known margins; tests/test_faces.py).
            pad = max(image.shape[:2]) // 2
            faces = detector(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
            face = faces[0] if faces else None
            known[row["sha256"]] = {
                "sha256": row["sha256"], "key": key,
                "face_box": json.dumps([round(v - pad, 1) for v in face.box]) if face else "",
                "face_score": f"{face.score:.4f}" if face else "",
                "landmarks": json.dumps([[round(x - pad, 2), round(y - pad, 2)] for x, y in face.landmarks])
                if face else ""}
            found += 1
        out.loc[index, LANDMARK_COLUMNS] = [known[row["sha256"]][c] for c in LANDMARK_COLUMNS]
    if found:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        pd.DataFrame(list(known.values()), columns=["sha256", "key", *LANDMARK_COLUMNS]).to_csv(tmp, index=False)
        tmp.replace(cache_file)  # a crash leaves the old cache whole
    return out


def matching_crop(faces: pd.DataFrame, base: CropSettings = CropSettings()) -> tuple[CropSettings, dict]:
    """Returns the crop settings that cut new faces the way the pre-cropped images of ``faces`` were cut, and the
    measurements behind them.

    ``faces`` has `find_landmarks`' ``face_box`` and the manifest's ``width``/``height``. A model
    sees faces at the scale it was trained on only if videos and photographs given to it later
    are cut like its training crops: dfdc_faces_small's crops are tight (MTCNN's face box is
    about 1.1 times their side), while the default margin of 0.3 shows a face at 0.63 of the
    crop. The margin comes from the median ratio of crop side to box side, the vertical offset
    from the median distance of the crop's centre below the box's (the horizontal one is taken
    as 0: faces are centred across); the size is the images' median side.
    """
    rows = faces[faces["face_box"].map(lambda b: isinstance(b, str) and bool(b.strip()))]
    if rows.empty:
        raise DataError("No face was found in any of the pre-cropped images, so their crop geometry cannot be "
                        "measured: set match_crops: false (new faces are then cut with the default crop settings).")
    box = np.array([json.loads(b) for b in rows["face_box"]], np.float64)
    side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    image_side = np.maximum(rows["width"].to_numpy(float), rows["height"].to_numpy(float))
    ratios = image_side / side  # crop side over face side
    ratio = float(np.median(ratios))
    offset = float(np.median((rows["height"].to_numpy(float) / 2 - (box[:, 1] + box[:, 3]) / 2) / side))
    margin = max(-0.45, (ratio - 1) / 2)
    settings = CropSettings(**{**base.as_dict(), "margin": round(margin, 3), "offset": round(offset, 3),
                               "size": int(np.median(image_side))})
    return settings, {"faces_measured": len(rows), "images": len(faces), "crop_side_over_face_side": round(ratio, 3),
                      "iqr": [round(float(v), 3) for v in np.percentile(ratios, [25, 75])],
                      "margin": settings.margin, "offset": settings.offset, "size": settings.size}


def _prune(out_dir: Path, sources: set[str], crops: set[str]) -> None:
    """Deletes every crop not in ``crops`` and the cache stamps of sources gone from the data root (left by an
    earlier run, or by an interrupted one), so that the crop root holds exactly what its metadata.csv lists."""
    for path in sorted(out_dir.rglob("*"), reverse=True):  # children before their folders
        rel = path.relative_to(out_dir).as_posix()
        stale_crop = path.suffix.lower() in IMAGE_SUFFIXES and rel not in crops
        stale_stamp = path.name == "faces.json" and path.parent.relative_to(out_dir).as_posix() not in sources
        if path.is_file() and (stale_crop or stale_stamp):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
