"""A torch dataset over a manifest, and the loader settings the study uses everywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, WeightedRandomSampler

from dfcore.datasets.blending import BlendSettings, SelfBlender, parse_landmarks, training_rows
from dfcore.datasets.cache import DecodeCache
from dfcore.datasets.manifest import read_rgb
from dfcore.distributed import ShardedSampler, context
from dfcore.datasets.transforms import build_transforms


class ManifestDataset(Dataset):
    """Yields ``(image_tensor, label)`` for each manifest row; ``label`` 1 means fake.

    With a `DecodeCache` of the manifest, images come from it (decoded and resized once) instead
    of their files. With ``tie_groups``, the images of one group (a source video: a real face and the fakes made
    from it) get the same random augmentation within an epoch: the same flip, shift and colour change, so that
    when they share a batch (`GroupedRandomSampler`) they still differ only where the manipulation changed them.
    """

    def __init__(self, manifest: pd.DataFrame, root, transform, cache: DecodeCache | None = None,
                 tie_groups: bool = False):
        self.manifest = manifest.reset_index(drop=True)
        self.root = Path(root)
        self.transform = transform
        self.cache = cache
        self._rows = self.manifest["row"].to_numpy() if "row" in self.manifest else np.arange(len(self.manifest))
        self._groups = pd.factorize(self.manifest["group"].astype(str))[0] if tie_groups else None
        self.augmentation_seed = 0  # `seed_augmentation` sets it

    def __len__(self) -> int:
        return len(self.manifest)

    def image(self, index: int) -> np.ndarray:
        """Returns row ``index``'s image as stored (from the cache when there is one), before any transform."""
        if self.cache is not None:
            return self.cache[int(self._rows[index])]
        return read_rgb(self.root / self.manifest["path"].iloc[index])

    def _tie(self, index: int) -> None:
        """With ``tie_groups``, seeds the transform from this epoch's seed and the row's group (albumentations draws
        from its own generator, so the same seed draws the same flip, shift and colour for the group's images)."""
        if self._groups is not None and hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed((self.augmentation_seed + GROUP_STRIDE * int(self._groups[index])) % 2**32)

    def __getitem__(self, index: int):
        self._tie(index)
        image = self.transform(image=self.image(index))["image"]
        return image, int(self.manifest["label"].iloc[index])


class BlendedDataset(ManifestDataset):
    """Yields ``(image_tensor, label)`` for `training_rows`: a synthetic row is its real face self-blended."""

    def __init__(self, manifest: pd.DataFrame, root, transform, *, fakes: str = "sbi",
                 settings: BlendSettings = BlendSettings(), seed: int = 0, cache: DecodeCache | None = None,
                 tie_groups: bool = False):
        super().__init__(training_rows(manifest, fakes), root, transform, cache, tie_groups)
        self.blender = SelfBlender(settings, seed)
        column = self.manifest["landmarks"] if "landmarks" in self.manifest else [None] * len(self.manifest)
        self._landmarks = [parse_landmarks(v) for v in column]
        # landmarks are in pixels of the image file; the decode cache stores it resized
        self._sizes = (self.manifest[["width", "height"]].to_numpy(np.float32)
                       if {"width", "height"} <= set(self.manifest) else None)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, int]:
        """Returns the image before the training transform, its blend mask (None for a stored image) and label."""
        image, label = self.image(index), int(self.manifest["label"].iloc[index])
        if not self.manifest["synthetic"].iloc[index]:
            return image, None, label
        landmarks = self._landmarks[index]
        if landmarks is not None and self._sizes is not None:
            scale = np.array([image.shape[1], image.shape[0]], np.float32) / self._sizes[index]
            landmarks = [np.asarray(p, np.float32) * scale for p in landmarks]
        fake, mask = self.blender(image, landmarks)
        return fake, mask, label

    def __getitem__(self, index: int):
        image, _, label = self.raw(index)
        self._tie(index)
        return self.transform(image=image)["image"], label

    def examples(self, n: int) -> tuple[list[np.ndarray], list[str]]:
        """Returns ``n`` real faces each followed by its pseudo-fake and blend mask (as images), with titles."""
        synthetic = np.flatnonzero(self.manifest["synthetic"].to_numpy())[:n]
        images, titles = [], []
        for index in synthetic:
            fake, mask, _ = self.raw(index)
            images += [self.image(index), fake,
                       np.repeat((mask * 255).astype(np.uint8), 3, axis=2)]
            titles += ["real", "self-blended", "blend mask"]
        return images, titles


def seed_augmentation(dataset, seed: int) -> None:
    """Seeds the albumentations transform of ``dataset`` and its self-blender, where it has them (both keep
    their own generators)."""
    if isinstance(dataset, ManifestDataset):
        dataset.augmentation_seed = seed
    for part in (getattr(dataset, "transform", None), getattr(dataset, "blender", None)):
        if hasattr(part, "set_random_seed"):
            part.set_random_seed(seed)


class GroupedRandomSampler(Sampler):
    """Draws every index once per epoch with the images of one group (a source video: a real face and the fakes
    made from it) next to each other, so that they share a batch; groups come in random order.

    Why: in a batch of unrelated faces the loss can fall by learning who and where a face is; when a fake and its
    source are side by side, only what the manipulation changed tells them apart, and the gradients of
    everything they share cancel. On `dfdc_faces_small` (one real crop and one fake of the same frame per
    source) this made from-scratch training learn faster (params/profiles/dfdc-mim-cpu/README.md). A group is cut
    into runs of at most ``run`` images in random order, so that the frames of a long video do not fill whole
    batches.
    """

    def __init__(self, groups, generator: torch.Generator, run: int = 4):
        self.generator, self.run = generator, run
        codes = pd.factorize(np.asarray(groups).astype(str))[0]  # groups numbered by first appearance
        by_group = np.argsort(codes, kind="stable")
        self.members = np.split(by_group, np.cumsum(np.bincount(codes))[:-1]) if len(codes) else []  # positions

    def __iter__(self):
        runs = []
        for members in self.members:
            members = members[torch.randperm(len(members), generator=self.generator).numpy()]
            runs += [members[i:i + self.run] for i in range(0, len(members), self.run)]
        order = torch.randperm(len(runs), generator=self.generator).tolist()
        return iter(int(i) for k in order for i in runs[k])

    def __len__(self) -> int:
        return sum(len(m) for m in self.members)


GROUP_STRIDE = 7_919  # a tied group's augmentation seed is the epoch's seed plus its number times this (a prime)
RANK_STRIDE = 1_000_003  # augmentation seeds of DDP rank r are offset by r times this (a prime): ranks never repeat


def _seed_worker(worker_id: int) -> None:
    """Seeds a loader worker's copy of the transform from the seed torch gave that worker.

    albumentations keeps its own generators and does not reseed per worker, so without this
    every worker would repeat the same augmentations. torch derives each worker's seed from
    the loader's generator, which the trainer reseeds every epoch: augmentation is then a
    function of (seed, epoch, worker), and a resumed run replays it exactly.
    """
    info = torch.utils.data.get_worker_info()
    seed_augmentation(info.dataset, (info.seed + RANK_STRIDE * context().rank) % 2**32)


def make_loader(
    dataset: ManifestDataset,
    *,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    balance: bool = False,
    weights=None,
    pin_memory: bool = False,
    group_batches: bool = False,
) -> DataLoader:
    """Returns a DataLoader: shuffled (or drawn by weighted sampling) for training, in order otherwise.

    Training draws with replacement when ``balance`` (classes to 1:1) or per-item ``weights``
    (hard examples drawn more often) are given, both multiplied when both are. Under DDP every
    rank draws the same indices and takes its share (`ShardedSampler`): evaluation shards lose
    and repeat nothing. ``group_batches`` (training) keeps each group's images together (`GroupedRandomSampler`);
    it cannot be combined with weighted drawing. Training workers
    are started afresh each epoch (not persistent) so that they pick up that epoch's seed;
    evaluation workers, which draw nothing random, persist.
    """
    generator = torch.Generator().manual_seed(seed)
    ctx = context()
    sampler = None
    if train and (balance or weights is not None):
        labels = torch.tensor(dataset.manifest["label"].to_numpy())
        draw = torch.ones(len(labels), dtype=torch.double)
        if balance:
            counts = torch.bincount(labels, minlength=2).clamp(min=1).double()
            draw = draw / counts[labels]
        if weights is not None:
            draw = draw * torch.tensor(np.asarray(weights, dtype=float))
        sampler = WeightedRandomSampler(draw, len(labels), generator=generator)
    if train and group_batches:
        if sampler is not None:
            raise ValueError("group_batches keeps each source's images together and cannot be combined with weighted "
                             "drawing: set balance to 'none' or 'loss', and hard_example_weight to 1.")
        sampler = GroupedRandomSampler(dataset.manifest["group"], generator)
    if ctx.active:  # the same draw on every rank (same generator seed), each rank taking its share
        base = sampler or (RandomSampler(dataset, generator=generator) if train else SequentialSampler(dataset))
        sampler = ShardedSampler(base, ctx.rank, ctx.world_size, even=train)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) > batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0 and not train,
        worker_init_fn=_seed_worker,
        generator=generator,
    )


def split_loader(
    manifests: dict[str, pd.DataFrame],
    root,
    split: str,
    *,
    image_size: int,
    mean,
    std,
    batch_size: int,
    train: bool = False,
    augment: str = "recipe",
    balance: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    labels: tuple[int, ...] | None = None,
    fakes: str = "real",
    blend: BlendSettings = BlendSettings(),
    weights: pd.Series | None = None,
    cache_dir=None,
    pin_memory: bool = False,
    group_batches: bool = False,
) -> DataLoader:
    """Returns the loader of one split of the manifests (optionally only some labels), with the study's transforms.

    ``fakes`` (training only): 'real' (the data's fakes), 'sbi' (real faces and their self-blended
    pseudo-fakes) or 'mixed' (both); see `dfcore.datasets.blending.training_rows`. ``weights``
    (training only): sampling weights by path (hard examples); pseudo-fakes and unlisted paths get 1.
    ``cache_dir``: decode the split's images once into a `DecodeCache` there (pseudo-fakes are then
    blended at ``image_size``, not at the stored size). ``group_batches`` (training only): a source's images
    (a real face, its fakes and its pseudo-fake) share a batch (`GroupedRandomSampler`) and their augmentation
    (`ManifestDataset`'s ``tie_groups``).
    """
    frame = manifests[split]
    if labels is not None:
        frame = frame[frame["label"].isin(labels)]
    transform = build_transforms(image_size, mean, std, train=train, augment=augment, seed=seed)
    cache = None
    if cache_dir is not None:
        name = split if labels is None else f"{split}-{'-'.join(map(str, labels))}"
        cache = DecodeCache.build(frame, root, image_size, cache_dir, name=name)
    tie = train and group_batches  # a group that shares a batch shares its augmentation too
    if train and fakes != "real":
        dataset = BlendedDataset(frame, root, transform, fakes=fakes, settings=blend, seed=seed, cache=cache,
                                 tie_groups=tie)
    else:
        dataset = ManifestDataset(frame, root, transform, cache, tie_groups=tie)
    per_item = None
    if train and weights is not None:
        synthetic = dataset.manifest.get("synthetic", pd.Series(False, index=dataset.manifest.index))
        per_item = dataset.manifest["path"].map(weights).fillna(1.0).where(~synthetic, 1.0).to_numpy()
    per_rank = max(1, batch_size // context().world_size)  # batch_size is the global batch under DDP
    return make_loader(dataset, batch_size=per_rank, train=train, num_workers=num_workers, seed=seed, balance=balance,
                       weights=per_item, pin_memory=pin_memory, group_batches=group_batches)
