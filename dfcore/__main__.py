"""``python -m dfcore``: the study's commands. ``predict`` scores images, folders and videos with a trained study;
``params`` prints the parameters a stage runs with under a profile (what ``make`` hands papermill); ``doctor``
checks what a run needs; ``compare`` writes a page comparing finished and partial runs from their metrics."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

PREDICTIONS = "predictions.jsonl"


def _parser() -> argparse.ArgumentParser:
    from dfcore.config import AGGREGATIONS

    parser = argparse.ArgumentParser(prog="python -m dfcore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "predict", help="score images, folders and videos: one JSON object per input on stdout",
        description="Scores each image or video (folders are searched recursively) with a trained study: faces are "
                    "cut as in its training data, P(fake) is calibrated with the checkpoint's validation-fitted "
                    "temperature and decided at its validation threshold. JSON Lines on stdout, a summary on "
                    "stderr; exit 1 when any input could not be scored, 2 when nothing could be.")
    p.add_argument("paths", nargs="+", help="images, videos (mp4/avi/mov/mkv/webm/m4v) or folders")
    p.add_argument("--checkpoint", required=True,
                   help="a study's reports folder, reports/<profile> (its model: the ensemble when notebook 04 trained "
                        "one, else checkpoints/phase2/best.pt), or a checkpoint file")
    p.add_argument("--out", help=f"folder for {PREDICTIONS}, report.html, face crops, Grad-CAM overlays and video "
                                 "timelines")
    p.add_argument("--frames", type=int, help="frames sampled evenly from each video (default: as many as the "
                                                "study's training videos, notebook 01's frames_per_video)")
    p.add_argument("--cam", action="store_true", help="write Grad-CAM overlays (the most suspicious faces/frames)")
    p.add_argument("--threshold", type=float, help="decide at this calibrated P(fake) instead of the validation one")
    p.add_argument("--no-detect", action="store_true", help="score whole images and frames (inputs are face crops)")
    p.add_argument("--no-temporal", action="store_true",
                   help="judge videos by their frames' --aggregate even where the study has a temporal head")
    p.add_argument("--aggregate", choices=AGGREGATIONS, default="confident",
                   help="video verdict from frame scores: 'confident' (default) or 'mean'")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda'")
    p.add_argument("--overwrite", action="store_true", help=f"replace an existing {PREDICTIONS} under --out")
    q = commands.add_parser("params", help="print a stage's parameters as YAML, layered as make layers them; --sync "
                                           "regenerates the notebooks' parameters cells and docs/parameters.md")
    q.add_argument("stage", nargs="?", help="a notebook's name, e.g. 03_phase1_head")
    q.add_argument("--sync", action="store_true", help="rewrite every notebook's parameters cell and "
                                                       "docs/parameters.md from dfcore/config.py")
    q.add_argument("--profile", default="demo")
    q.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "YAML_VALUE"),
                   help="override one parameter (repeatable), e.g. --set data_dir ../data")
    t = commands.add_parser("train", help="run a training stage (MIM, phase 1 or 2) in this process; torchrun starts "
                                          "one per GPU or CPU share: torchrun --nproc_per_node N -m dfcore train ...")
    t.add_argument("stage", help="02_mim_pretrain, 03_phase1_head or 04_phase2_finetune")
    t.add_argument("--params-file", help="the resolved parameters (a notebook writes them); else --profile's")
    t.add_argument("--profile", default="demo")
    t.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "YAML_VALUE"),
                   help="override one parameter (repeatable)")
    d = commands.add_parser("doctor", help="check what a run of a profile needs and say what is missing")
    d.add_argument("--profile", default="demo")
    d.add_argument("--data-dir", default="", help="the data root make would be given (DATA_DIR)")
    c = commands.add_parser("compare", help="compare the runs under reports roots (from their metrics; nothing re-run)",
                            description="Writes index.html, compare.{csv,md,tex} and compare_auc.png: one row per "
                                        "run (finished or not) under the reports roots, scores per scored set.")
    from dfcore.reporting.compare import add_arguments

    add_arguments(c)
    return parser


def compare_command(args) -> int:
    """Runs ``compare``; returns the exit code."""
    from dfcore.reporting.compare import compare_command as run

    return run(args)


def doctor_command(args) -> int:
    """Runs ``doctor``; returns the exit code."""
    from dfcore.doctor import doctor

    return doctor(args.profile, data_dir=args.data_dir)


def train_command(args) -> int:
    """Runs ``train`` (under torchrun: in each process, joined into one DDP run); returns the exit code."""
    import yaml

    from dfcore import distributed
    from dfcore.config import CONFIGS
    from dfcore.params import load_config
    from dfcore.runtime import chdir_project_root, resolve_device
    from dfcore.stages.training import MIM, PHASE1, PHASE2, train_here

    if args.stage not in (MIM, PHASE1, PHASE2):
        print(f"error: train runs {MIM}, {PHASE1} or {PHASE2}, not {args.stage!r}", file=sys.stderr)
        return 2
    chdir_project_root()  # parameters hold paths relative to the project root
    overrides = {k: yaml.safe_load(v) for k, v in args.set}
    if args.params_file:
        config = CONFIGS[args.stage](**{**yaml.safe_load(Path(args.params_file).read_text()), **overrides})
    else:
        config = load_config(args.stage, args.profile, **overrides)
    distributed.init_from_env(resolve_device(config.device).type)
    try:
        train_here(config)
    finally:
        distributed.shutdown()
    return 0


def params_command(args) -> int:
    """Runs ``params``; returns the exit code."""
    import yaml

    from dfcore.params import stage_parameters, sync

    if args.sync:
        for path in sync():
            print(f"rewrote {path}")
        return 0
    if not args.stage:
        print("error: name a stage (e.g. 03_phase1_head), or pass --sync", file=sys.stderr)
        return 2
    try:
        params = stage_parameters(args.stage, args.profile, **{k: yaml.safe_load(v) for k, v in args.set})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def _summary(records: list[dict]) -> str:
    import pandas as pd

    rows = [{"input": r["path"] if len(r["path"]) <= 60 else "..." + r["path"][-57:], "kind": r["kind"],
             "decision": r.get("decision") or "-",
             "P(fake)": "-" if r.get("prob_fake") is None else f"{r['prob_fake']:.3f}",
             "faces": len(r.get("faces", [])) if r["kind"] == "image" else
             f"{r.get('frames_with_face', 0)}/{r.get('frames_sampled', 0)} frames",
             "note": r.get("error") or r.get("reason") or ""} for r in records]
    return pd.DataFrame(rows).to_string(index=False, max_colwidth=70)


def predict_command(args) -> int:
    """Runs ``predict``; returns the exit code."""
    from tqdm import tqdm

    from dfcore.checkpoint import CheckpointError
    from dfcore.inference import Predictor, iter_predictions, list_inputs

    out_dir = Path(args.out) if args.out else None
    if out_dir and (out_dir / PREDICTIONS).exists() and not args.overwrite:
        print(f"error: {out_dir / PREDICTIONS} exists: pass --overwrite to replace it, or another --out.",
              file=sys.stderr)
        return 2
    if args.cam and not out_dir:
        print("error: --cam writes overlay PNGs: give a folder for them with --out.", file=sys.stderr)
        return 2
    if args.frames is not None and args.frames < 1:
        print(f"error: --frames must be at least 1, got {args.frames}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor.load(args.checkpoint, device=args.device, threshold=args.threshold,
                                   detect=not args.no_detect, frames=args.frames, aggregate=args.aggregate,
                                   temporal=not args.no_temporal)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files, skipped = list_inputs(args.paths)
    if skipped:
        print(f"skipped {len(skipped)} files that are neither images nor videos, e.g. {skipped[0]}", file=sys.stderr)
    if not files:
        print(f"error: no images or videos under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    print(json.dumps({"predictor": predictor.describe()}), file=sys.stderr)
    records = []
    sink = None
    if out_dir:
        if (out_dir / PREDICTIONS).exists():  # --overwrite, and the checkpoint and inputs are good: the old run goes
            for folder in ("cams", "timelines", "faces"):
                shutil.rmtree(out_dir / folder, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        sink = open(out_dir / PREDICTIONS, "w")
    try:
        bar = tqdm(files, desc="inputs scored", unit="file", file=sys.stderr, mininterval=5, disable=len(files) < 2)
        for record in iter_predictions(predictor, bar, out_dir=out_dir, cam=args.cam):
            line = json.dumps(record)
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
                sink.flush()
            records.append(record)
    finally:
        if sink:
            sink.close()
    if out_dir:
        from dfcore.reporting.predictions import write_predict_report

        print(f"report: {write_predict_report(records, out_dir, predictor.describe())}", file=sys.stderr)
    print(_summary(records), file=sys.stderr)
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in predictor.timings.items() if v)
    print(f"time: {timings}", file=sys.stderr)
    failed = [r for r in records if r.get("decision") is None]
    if failed:
        print(f"{len(failed)} of {len(records)} inputs could not be scored (see 'error' or 'reason').", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    commands = {"predict": predict_command, "params": params_command, "doctor": doctor_command, "train": train_command,
                "compare": compare_command}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
