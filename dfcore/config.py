"""Every parameter of the study, declared once: its name, type, default and one-line meaning.

One dataclass per stage (notebook). The notebooks' parameters cells, ``docs/parameters.md`` and the layering
of ``params/*.yaml`` (`dfcore.params`) are generated from or checked against these classes, never written a
second time (``python -m dfcore params --sync`` rewrites the parameters cells and the reference; a test checks
both are current). Parameters that several stages take are declared once in a base class.

This module imports nothing heavy: ``make`` resolves parameters through it before every stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


AGGREGATIONS = ("confident", "mean")  # how a video's frame scores become its score (`DecisionRule.aggregate`)


def param(default, help: str, **metadata):
    """Returns a dataclass field with ``default`` and its one-line ``help`` (lists get a copy each)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(kw_only=True)
class StageConfig:
    """What every stage takes: where its run's outputs go, and its seed."""

    profile: str = param("demo", "run profile (set by make); outputs go to reports_root/profile")
    reports_root: str = param("reports", "root folder of all reports")
    seed: int = param(0, "one seed for the stage: data splits, initialisation, shuffling, augmentation, resampling")

    @classmethod
    def parameters(cls) -> list[dataclasses.Field]:
        """Returns the fields that are parameters (a notebook's parameters cell declares them): where the run goes
        and its seed, then the stage's own, then those it shares with other stages."""
        by_name = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        order = list(StageConfig.__annotations__)
        for klass in cls.__mro__:
            order += [name for name in vars(klass).get("__annotations__", {}) if name not in order]
        return [by_name[name] for name in order if name in by_name]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in cls.parameters()]

    @classmethod
    def from_namespace(cls, namespace: dict) -> "StageConfig":
        """Returns the config of a notebook's parameters (its ``globals()`` after the parameters cell)."""
        return cls(**{name: namespace[name] for name in cls.names() if name in namespace})

    @property
    def run_dir(self) -> Path:
        """This run's reports folder, ``reports_root/profile``."""
        return Path(self.reports_root) / self.profile

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_params(self, run: str = "") -> dict:
        """Returns the parameters of one of the stage's runs: those declared for ``run`` (e.g. 'temporal'), or, by
        default, those declared for no separate run (what the stage's main training reads)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("run", "") == run}


@dataclass(kw_only=True)
class DeviceConfig(StageConfig):
    device: str = param("auto", "'auto' (CUDA if present), 'cpu' or 'cuda'")


@dataclass(kw_only=True)
class TrainingConfig(DeviceConfig):
    """What the three training stages (02, 03, 04) share: precision, loaders, DDP, caching, resuming."""

    amp: bool = param(False, "mixed precision (bf16 on CPU where supported)")
    accum_steps: int = param(1, "batches accumulated into one optimizer step, each a 1/accum_steps share of the "
                                "batch (for small GPUs; the step stays the same)")
    num_workers: int = param(-1, "DataLoader worker processes; -1 chooses by device (CUDA: the process's share of "
                                 "the CPU cores, up to 8; CPU: 0)")
    decode_cache: bool = param(False, "decode and resize each image once into reports/<profile>/cache (same pixels; "
                                      "pseudo-fakes then blend at image_size)")
    # Several processes (DDP under torchrun): one per GPU, on one node or several.
    nproc_per_node: int = param(1, ">1: train under torchrun with DDP, this many processes (GPUs) on this node")
    nnodes: int = param(1, "nodes of a multi-node run (each runs make with its own node_rank)")
    node_rank: int = param(0, "this node's rank in a multi-node run")
    rdzv_endpoint: str = param("", "host:port every node of a multi-node run meets at")
    resume: bool = param(True, "continue an interrupted run with the same parameters and data; false: start afresh "
                               "(the old run is kept aside)")

    @property
    def processes(self) -> int:
        """All the processes of the run, every node's (more than one: torchrun, `dfcore.stages.training.train`)."""
        return self.nproc_per_node * self.nnodes


@dataclass(kw_only=True)
class DataConfig(StageConfig):
    """Notebook 01: the data root, its splits and checks, and how faces are cut."""

    data_dir: str = param("", "data root: Kaggle Train/Validation/Test x Real/Fake, or real/ + fake/; empty: the "
                              "built-in demo set")
    demo_dir: str = param("data/demo", "where the demo set is generated (git-ignored)")
    demo_image_size: int = param(64, "side of the demo images, pixels")
    demo_crops_per_photo: int = param(120, "real crops per source photograph (and as many fakes)")
    val_ratio: float = param(0.1, "plain real/ + fake/ layout only: share of groups for validation")
    test_ratio: float = param(0.1, "plain real/ + fake/ layout only: share of groups for test")
    val_groups: list = param([], "plain layout: the groups (metadata.csv's group column, e.g. a source video) that "
                                 "go to validation; with test_groups, every other group goes to train and the "
                                 "ratios are not used")
    test_groups: list = param([], "plain layout: the groups that go to test (named with val_groups)")
    on_leak: str = param("error", "'error': stop on duplicates or groups across splits; 'drop': keep each in its "
                                  "first split")
    detect_faces: bool = param(False, "crop faces from whole photographs too (a data root of videos is always cropped)")
    # How faces are found and cut from videos and photographs (stored with the manifests, and from there in every
    # checkpoint, so that prediction cuts new inputs the same way).
    face_detector: str = param("mtcnn", "'mtcnn' (facenet-pytorch, 5 landmarks) or 'haar' (OpenCV, no landmarks)")
    frames_per_video: int = param(16, "frames sampled evenly from each video (predict samples as many by default)")
    face_margin: float = param(0.3, "added on every side of a face box, as a share of its longer side")
    crop_size: int = param(224, "side of the square face crops, pixels")
    min_face_size: int = param(40, "smallest face side kept, pixels of the original frame")
    keep_faces: str = param("largest", "'largest' face per frame, or 'all' of them")
    face_landmarks: bool = param(False, "pre-cropped faces: find MTCNN's 5 landmarks in the real training faces "
                                        "(self-blend masks follow them)")
    match_crops: bool = param(False, "pre-cropped faces: cut videos and photographs scored later (notebook 05, "
                                     "predict) the way these were cut")


@dataclass(kw_only=True)
class MIMConfig(TrainingConfig):
    """Notebook 02: masked-image-modeling pretraining of the backbone."""

    backbone: str = param("resnet10t", "timm model name; notebook 03 must use the same")
    image_size: int = param(64, "input side in pixels")
    mim_epochs: int = param(3, "pretraining epochs; 0 skips pretraining (for profiles that start from ImageNet "
                               "weights)")
    mim_lr: float = param(1e-3, "AdamW peak learning rate")
    mim_warmup_epochs: float = param(0.5, "linear warm-up before the cosine decay")
    mim_batch_size: int = param(64, "images per optimizer step (all processes together under DDP)")
    mask_ratio: float = param(0.5, "share of patches masked (the MAE paper masks 0.75, SimMIM 0.6)")
    mask_patch: int = param(0, "side of a masked patch in pixels (SimMIM; a ViT masks its own patches): 0 is the "
                               "backbone's output stride")
    norm_pix: bool = param(False, "predict per-patch normalised pixels (MAE's norm_pix_loss)")
    decoder_dim: int = param(512, "MAE decoder width (ViT backbones only)")
    decoder_depth: int = param(8, "MAE decoder blocks (ViT backbones only)")
    decoder_heads: int = param(16, "MAE decoder attention heads (ViT backbones only)")
    mim_images: str = param("all", "the training split's images MIM learns from: 'all', or 'real' ones only")
    mim_extra_sets: list = param([], "more unlabelled faces: data roots (videos too, faces cut); validation/test "
                                     "images and their videos are left out")
    recon_images: int = param(6, "fixed validation images reconstructed during training")
    recon_snapshots: int = param(3, "points of training at which they are shown, before training included")


@dataclass(kw_only=True)
class ClassifierConfig(TrainingConfig):
    """What phases 1 and 2 share: the batch, augmentation, class balance and the training fakes."""

    weight_decay: float = param(0.05, "AdamW weight decay")
    patience: int = param(3, "epochs without a better validation AUC before stopping")
    batch_size: int = param(64, "training images per optimizer step (all processes together under DDP)")
    augment: str = param("recipe", "'recipe' (flip, colour jitter, JPEG/blur, noise), 'shift' (flip, whole-pixel "
                                   "shift, contrast) or 'flip'")
    balance: str = param("none", "class imbalance: none, sampler (weighted sampling to 1:1) or loss (class-weighted "
                                 "loss)")
    group_batches: bool = param(False, "a source's real face and the fakes made from it (one group) share a training "
                                       "batch; not with balance 'sampler' or hard examples")
    train_fakes: str = param("real", "training fakes: 'real' (the data's), 'sbi' (self-blended pseudo-fakes of the "
                                     "real faces only) or 'mixed' (both)")
    sbi_colour: float = param(1.0, "pseudo-fakes: strength of the source copy's colour shift")
    sbi_sharpness: float = param(1.0, "pseudo-fakes: strength of its blur or sharpening")
    sbi_scale: float = param(0.1, "pseudo-fakes: its resizing, up to +-this share")
    sbi_shift: float = param(0.05, "pseudo-fakes: its shift, up to +-this share of the side")
    sbi_elastic: float = param(1.0, "pseudo-fakes: strength of the mask's deformation")
    sbi_ratio_min: float = param(0.5, "pseudo-fakes: the blend ratio is drawn from [this, 1]")
    sbi_face_share: float = param(0.65, "pseudo-fakes without landmarks: face box side as a share of the crop")


@dataclass(kw_only=True)
class Phase1Config(ClassifierConfig):
    """Notebook 03: phase 1, the backbone frozen and the two-class head trained."""

    backbone: str = param("resnet10t", "timm model name (the same as notebook 02 when p1_init is mim)")
    image_size: int = param(64, "input side in pixels")
    p1_init: str = param("mim", "'mim' (notebook 02's backbone), 'file' (pretrained_file) or 'none' (random)")
    pretrained_file: str = param("", "local timm weights file, used when p1_init is file")
    drop_rate: float = param(0.0, "dropout before the classifier")
    p1_epochs: int = param(3, "maximum epochs")
    p1_lr_head: float = param(1e-3, "AdamW peak learning rate of the head")
    p1_warmup_epochs: float = param(0.0, "linear warm-up before the cosine decay")


@dataclass(kw_only=True)
class Phase2Config(ClassifierConfig):
    """Notebook 04: phase 2, fine-tuning from phase 1's model, then any ensemble members."""

    p2_init: str = param("phase1", "'phase1' (notebook 03's model) or 'none' (random init: for ensemble members "
                                   "trained from nothing)")
    p2_epochs: int = param(6, "maximum epochs")
    p2_lr_backbone: float = param(1e-3, "AdamW peak learning rate of the backbone")
    p2_lr_head: float = param(2e-3, "AdamW peak learning rate of the head")
    p2_warmup_epochs: float = param(1.0, "linear warm-up before the cosine decay")
    trainable_blocks: int = param(-1, "-1 fine-tunes everything; N the last N blocks or stages and the head")
    layer_decay: float = param(1.0, "layer-wise LR decay (MAE, BEiT): the layer k below the head gets "
                                    "p2_lr_backbone * layer_decay**k; 1 turns it off")
    grad_clip: float = param(1.0, "max gradient norm; 0 turns clipping off")
    hard_example_weight: float = param(1.0, ">1: training images phase 1 gets wrong are drawn this many times as "
                                            "often (training split only)")
    members: list = param([], "ensemble members trained after this model, each a dict of the parameters here it "
                              "changes, e.g. {p2_init: none, seed: 1}; notebook 05 scores the mean of all members' "
                              "logits")
    member: int = param(0, "which model of the ensemble this run trains (0: the phase-2 model)", internal=True)
    # Temporal heads (a video judged by its frame sequence): trained after phase 2 on its frozen backbone's frame
    # embeddings, where the data are videos. They are runs of their own: these parameters never re-run phase 2.
    temporal: str = param("none", "'none', or comma-separated sequence heads trained on videos: lstm, gru, attention; "
                                  "the best on validation judges videos (notebook 05 compares them all)",
                          run="temporal")
    temporal_clip: int = param(16, "frames of a training clip (consecutive sampled frames at a random offset); "
                                    "validation and scoring read whole videos", run="temporal")
    temporal_flip: bool = param(True, "mirror half the training clips, every frame of a clip alike", run="temporal")
    temporal_hidden: int = param(128, "width of a sequence head", run="temporal")
    temporal_epochs: int = param(40, "maximum epochs (one clip of each training video an epoch)", run="temporal")
    temporal_patience: int = param(10, "epochs without a better validation video AUC before stopping",
                                   run="temporal")
    temporal_lr: float = param(1e-3, "AdamW peak learning rate of a sequence head", run="temporal")
    temporal_batch_size: int = param(16, "clips per optimizer step", run="temporal")


@dataclass(kw_only=True)
class EvaluationConfig(DeviceConfig):
    """Notebook 05: the decision rule fitted on validation, then test and the extra sets scored."""

    eval_batch_size: int = param(128, "images per scoring step")
    amp: bool = param(True, "mixed precision for scoring: bf16 on CPU and on CUDA where supported, else fp16")
    flip_tta: bool = param(False, "score each image and its mirror image, mean logits (validation, test and the "
                                  "extra sets alike; predict follows)")
    num_workers: int = param(0, "DataLoader worker processes")
    threshold_rule: str = param("eer", "threshold fitted on validation: 'eer' (equal-error point) or 'f1' (best F1 "
                                       "for fake)")
    bootstrap_rounds: int = param(1000, "resamples for the 95% intervals of AUC and accuracy")
    calibration_bins: int = param(15, "equal-width P(fake) bins of the ECE and the reliability diagrams")
    robustness: bool = param(True, "re-score test under JPEG, blur, downscale and noise at several strengths")
    group_t: float = param(0.8, "confident video or group score: the mean of the frames whose P(fake) exceeds "
                                "this... (the rule records it; predict follows)")
    group_min_share: float = param(0.4, "...when at least this share of the group's frames do; else the plain mean")
    extra_eval_sets: list = param([], "other data roots or notebook-01 manifest folders, scored side by side")
    extra_eval_split: str = param("all", "splits of each extra set to score: 'all' (a model trained here saw none) "
                                         "or 'test'")


@dataclass(kw_only=True)
class GalleryConfig(DeviceConfig):
    """Notebook 06: saliency maps of test images and their faithfulness."""

    n_per_group: int = param(4, "confident and borderline images shown per outcome (TP, TN, FP, FN)")
    methods: str = param("gradcam,layercam,rollout", "comma-separated saliency methods; rollout only where the model "
                                                     "is a ViT")
    head_fusion: str = param("mean", "rollout: heads fused by their mean, max or min")
    discard_ratio: float = param(0.9, "rollout: share of each layer's lowest attention weights dropped")
    faithfulness_steps: int = param(20, "deletion and insertion: steps from no pixel to every pixel")
    blur_sigma: float = param(0.0, "deletion and insertion: blur of the canvas in pixels; 0 for a 16th of the image "
                                   "side")
    interactive: bool = param(True, "build the image browser (JupyterLab); make passes false, papermill has no "
                                    "frontend")


CONFIGS: dict[str, type[StageConfig]] = {
    "01_data_manifests": DataConfig,
    "02_mim_pretrain": MIMConfig,
    "03_phase1_head": Phase1Config,
    "04_phase2_finetune": Phase2Config,
    "05_evaluation": EvaluationConfig,
    "06_gradcam_gallery": GalleryConfig,
}

# Names changed for consistency; the old ones are read, with a warning, for one release.
RENAMED: dict[str, dict[str, str]] = {
    "03_phase1_head": {"init": "p1_init", "p1_lr": "p1_lr_head", "warmup_epochs": "p1_warmup_epochs"},
    "04_phase2_finetune": {"warmup_epochs": "p2_warmup_epochs"},
    "05_evaluation": {"batch_size": "eval_batch_size"},
}
