"""``make doctor``: checks what a run of a profile needs (Python, the lock's packages, devices, disk, the weights and
data its parameters name) and says what is missing and how to fix it."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from dfcore.params import ROOT, stage_parameters, stages

FREE_DISK_GB = 5.0  # a dfdc-cpu run writes about 1 GB (crops, checkpoints, reports); leave room


@dataclass(frozen=True)
class Check:
    """One finding: ``ok`` True (fine), False (missing: the run will fail) or None (a note, e.g. no GPU)."""

    what: str
    ok: bool | None
    detail: str


def environment_checks(root: Path = ROOT) -> list[Check]:
    """Returns the checks of the interpreter, the pinned packages, the devices and the disk."""
    found = []
    version = sys.version_info
    found.append(Check("python", version >= (3, 10), f"{sys.version.split()[0]} (3.10 or later needed)"))
    lock = Path(root) / "requirements.lock"
    wrong = []
    for line in lock.read_text().splitlines() if lock.is_file() else []:
        if not line or line.startswith("#"):
            continue
        name, pinned = line.split("==")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong.append(f"{name} {installed or 'missing'} (lock: {pinned})")
    found.append(Check("packages", not wrong,
                       "all as in requirements.lock" if not wrong else
                       f"{len(wrong)} differ from requirements.lock: {', '.join(wrong[:8])}; run `make setup`"))
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        found.append(Check("cuda", True, f"{torch.cuda.device_count()} device(s): {names}; CUDA {torch.version.cuda}"))
        found.append(Check("nccl", dist.is_nccl_available(), "NCCL for multi-GPU training"
                           + ("" if dist.is_nccl_available() else ": not in this torch build")))
    else:
        found.append(Check("cuda", None, f"no GPU: training runs on {torch.get_num_threads()} CPU threads "
                                         "(profiles marked GPU will be slow)"))
    found.append(Check("gloo", dist.is_gloo_available(), "gloo for multi-process CPU training"))
    try:
        from facenet_pytorch import MTCNN  # noqa: F401  (its weights ship inside the wheel)
        import cv2

        found.append(Check("face detectors", hasattr(cv2, "CascadeClassifier"), "MTCNN and OpenCV's Haar cascade"))
    except ImportError as err:
        found.append(Check("face detectors", False, f"{err}: run `make setup`"))
    free = shutil.disk_usage(Path(root)).free / 2**30
    found.append(Check("disk", free >= FREE_DISK_GB, f"{free:.1f} GiB free under {root} ({FREE_DISK_GB:.0f} wanted)"))
    chromium = shutil.which("chromium")  # only the tests that render the HTML reports use it: a note either way
    found.append(Check("chromium", None, f"{chromium}: the report pages' rendering tests run" if chromium else
                       "not found: the report pages' rendering tests skip; `apt-get install chromium` to run them"))
    return found


def _named_path(value, root: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else Path(root) / path


def profile_checks(profile: str, *, data_dir: str = "", root: Path = ROOT) -> list[Check]:
    """Returns the checks of what ``profile``'s parameters name: the data root, weights files, extra sets."""
    try:
        params = {stage: stage_parameters(stage, profile, root) for stage in stages(root)}
    except ValueError as err:
        return [Check("profile", False, str(err))]
    found = [Check("profile", True, f"params/profiles/{profile}/")]
    data = data_dir or params.get("01_data_manifests", {}).get("data_dir", "")
    demo_dir = params.get("01_data_manifests", {}).get("demo_dir")
    generated = {_named_path(demo_dir, root)} if demo_dir and not data else set()  # notebook 01 makes it
    if data:
        path = _named_path(data, root)
        found.append(Check("data", path.is_dir(), f"{data}" + ("" if path.is_dir() else
                           ": not found; pass DATA_DIR= or fix data_dir in the profile")))
    else:
        found.append(Check("data", True, "the built-in demo set (generated on the first run)"))
    for stage, values in params.items():
        weights = values.get("pretrained_file")
        if values.get("p1_init") == "file":
            ok = bool(weights) and _named_path(weights, root).is_file()
            found.append(Check(f"weights ({stage})", ok, f"{weights or '(none given)'}" + (
                "" if ok else ": not found; download the timm weights once (README, 'Pretrained weights')")))
        for extra in values.get("extra_eval_sets") or []:
            where = extra["path"] if isinstance(extra, dict) else extra
            made = _named_path(where, root) in generated
            ok = made or _named_path(where, root).exists()
            found.append(Check(f"extra set ({stage})", ok, f"{where}" + (
                " (the demo set, made by notebook 01)" if made else "" if ok else ": not found")))
    return found


def report(found: list[Check]) -> str:
    """Returns the checks as a table, one line each."""
    mark = {True: "ok", False: "MISSING", None: "note"}
    width = max(len(c.what) for c in found)
    return "\n".join(f"{mark[c.ok]:>7}  {c.what:<{width}}  {c.detail}" for c in found)


def doctor(profile: str = "demo", *, data_dir: str = "", root: Path = ROOT) -> int:
    """Prints every check; returns 0 when nothing is missing, 1 otherwise."""
    found = environment_checks(root) + profile_checks(profile, data_dir=data_dir, root=root)
    print(report(found))
    missing = [c for c in found if c.ok is False]
    print(f"\n{len(missing)} missing." if missing else f"\nReady to run profile '{profile}'.")
    return 1 if missing else 0
