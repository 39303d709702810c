"""Video frames: N frames sampled evenly from a video file, decoded with OpenCV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfcore.datasets.manifest import DataError


class VideoError(DataError):
    """A video that cannot be opened or decoded, or that has no frame; the message names the file."""


@dataclass(frozen=True)
class VideoFrames:
    """Frames sampled from one video: their indices in the video, the RGB arrays, and the video's facts."""

    path: Path
    indices: list[int]
    frames: list[np.ndarray]  # HxWx3 uint8 RGB
    frame_count: int  # frames in the video, as decoded
    fps: float


def even_indices(frame_count: int, n: int) -> list[int]:
    """Returns ``n`` frame indices spread evenly over ``frame_count`` frames, first and last included
    (every frame when the video is shorter than ``n``)."""
    if frame_count <= 0 or n <= 0:
        return []
    if frame_count <= n:
        return list(range(frame_count))
    return sorted(set(np.linspace(0, frame_count - 1, n).round().astype(int).tolist()))


def _open(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"Cannot open video {path}: the file is missing, not a video, or in a codec "
                         "OpenCV cannot read. Re-encode it (ffmpeg -i in.ext -c:v libx264 out.mp4) or remove it.")
    return capture


def _decode(path: Path, wanted: set[int]) -> tuple[list[int], list[np.ndarray], int]:
    """Returns the indices and RGB frames of ``wanted`` and how many frames were grabbed (up to the last wanted
    one, or all of them when ``wanted`` is empty: a count).

    Frames are grabbed in order and only the wanted ones are converted to pixels: seeking in a
    long-GOP MP4 decodes from the last key frame anyway, and sequential grabbing is what makes
    32 frames of a 10-second 1080p video take about a second on a 2-core CPU.
    """
    capture = _open(path)
    last = max(wanted) if wanted else float("inf")
    indices, frames, grabbed = [], [], 0
    try:
        while grabbed <= last and capture.grab():
            if grabbed in wanted:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    indices.append(grabbed)
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            grabbed += 1
    finally:
        capture.release()
    return indices, frames, grabbed


def read_frames(path, n: int) -> VideoFrames:
    """Returns ``n`` frames sampled evenly from the video at ``path`` (fewer if it is shorter).

    The container's frame count can be missing or too high: then the frames that really
    decode are counted and the sample is spread over them. Raises `VideoError` naming the file
    when it cannot be opened or yields no frame.
    """
    path = Path(path)
    capture = _open(path)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    capture.release()
    if count <= 0:
        count = _decode(path, set())[2]
    wanted = set(even_indices(count, n))
    indices, frames, grabbed = _decode(path, wanted) if wanted else ([], [], 0)
    if wanted and grabbed <= max(wanted):  # the container over-claims: sample the frames that exist
        count = grabbed
        indices, frames, _ = _decode(path, set(even_indices(count, n)))
    if not frames:
        raise VideoError(f"Video {path} has no decodable frame: the file is empty, truncated or corrupt. "
                         "Re-encode it (ffmpeg -i in.ext -c:v libx264 out.mp4) or remove it.")
    return VideoFrames(path, indices, frames, count, fps)
