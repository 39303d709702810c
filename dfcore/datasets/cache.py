"""Decode each image once: the images of a manifest, decoded and resized to the training size, in one memory-mapped
uint8 file that every epoch (and every loader worker) reads instead of the JPEGs.

numpy's ``memmap`` is the whole mechanism; what is ours is the key and the invalidation. The file
is named by a sha256 of the rows' paths and content hashes, the size and the resize method, so a
changed manifest or image size builds a new file and the stale one of the same split is removed.
The stored pixels are exactly what the transforms' first step (`A.Resize`) makes of the
decoded image, so training with the cache sees the same pixels as without it; random
augmentation still runs on top of it, per epoch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd

from dfcore.datasets.manifest import read_rgb

_VERSION = 1  # bump when what is stored changes


def cache_key(manifest: pd.DataFrame, image_size: int) -> str:
    """Returns the sha256 naming the cache of ``manifest``'s images at ``image_size``."""
    digest = hashlib.sha256(f"v{_VERSION}:{image_size}:{A.Resize(1, 1).interpolation}".encode())
    digest.update(manifest[["path", "sha256"]].to_csv(index=False).encode())
    return digest.hexdigest()


class DecodeCache:
    """The images of one manifest as an N x S x S x 3 uint8 memory map; ``cache[i]`` is row ``i``'s image."""

    def __init__(self, path: Path, count: int, image_size: int):
        self.path, self.shape = Path(path), (count, image_size, image_size, 3)
        self._array = None  # opened lazily, so that loader workers each map the file themselves

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return np.array(self._array[index])  # a copy: augmentation writes to its input

    def __getstate__(self):  # loader workers get the path, not the mapping
        return {**self.__dict__, "_array": None}

    @classmethod
    def build(cls, manifest: pd.DataFrame, root, image_size: int, cache_dir, *, name: str = "images",
              progress: bool = True) -> "DecodeCache":
        """Returns the cache of ``manifest``'s images under ``cache_dir``, decoding them once if it is not there yet.

        ``name`` (a split, say) prefixes the file; other files with that prefix are stale and removed. Under
        DDP the main process decodes and the others wait, then map its file (all of them writing one file would race).
        """
        from dfcore.distributed import barrier, context

        key = cache_key(manifest, image_size)
        cache = cls(Path(cache_dir) / f"{name}-{key[:20]}.u8", len(manifest), image_size)
        if context().main:
            cache._fill(manifest, root, name, key, progress)
        barrier()
        return cache

    def _fill(self, manifest: pd.DataFrame, root, name: str, key: str, progress: bool) -> None:
        """Decodes ``manifest``'s images into this cache's file, unless a complete one with ``key`` is there; removes
        the other files of ``name``."""
        from tqdm import tqdm


        path, stamp = self.path, self.path.with_suffix(".json")
        if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{name}-*"):
            stale.unlink()
        resize = A.Resize(self.shape[1], self.shape[2])
        partial = path.with_suffix(".partial")
        array = np.memmap(partial, dtype=np.uint8, mode="w+", shape=self.shape)
        rows = tqdm(manifest["path"], desc=f"decoding {name} once", unit="image", mininterval=10, disable=not progress)
        for i, rel in enumerate(rows):
            array[i] = resize(image=read_rgb(Path(root) / rel))["image"]
        array.flush()
        del array
        partial.replace(path)  # a crash while decoding leaves no half-filled cache behind
        stamp.write_text(json.dumps({"key": key, "count": len(manifest), "image_size": self.shape[1]}))
