"""The study's figures: titled, labelled, returned for the notebook to show and save."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from dfcore import CLASS_NAMES


def plot_image_grid(images, titles, *, ncols: int = 8, suptitle: str = ""):
    """Returns a figure showing HxWx3 uint8 ``images`` in a grid with a title each."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_face_geometry(images, titles, boxes, landmarks, *, suptitle: str = ""):
    """Returns `plot_image_grid` of ``images`` with each one's face box (x1, y1, x2, y2) and landmark points drawn;
    the view stays on the image where a box reaches past it."""
    fig = plot_image_grid(images, titles, ncols=8, suptitle=suptitle)
    for ax, box, points in zip(fig.axes, boxes, landmarks):
        limits = ax.get_xlim(), ax.get_ylim()
        ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, color="lime", lw=1))
        ax.plot(*zip(*points), "r.", ms=4)
        ax.set(xlim=limits[0], ylim=limits[1])
    return fig


def plot_face_counts(sources: pd.DataFrame, *, title: str):
    """Returns, per source video or photo, the frames sampled and those with a face (one bar each, by class)."""
    table = sources.sort_values(["label", "path"])
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.28 * len(table)))
    y = np.arange(len(table))
    colours = np.where(table["label"] == 1, "tab:red", "tab:blue")
    ax.barh(y, table["frames"], color="lightgrey", label="frames sampled")
    ax.barh(y, table["frames_with_face"], color=colours)
    ax.set_yticks(y, [p if len(p) <= 48 else "..." + p[-45:] for p in table["path"]], fontsize=7)
    ax.invert_yaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("lightgrey", "tab:blue", "tab:red")]
    ax.legend(handles, ["frames sampled", "with a face (real)", "with a face (fake)"], fontsize=7,
              loc="lower right")
    ax.set(xlabel="frames", title=title)
    fig.tight_layout()
    return fig


def plot_reconstructions(images, mask, recons: dict, *, mean, std, suptitle: str = ""):
    """Returns a grid with one row per image: original, masked input, then its reconstruction at each snapshot.

    ``images``, ``mask`` (1 = masked) and the values of ``recons`` (``{epochs trained: images}``)
    are normalised B x C x H x W arrays or CPU tensors; reconstructions show visible patches as
    given and masked ones as predicted.
    """
    images, mask = np.asarray(images), np.asarray(mask)
    mean, std = np.asarray(mean).reshape(1, 3, 1, 1), np.asarray(std).reshape(1, 3, 1, 1)
    columns = {"original": images, "masked input": images * (1 - mask)}
    for epochs, recon in sorted(recons.items()):
        columns[f"after {epochs} epoch{'s' * (epochs != 1)}"] = images * (1 - mask) + np.asarray(recon) * mask
    shown = [((c * std + mean).clip(0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1) for c in columns.values()]
    return plot_image_grid([column[i] for i in range(len(images)) for column in shown], list(columns) * len(images),
                           ncols=len(columns), suptitle=suptitle)


def _per_epoch_figure(fig, axes, title: str):
    """Returns ``fig`` with every axis labelled 'epoch' and gridded, under ``title``."""
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame, *, title: str):
    """Returns learning curves: losses, validation AUC/accuracy and learning rates per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    loss_cols = [c for c in ("train_loss", "val_loss") if c in history]
    history.plot(x="epoch", y=loss_cols, ax=axes[0], marker="o", title="loss")
    score_cols = [c for c in ("val_auc", "val_accuracy") if c in history]
    if score_cols:
        history.plot(x="epoch", y=score_cols, ax=axes[1], marker="o", title="validation", ylim=(0, 1.02))
    else:
        axes[1].axis("off")
    lr_cols = [c for c in history if c.startswith("lr")]
    history.plot(x="epoch", y=lr_cols, ax=axes[2], marker=".", title="learning rate at epoch start", logy=False)
    return _per_epoch_figure(fig, axes, title)


def plot_mim_history(steps: pd.DataFrame, history: pd.DataFrame, *, title: str):
    """Returns the MIM loss per step, its epoch means and the fixed validation batch's loss; and the LR per step."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    axes[0].plot(steps["epoch"], steps["train_loss"], lw=0.8, alpha=0.6, label="training, per step")
    axes[0].plot(history["epoch"] + 1, history["train_loss"], "o-", label="training, epoch mean")
    if "val_loss" in history:
        axes[0].plot(history["epoch"] + 1, history["val_loss"], "s-", label="fixed validation batch")
    axes[0].set(title="masked-patch loss", ylim=(0, None))
    axes[0].legend(fontsize=8)
    axes[1].plot(steps["epoch"], steps["lr"])
    axes[1].set(title="learning rate")
    return _per_epoch_figure(fig, axes, title)


def plot_roc(curves: dict, *, title: str):
    """Returns ROC curves for ``{name: (labels, probs, auc)}``, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (labels, probs, auc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, probs)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion(labels, preds, *, title: str):
    """Returns the confusion matrix, counts and row-normalised, side by side."""
    counts = confusion_matrix(labels, preds, labels=[0, 1])
    norm = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, data, fmt, name in ((axes[0], counts, "d", "counts"), (axes[1], norm, ".2f", "normalised by true class")):
        sns.heatmap(data, annot=True, fmt=fmt, cmap="Blues", cbar=False, ax=ax,
                    xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES)
        ax.set(xlabel="predicted", ylabel="true", title=name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlays(images, maps, titles, *, suptitle: str, ncols: int = 4):
    """Returns each image followed by its heatmap overlays, all on one colour scale [0, 1] with a shared colour bar.

    ``maps`` is a B x H x W array, or ``{method name: B x H x W}`` for a panel comparing methods
    side by side on the same images (one overlay per method after each image); ``ncols``
    images per row.
    """
    maps = maps if isinstance(maps, dict) else {"saliency (fake)": maps}
    per_image = 1 + len(maps)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, per_image * ncols, figsize=(2.1 * per_image * ncols, 2.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    mappable = None
    for i, (image, title) in enumerate(zip(images, titles)):
        r, c = divmod(i, ncols)
        axes[r, per_image * c].imshow(image)
        axes[r, per_image * c].set_title(title, fontsize=7)
        for j, (method, heat) in enumerate(maps.items(), start=1):
            ax = axes[r, per_image * c + j]
            ax.imshow(image)
            mappable = ax.imshow(heat[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(method, fontsize=7)
    fig.suptitle(suptitle)
    fig.tight_layout()
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, label="saliency (0-1)")
    return fig


def heat_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Returns the HxWx3 uint8 ``image`` with its HxW map in [0, 1] laid over it in the 'jet' colours of
    `plot_overlays` (same scale and opacity), as one image to save."""
    colours = plt.get_cmap("jet")(np.clip(heat, 0, 1))[..., :3] * 255
    return np.round((1 - alpha) * image + alpha * colours).astype(np.uint8)


def plot_timeline(frames: pd.DataFrame, *, threshold: float, prob: float, aggregate: str, title: str,
                  video_threshold: float | None = None):
    """Returns calibrated P(fake) per sampled frame against time (``frames``: time_s or frame, prob_fake, and a
    temporal head's ``temporal_weight`` where one judged the video), with the frames' threshold, the video's score
    (``aggregate`` says what gave it) and the video's threshold where it is another (a temporal head's)."""
    timed = frames["time_s"].notna().all()
    x = frames["time_s"] if timed else frames["frame"]
    video_threshold = threshold if video_threshold is None else video_threshold
    fig, ax = plt.subplots(figsize=(7, 2.8))
    if "temporal_weight" in frames:
        twin = ax.twinx()
        width = 0.8 * float(np.min(np.diff(x))) if len(x) > 1 else 1.0
        twin.bar(x, frames["temporal_weight"], width=width, color="tab:orange", alpha=0.25)
        twin.set_ylabel("head's weight", color="tab:orange")
        twin.set_ylim(0, max(1e-6, float(frames["temporal_weight"].max())) * 3)
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
    ax.plot(x, frames["prob_fake"], "o-", color="tab:purple", ms=4, label="frame P(fake), most suspicious face")
    ax.axhline(threshold, color="black", ls="--", lw=1, label=f"frames' threshold {threshold:.3f}")
    if video_threshold != threshold:
        ax.axhline(video_threshold, color="black", ls=":", lw=1, label=f"video's threshold {video_threshold:.3f}")
    ax.axhline(prob, color="tab:red" if prob >= video_threshold else "tab:blue", lw=2, alpha=0.6,
               label=f"video ({aggregate}) {prob:.3f}")
    ax.fill_between(x, threshold, 1, color="tab:red", alpha=0.05)
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)" if timed else "frame", ylabel="calibrated P(fake)",
           title=title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_faithfulness(curves_by_method: dict, table: pd.DataFrame, *, title: str):
    """Returns the mean deletion and insertion curves of each method, areas in the legend.

    ``curves_by_method``: ``{method: {"fractions", "deletion", "insertion"}}`` (per-image curves);
    ``table``: one row per method with ``deletion_auc`` and ``insertion_auc``. Methods whose name
    starts with 'random' are drawn dashed: the references a faithful map must beat.
    """
    areas = table.set_index("method")
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for ax, kind, verb in ((axes[0], "deletion", "removed"), (axes[1], "insertion", "revealed")):
        for method, curves in curves_by_method.items():
            style = dict(ls="--") if method.startswith("random") else {}
            ax.plot(curves["fractions"], np.mean(curves[kind], axis=0), marker=".", ms=4,
                    label=f"{method} (area {areas.loc[method, f'{kind}_auc']:.3f})", **style)
        ax.set(title=f"{kind}: most salient pixels {verb} first", xlabel=f"fraction of pixels {verb}",
               xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean P(fake)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pr(curves: dict, *, title: str):
    """Returns precision-recall curves (fake = positive) for ``{name: (labels, probs, ap)}``, AP in the legend."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (labels, probs, ap) in curves.items():
        precision, recall, _ = precision_recall_curve(labels, probs)
        line, = ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
        ax.axhline(np.mean(labels), ls=":", lw=1, c=line.get_color())  # chance: the share of fakes
    ax.set(xlabel="recall (fakes caught)", ylabel="precision (calls of fake that are right)", title=title,
           xlim=(0, 1.01), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_reliability(tables: dict, *, title: str):
    """Returns a reliability diagram: share of fakes against mean P(fake) per bin, for ``{name: table}``
    (tables as `dfcore.evaluation.reliability_table` returns them), with the images per bin below."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.8, 5.2), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    width = 1 / (len(tables) + 1)
    for i, (name, table) in enumerate(tables.items()):
        line, = ax.plot(table["mean_prob"], table["fake_share"], marker="o", label=name)
        bin_width = table["bin_high"] - table["bin_low"]
        counts.bar(table["bin_low"] + bin_width * width * (i + 0.5), table["count"], width=bin_width * width,
                   align="edge", color=line.get_color())
    ax.set(ylabel="share of fakes in bin", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    counts.set(xlabel="predicted P(fake), binned", ylabel="images")
    fig.tight_layout()
    return fig


def plot_score_histograms(labels, probs, *, threshold: float, title: str):
    """Returns histograms of P(fake) per true class, with the decision threshold marked."""
    frame = pd.DataFrame({"P(fake)": probs, "true class": np.asarray(CLASS_NAMES)[np.asarray(labels)]})
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    sns.histplot(frame, x="P(fake)", hue="true class", hue_order=CLASS_NAMES, bins=np.linspace(0, 1, 26),
                 element="step", ax=ax)
    ax.axvline(threshold, c="k", ls="--", lw=1)
    ax.set(xlabel="P(fake)", ylabel="images", title=title, xlim=(0, 1))
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" threshold {threshold:.3f}", fontsize=8, va="top")
    fig.tight_layout()
    return fig


def plot_robustness(table: pd.DataFrame, *, clean_auc: float, descriptions: dict, title: str):
    """Returns AUC against severity, one panel per corruption (``table`` rows: corruption, severity, auc),
    the clean AUC dashed; ``descriptions`` names each corruption's severity axis."""
    kinds = list(dict.fromkeys(table["corruption"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.3 * len(kinds), 3.2), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        rows = table[table["corruption"] == kind]
        ax.plot(rows["severity"], rows["auc"], marker="o", label="corrupted")
        ax.axhline(clean_auc, ls="--", c="grey", lw=1, label=f"clean ({clean_auc:.3f})")
        ax.axhline(0.5, ls=":", c="grey", lw=1, label="chance")
        if rows["severity"].is_monotonic_decreasing:
            ax.invert_xaxis()  # severities run mild to strong: keep the strong end on the right
        ax.set(title=kind, xlabel=descriptions.get(kind, "severity"), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test AUC")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_temporal_evidence(videos: list[dict], *, title: str, top: int = 3):
    """Returns a figure with one row per video: its frames' P(fake) and the temporal head's weight of each frame over
    time, and the ``top`` frames the head weighs most. Each of ``videos`` is a dict with ``name``, ``label``,
    ``prob`` (the head's video P(fake)), ``frame_probs``, ``weights`` and ``images`` (the frames' RGB crops)."""
    fig = plt.figure(figsize=(12, 2.3 * len(videos)), layout="constrained")
    grid = fig.add_gridspec(len(videos), 3 + top)
    for row, video in enumerate(videos):
        ax = fig.add_subplot(grid[row, :3])
        steps = np.arange(len(video["frame_probs"]))
        ax.bar(steps, video["weights"], color="tab:orange", alpha=0.5, label="head's weight")
        ax.set_ylim(0, max(1e-6, float(np.max(video["weights"]))) * 1.1)
        ax.set_ylabel("weight")
        twin = ax.twinx()
        twin.plot(steps, video["frame_probs"], color="tab:blue", marker=".", label="frame P(fake)")
        twin.set(ylim=(-0.02, 1.02), ylabel="frame P(fake)")
        ax.set_xlabel("sampled frame")
        ax.set_title(f"{video['name']} ({CLASS_NAMES[video['label']]}): head P(fake) {video['prob']:.2f}",
                     fontsize=9, loc="left")
        if row == 0:
            fig.legend(*[sum(x, []) for x in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels())],
                       loc="outside upper right", ncols=2, fontsize=8)
        for k, i in enumerate(np.argsort(-np.asarray(video["weights"]), kind="stable")[:top]):
            image_ax = fig.add_subplot(grid[row, 3 + k])
            image_ax.imshow(video["images"][i])
            image_ax.set_title(f"frame {i}: w {video['weights'][i]:.2f}, p {video['frame_probs'][i]:.2f}", fontsize=7)
            image_ax.axis("off")
    fig.suptitle(title)
    return fig
