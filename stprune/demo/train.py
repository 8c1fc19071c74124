"""Train the demo VideoMAE from scratch on synthetic clips generated on the fly.

    python -m stprune.demo.train --out DIR [--task easy|hard] [--seed S] [--steps N] [--device cpu|cuda]

Writes ``DIR/demo_model.safetensors`` and ``DIR/demo_model.json`` (``demo_hard_model.*`` for
``--task hard``: config, normalisation, class names, command, seed, validation top-1, date) at
the end, and ``DIR/last.pt`` (model + optimiser +
step, loadable with ``weights_only=True``) every ``--save-every`` steps so an interrupted run resumes
where it stopped. Training clip ``k`` of the run is clip ``k`` of the ``train`` split under ``--seed``,
so a run is reproducible from its seed and does not depend on ``--workers``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from stprune.argtypes import OneLineParser, nonnegative_int, positive_int
from stprune.demo.dataset import IMAGENET_MEAN, IMAGENET_STD, SyntheticVideoDataset
from stprune.demo.evaluate import evaluate_top1
from stprune.demo.model import build_demo_model, demo_config
from stprune.demo.synthetic import DECOY_PROB, DEFAULT_TRAIN_SEED, DEFAULT_VAL_SEED
from stprune.demo.tasks import MODEL_STEMS, class_names

#: validation clips the model's JSON records the exact count of correct answers on (a test re-checks)
SUBSET_CHECK = 192
#: what each task's model JSON says the task is
TASK_DESCRIPTIONS = {
    "easy": "stprune.demo.synthetic (colour+shape kind x motion direction), 16 frames of 96x96 RGB",
    "hard": "stprune.demo.synthetic_hard (small brief spark: colour x direction), "
    "16 frames of 96x96 RGB",
}


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the training script."""
    p = OneLineParser(prog="python -m stprune.demo.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--task",
        default="easy",
        choices=["easy", "hard"],
        help="the synthetic task: easy (object x direction) or hard (small brief spark: colour x "
        "direction); default easy",
    )
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=DEFAULT_TRAIN_SEED,
        help="seed of the init and of the training clips",
    )
    p.add_argument("--steps", type=positive_int, default=4000)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--warmup", type=nonnegative_int, default=200, help="linear warm-up steps before the cosine decay"
    )
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--decoy-ramp",
        type=float,
        nargs=2,
        default=(0.3, 0.6),
        metavar=("START", "END"),
        help="easy task's curriculum: no decoys before START * steps, then their share rises linearly "
        "to the task's (validation) share at END * steps (fractions of --steps; 0 0: decoys from the "
        "start); ignored by --task hard",
    )
    p.add_argument(
        "--ease-ramp",
        type=float,
        nargs=2,
        default=(0.0, 0.5),
        metavar=("START", "END"),
        help="hard task's curriculum: the spark at its largest and longest (ease 1) before START * "
        "steps, then easing off linearly to the task itself (ease 0) at END * steps; ignored by "
        "--task easy",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="start from this demo checkpoint's weights (.safetensors with its .json beside it; "
        "'easy' for the bundled easy-task model), all but the classifier head, which starts anew",
    )
    p.add_argument(
        "--val-every",
        type=nonnegative_int,
        default=500,
        help="steps between validations (0: only at the end)",
    )
    p.add_argument("--val-num", type=positive_int, default=600, help="validation clips")
    p.add_argument("--val-seed", type=nonnegative_int, default=DEFAULT_VAL_SEED)
    p.add_argument("--save-every", type=positive_int, default=250, help="steps between resumable checkpoints")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument(
        "--workers", type=nonnegative_int, default=1, help="DataLoader worker processes generating clips"
    )
    return p


def lr_factor(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EaseRamp:
    """``ease`` of hard-task training clip ``index``: 1 before step ``start``, falling linearly to 0
    (the task itself) at step ``end`` (step = index // batch_size)."""

    def __init__(self, start: int, end: int, batch_size: int) -> None:
        if not 0 <= start <= end:
            raise ValueError(f"ease ramp needs 0 <= start <= end, got start={start}, end={end}")
        self.start, self.end, self.batch_size = start, end, batch_size

    def __call__(self, index: int) -> float:
        step = index // self.batch_size
        if step >= self.end:
            return 0.0
        if step < self.start:
            return 1.0
        return 1.0 - (step - self.start) / (self.end - self.start)


class DecoyRamp:
    """Decoy share of training clip ``index``: 0 before step ``start``, rising linearly to ``DECOY_PROB``
    at step ``end`` (step = index // batch_size). Decoys bind a direction to one of two moving
    objects; a from-scratch ViT first has to discover motion on clips without them."""

    def __init__(self, start: int, end: int, batch_size: int) -> None:
        if not 0 <= start <= end:
            raise ValueError(f"decoy ramp needs 0 <= start <= end, got start={start}, end={end}")
        self.start, self.end, self.batch_size = start, end, batch_size

    def __call__(self, index: int) -> float:
        step = index // self.batch_size
        if step >= self.end:
            return DECOY_PROB
        if step < self.start:
            return 0.0
        return DECOY_PROB * (step - self.start) / (self.end - self.start)


def _load_init(model: torch.nn.Module, init: Path | str) -> str:
    """Copy a demo checkpoint's weights into ``model``, all but the classifier head (which keeps its
    fresh initialisation); ``init`` ``"easy"``: the bundled easy-task model. Returns what was loaded,
    as recorded in the model's JSON (``"easy"`` or the path)."""
    from safetensors.torch import load_file

    from stprune.demo.tasks import model_path

    path = model_path("easy") if str(init) == "easy" else Path(init)
    if not path.is_file():
        raise ValueError(f"--init {str(init)!r}: no such checkpoint")
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise ValueError(
            f"--init {str(init)!r} is not a demo checkpoint: missing {missing}, unexpected {unexpected}"
        )
    return "easy" if str(init) == "easy" else str(path)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def train(args: argparse.Namespace, command: str) -> dict:
    """Run training as configured by ``args``; returns the info dict written next to the weights."""
    for name in ("steps", "batch_size", "val_num", "save_every", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    ramp_start, ramp_end = args.decoy_ramp
    if not 0.0 <= ramp_start <= ramp_end <= 1.0:
        raise ValueError(f"--decoy-ramp needs 0 <= START <= END <= 1, got {ramp_start} {ramp_end}")
    ease_start, ease_end = getattr(args, "ease_ramp", (0.0, 0.0))
    if not 0.0 <= ease_start <= ease_end <= 1.0:
        raise ValueError(f"--ease-ramp needs 0 <= START <= END <= 1, got {ease_start} {ease_end}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)

    torch.manual_seed(args.seed)
    task = getattr(args, "task", "easy")
    config = demo_config(task)
    model = build_demo_model(config)
    init = getattr(args, "init", None)
    if init is not None:
        init = _load_init(model, init)
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.999),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_factor(s, args.steps, args.warmup))

    start = 0
    ckpt_path = out / "last.pt"
    history: list[dict] = []
    elapsed_before = 0.0
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        start = int(ckpt["step"])
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        history = json.loads(ckpt.get("history_json", "[]"))
        print(f"resuming from {ckpt_path} at step {start}", flush=True)

    if task == "easy":
        ramp = DecoyRamp(round(ramp_start * args.steps), round(ramp_end * args.steps), args.batch_size)
        curriculum = {"decoy_prob": ramp}
    else:
        ease = EaseRamp(round(ease_start * args.steps), round(ease_end * args.steps), args.batch_size)
        curriculum = {"ease": ease}
    train_set = SyntheticVideoDataset(
        args.steps * args.batch_size, "train", args.seed, IMAGENET_MEAN, IMAGENET_STD, task=task, **curriculum
    )
    val_set = SyntheticVideoDataset(
        args.val_num, "val", args.val_seed, IMAGENET_MEAN, IMAGENET_STD, task=task
    )
    loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=range(start * args.batch_size, args.steps * args.batch_size),
        num_workers=args.workers,
        worker_init_fn=_worker_init if args.workers > 0 else None,
        persistent_workers=False,
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    def save_ckpt(step: int, elapsed: float) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optim": optim.state_dict(),
                "sched": sched.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "history_json": json.dumps(history),
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    model.train()
    t0 = time.perf_counter()
    run_loss = run_acc = 0.0
    n_run = 0
    bar = tqdm(total=args.steps, initial=start, desc="train", dynamic_ncols=True, mininterval=5)
    step = start
    for batch in loader:
        x = batch["pixel_values"].to(device, non_blocking=True)
        y = batch["labels"].to(device, non_blocking=True)
        logits = model(pixel_values=x).logits
        loss = loss_fn(logits, y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        step += 1
        run_loss += loss.item()
        run_acc += float((logits.argmax(-1) == y).float().mean())
        n_run += 1
        bar.update(1)
        if step % 25 == 0 or step == args.steps:
            bar.set_postfix(
                loss=f"{run_loss / n_run:.3f}",
                acc=f"{run_acc / n_run:.3f}",
                lr=f"{sched.get_last_lr()[0]:.2e}",
            )
            history.append({"step": step, "loss": run_loss / n_run, "train_acc": run_acc / n_run})
            run_loss = run_acc = 0.0
            n_run = 0
        if args.val_every and step % args.val_every == 0 and step != args.steps:
            top1 = evaluate_top1(model, val_set, args.batch_size, device)
            history.append({"step": step, "val_top1": top1})
            tqdm.write(f"step {step}: val top-1 {top1:.4f} ({args.val_num} clips)")
        if step % args.save_every == 0 and step != args.steps:
            save_ckpt(step, elapsed_before + time.perf_counter() - t0)
    bar.close()
    train_seconds = elapsed_before + time.perf_counter() - t0

    top1 = evaluate_top1(model, val_set, args.batch_size, device)
    history.append({"step": step, "val_top1": top1})
    print(f"final val top-1 {top1:.4f} on {args.val_num} clips (val seed {args.val_seed})", flush=True)

    model = model.cpu().eval()
    # The first SUBSET_CHECK validation clips, scored on the CPU model as saved: the bundled model's
    # test re-scores them (tests/test_demo_hard.py), so weights and generator stay what was measured.
    check_num = min(SUBSET_CHECK, args.val_num)
    check = evaluate_top1(model, Subset(val_set, range(check_num)), args.batch_size, "cpu", progress=False)
    stem = MODEL_STEMS[task]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"{stem}.safetensors"))
    info = {
        "config": config.to_dict(),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "class_names": list(class_names(task)),
        "task": TASK_DESCRIPTIONS[task],
        "task_name": task,
        "training_command": command,
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup": args.warmup,
        "label_smoothing": args.label_smoothing,
        "decoy_ramp": list(args.decoy_ramp) if task == "easy" else None,
        "ease_ramp": list(args.ease_ramp) if task == "hard" else None,
        "init": init,
        # the clips are 16 consecutive frames: eval must read them at stride 1 (stprune eval uses it)
        "sampling": {"sampling_rate": 1},
        "val_top1": top1,
        "val_num": args.val_num,
        "val_seed": args.val_seed,
        "subset_check": {"num": check_num, "correct": round(check * check_num)},
        "train_seconds": round(train_seconds, 1),
        "device": str(device),
        "torch_version": torch.__version__,
        "date": _dt.date.today().isoformat(),
        "history": history,
    }
    (out / f"{stem}.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stprune.demo.train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, (start, end) in (("--decoy-ramp", args.decoy_ramp), ("--ease-ramp", args.ease_ramp)):
        if not 0 <= start <= end <= 1:
            parser.error(f"{flag} needs 0 <= START <= END <= 1 (fractions of --steps); got {start} {end}")
    init = args.init
    if (
        init is not None
        and str(init) != "easy"
        and not (init.is_file() and init.with_suffix(".json").is_file())
    ):
        parser.error(f"--init {str(init)!r}: needs the file and its .json beside it (or 'easy')")
    for name in ("lr", "weight_decay", "label_smoothing"):
        value = getattr(args, name)
        if not (value >= 0 and value == value) or (name == "label_smoothing" and value >= 1):
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be >= 0{' and < 1' if name == 'label_smoothing' else ''}; got {value}")
    command = "python -m stprune.demo.train " + " ".join(shlex.quote(a) for a in argv)
    train(args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
