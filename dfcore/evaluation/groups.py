"""Group (video or source) level scores: frame scores aggregated per group."""

from __future__ import annotations

import numpy as np
import pandas as pd


def confident_mean(probs, *, t: float = 0.8, min_share: float = 0.4) -> float:
    """Returns the mean of the probabilities above ``t`` when at least ``min_share`` of them are, else the mean.

    A fake video is often manipulated in only some frames; averaging all of them dilutes the
    evidence. The rule follows the DFDC-winning solution's (frames above 0.8, when at least
    n / 2.5 of them are).
    """
    probs = np.asarray(probs, dtype=float)
    confident = probs[probs > t]
    return float(confident.mean() if len(confident) and len(confident) >= min_share * len(probs) else probs.mean())


def aggregate_groups(frames: pd.DataFrame, *, t: float = 0.8, min_share: float = 0.4) -> pd.DataFrame:
    """Returns one row per unit with its label, frame count and ``mean`` and ``confident`` scores.

    ``frames`` holds ``group``, ``label`` and ``prob`` per image. A unit is a group's images of
    one label: a video's frames share its label, and where a group is a source (a real video
    and the fakes made from it) its real and its fake images stay apart.
    """
    units = frames.groupby(["group", "label"])["prob"]
    return pd.DataFrame({
        "frames": units.size(),
        "mean": units.mean(),
        "confident": units.agg(confident_mean, t=t, min_share=min_share),
    }).reset_index()


def scoring_units(manifest: pd.DataFrame) -> tuple[pd.Series, str]:
    """Returns what a set's frames are aggregated by, and its name: the source video where the images are face
    crops cut from videos (a ``video`` column), so that scores are video-level as in DFDC and DeepfakeBench;
    otherwise the group. An empty ``video`` (a photograph's crop) counts as none, read from a CSV or not."""
    if "video" in manifest.columns and manifest["video"].fillna("").astype(str).ne("").all():
        return manifest["video"], "video"
    return manifest["group"], "group"
