"""The command-line options and the weight export that every training recipe shares.

``pnpdeblur train sen|drunet|rpgan|deepdeblur|...`` all run the same engine
(:class:`~pnpdeblur.train.Trainer`), so they take the same engine options (device, seed,
logging and checkpoint intervals, run folder ...) with the same names and meanings; only their
defaults differ per recipe.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch

__all__ = ["add_engine_arguments", "add_time_budget_argument", "budgeted_steps", "engine_options", "export_weights",
           "device_name", "parse_engine_args", "initialise_from", "check_init_out", "check_options", "photo_files",
           "parse_fractions", "at_least", "POSITIVE_INT", "COUNT", "POSITIVE", "NONNEGATIVE", "FRACTION", "UNIT",
           "SHARED_RULES"]

#: A rule of :func:`check_options`: ``(test of the parsed value, what the option must be)``.
Rule = Tuple[Callable[[Any], bool], str]


def at_least(low: int) -> Rule:
    """The rule of an int option that must be ``>= low``."""
    return (lambda v: v >= low), f">= {low}"


POSITIVE_INT, COUNT = at_least(1), at_least(0)
POSITIVE: Rule = (lambda v: math.isfinite(v) and v > 0), "> 0 and finite"
NONNEGATIVE: Rule = (lambda v: math.isfinite(v) and v >= 0), ">= 0 and finite"
FRACTION: Rule = (lambda v: 0 <= v <= 1), "in [0, 1]"
UNIT: Rule = (lambda v: 0 < v <= 1), "in (0, 1]"
#: The rules of the options every recipe has (an option a recipe lacks, or left at None, is skipped): the
#: engine's (:func:`add_engine_arguments`), ``--time-budget``, ``--steps``, ``--batch`` and ``--lr``.
SHARED_RULES: Dict[str, Rule] = dict(
    seed=COUNT, grad_clip=POSITIVE, steps=POSITIVE_INT, batch=POSITIVE_INT, lr=POSITIVE,
    time_budget=((lambda v: math.isfinite(v) and v > 0), "a finite number of seconds > 0"),
)


def add_engine_arguments(
    ap: argparse.ArgumentParser,
    *,
    run_dir: str,
    out_name: str,
    val_items: int,
    log_every: int = 50,
    val_every: int = 500,
    ckpt_every: int = 500,
    amp: bool = True,
    grad_clip: bool = True,
    float32: bool = True,
    run_dir_help: str = "logs, checkpoints (last.pt is resumed if present) and loss curve",
    out_help: str = "exported weights (safetensors)",
) -> None:
    """Add the engine's options to a recipe's parser.

    Adds ``--device --workers --seed --val-items --log-every --val-every --ckpt-every
    --run-dir --out --no-progress``, and ``--amp`` / ``--grad-clip`` / ``--float32`` where the
    recipe supports them (``amp``, ``grad_clip``, ``float32`` flags). The keyword arguments are
    the recipe's defaults. ``--out`` defaults to ``RUN_DIR/out_name`` (resolved by
    :func:`parse_engine_args`): a training run never replaces the weights shipped with the
    package unless ``--out`` names them.
    """
    if grad_clip:
        ap.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ...")
    if amp:
        ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    ap.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-items", type=int, default=val_items, help="validation items")
    ap.add_argument("--log-every", type=int, default=log_every, help="steps between log rows")
    ap.add_argument("--val-every", type=int, default=val_every, help="steps between validations")
    ap.add_argument("--ckpt-every", type=int, default=ckpt_every, help="steps between checkpoints")
    ap.add_argument("--run-dir", default=run_dir, help=run_dir_help)
    ap.add_argument("--out", type=Path, default=None, help=f"{out_help}; default RUN_DIR/{out_name}")
    ap.set_defaults(out_name=out_name)
    if float32:
        ap.add_argument("--float32", action="store_true", help="export float32 weights (default float16)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_engine_args(ap: argparse.ArgumentParser, argv: Optional[Any] = None) -> argparse.Namespace:
    """``ap.parse_args(argv)`` with ``--out`` resolved: ``RUN_DIR/<the recipe's file name>``
    when not given (see :func:`add_engine_arguments`); a negative ``--workers``, ``--val-items``
    or ``--*-every`` is argparse's usage error (exit 2) naming the option."""
    args = ap.parse_args(argv)
    for option in ("workers", "val_items", "log_every", "val_every", "ckpt_every"):
        if getattr(args, option) < 0:  # a negative count would run with no validation or fail deep in the engine
            ap.error(f"--{option.replace('_', '-')} must be >= 0, got {getattr(args, option)}")
    if args.out is None:
        args.out = Path(args.run_dir) / args.out_name
    return args


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def photo_files(option: str, folder: Any) -> List[Path]:
    """The images in ``folder`` (searched recursively, as the recipes read it), for ``option``.

    Raises ``ValueError`` naming ``option`` when ``folder`` is missing, a file, or holds no image.
    """
    from ..data import list_images

    if Path(folder).is_file():
        raise ValueError(f"{option} {folder} is a file; expected a folder of photos")
    try:
        return list_images(folder, recursive=True)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{option} {folder}: {e}") from None


def parse_fractions(option: str, text: str) -> List[float]:
    """The comma-separated numbers of ``text``, each in [0, 1]; ``ValueError`` naming ``option`` otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [math.nan]
    if any(not 0 <= v <= 1 for v in values):
        raise ValueError(f"{option} must be comma-separated fractions in [0, 1], got {text!r}")
    return values


def check_options(args: argparse.Namespace, *, files: Iterable[str] = (), photo_folders: Iterable[str] = (),
                  **rules: Rule) -> argparse.Namespace:
    """Refuse bad option values before any work, naming the option as the user typed it.

    A recipe's options become :class:`~pnpdeblur.train.TrainConfig` fields and data-set
    arguments whose own errors name those (``length must be a positive int`` for ``--steps 0``);
    each recipe's ``main`` calls this right after parsing, so that the error says ``--steps must
    be >= 1, got 0`` before a net is built or a photo read.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options.
    files : iterable of str
        Options (``dest`` names) that must name an existing file when given (``--init shipped``
        is the shipped weights).
    photo_folders : iterable of str
        Options that must name a folder holding an image when given (:func:`photo_files`).
    **rules : Rule
        ``dest=(test, expected)``, added to :data:`SHARED_RULES`; an option the parser lacks,
        or left at None, is skipped.

    Returns
    -------
    argparse.Namespace
        ``args``.

    Raises
    ------
    ValueError
        ``"--option must be <expected>, got <value>"`` for the first bad option; also for a
        ``--device`` that is no torch device (or CUDA where there is none), a ``--run-dir`` that is a
        file and an ``--out`` that is a folder (found only when exporting, after the training).
    """
    for dest, (ok, expected) in {**SHARED_RULES, **rules}.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise ValueError(f"{_flag(dest)} must be {expected}, got {value}")
    if getattr(args, "init", None) not in (None, "shipped") and getattr(args, "out", None) is not None:
        check_init_out(args.init, args.out)
    for dest in files:
        value = getattr(args, dest, None)
        if value is not None and not (dest == "init" and value == "shipped") and not Path(value).is_file():
            what = "a folder" if Path(value).is_dir() else "not found"
            raise ValueError(f"{_flag(dest)} {value}: {what}; expected a weights file")
    for dest in photo_folders:
        if getattr(args, dest, None) is not None:
            photo_files(_flag(dest), getattr(args, dest))
    device = getattr(args, "device", "auto")
    if device != "auto":
        try:
            kind = torch.device(device).type
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"--device {device!r} is not a torch device ({e})") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device!r}: CUDA is not available")
    if getattr(args, "run_dir", None) is not None and Path(args.run_dir).is_file():
        raise ValueError(f"--run-dir {args.run_dir} is a file; expected a folder for the run")
    if getattr(args, "out", None) is not None and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; expected the weights file to write")
    return args


def add_time_budget_argument(ap: argparse.ArgumentParser, help: Optional[str] = None) -> None:
    """Add ``--time-budget SECONDS`` (see :func:`budgeted_steps`); ``help`` replaces the
    default help text where a recipe sizes its run differently."""
    ap.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                    help=help or "train for about this long: a short probe measures the step rate and sets --steps "
                    "to fill 90%% of it; training stops at this time regardless")


def budgeted_steps(args: argparse.Namespace, model: torch.nn.Module, loss_fn: Any,
                   probe_batch: Callable[[], Any]) -> Tuple[int, Optional[float]]:
    """``(steps, probe rate)``: ``args.steps``, or the steps that fit ``args.time_budget``.

    With a budget, ``probe_batch()`` gives one collated training batch and
    :func:`~pnpdeblur.train.budget.measure_step_rate` times ``model`` on it (on ``args.device``,
    with ``args.amp`` where the recipe has it, at ``args.lr``); the steps then fill 90 % of the
    budget (:func:`~pnpdeblur.train.budget.steps_for_budget`). Pass ``args.time_budget`` as
    ``TrainConfig.time_limit_s`` too, as the safety net. cuDNN's autotuner is turned on for
    CUDA runs (fixed crop sizes).
    """
    from .budget import measure_step_rate, steps_for_budget  # looked up per call: tests stand in for the probe

    budget = args.time_budget
    if budget is None:
        return args.steps, None
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"--time-budget must be a finite number of seconds > 0, got {budget}")
    if torch.cuda.is_available() and args.device != "cpu":
        torch.backends.cudnn.benchmark = True
    from . import distributed as D
    from .engine import Trainer

    # Under torchrun every rank probes, and rank 0's count is used by all: ranks that
    # trained different numbers of steps would leave one waiting in a collective.
    D.init_for_device(Trainer._resolve_device(args.device))
    rate = measure_step_rate(model, loss_fn, probe_batch(), device=args.device, amp=bool(getattr(args, "amp", False)),
                             lr=args.lr)
    steps, rate = D.rank0_value((steps_for_budget(budget, rate), rate))
    print(json.dumps({"probe_steps_per_s": round(rate, 2), "steps": steps}), flush=True)
    return steps, rate


def engine_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The :class:`~pnpdeblur.train.TrainConfig` fields given by :func:`add_engine_arguments`.

    ``amp`` and ``grad_clip`` are included only when the parser had those options.
    """
    opts: Dict[str, Any] = dict(
        seed=args.seed, num_workers=args.workers, device=args.device, log_every=args.log_every,
        val_every=args.val_every, ckpt_every=args.ckpt_every, out_dir=str(args.run_dir),
        progress=not args.no_progress,
    )
    for name in ("amp", "grad_clip"):
        if hasattr(args, name):
            opts[name] = getattr(args, name)
    return opts


def export_weights(
    trainer: Any,
    out: Path,
    arch: str,
    config: Dict[str, Any],
    meta: Dict[str, Any],
    *,
    float32: bool,
    stored_dtype: str = "float16",
    module: Optional[Any] = None,
) -> Path:
    """Export the trained weights to ``out``, as float16 unless ``float32``.

    The float16 file is made from a float32 export by
    :func:`~pnpdeblur.checkpoints.halve_checkpoint` (which keeps normalisation statistics in
    float32); ``stored_dtype`` is recorded in its header.
    """
    from ..checkpoints import halve_checkpoint

    out = Path(out)
    if float32:
        trainer.export(out, arch, config, meta, module=module)
        return out
    tmp = out.with_name(out.stem + ".f32.safetensors")
    trainer.export(tmp, arch, config, meta, module=module)
    halve_checkpoint(tmp, out, arch, {"stored_dtype": stored_dtype})
    tmp.unlink()
    tmp.with_suffix(".json").unlink(missing_ok=True)
    return out


def device_name(device: torch.device) -> str:
    """What a weights header records as the training device: the card's name on CUDA, else the type."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def initialise_from(model: torch.nn.Module, path: Path, architecture: str) -> Dict[str, Any]:
    """Load the ``architecture`` weights at ``path`` into ``model`` (a warm start); returns their provenance.

    The checkpoint's config must equal ``model.config`` (the options must build the same network);
    a mismatch raises ``ValueError`` naming both, a corrupt or foreign checkpoint (or one holding
    NaN/Inf) :class:`pnpdeblur.checkpoints.CheckpointError`, and ``model`` is then left as it was.
    Every message starts with ``--init:``, the option the path came from. Returns the file name,
    its SHA-256 and the step count its header records, for the new weights' header.
    """
    import hashlib

    from ..checkpoints import CheckpointError, load_into, read_header

    try:
        header = read_header(path)
    except CheckpointError as e:  # its message names the path, not the option it came from
        raise CheckpointError(f"--init: {e}") from e
    if header["architecture"] == architecture and header["config"] != dict(model.config):
        raise ValueError(f"--init: {path} holds {architecture}{header['config']}, "
                         f"but the options build {architecture}{dict(model.config)}")
    try:
        load_into(model, path, architecture)
    except CheckpointError as e:
        raise CheckpointError(f"--init: {e}") from e
    return {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "steps": header.get("steps")}


def check_init_out(init: Path, out: Path) -> None:
    """Refuse an ``--out`` that is the ``--init`` file: the run would overwrite what it starts from."""
    if Path(init).resolve() == Path(out).resolve():
        raise ValueError(f"--out {out} would overwrite the --init weights; pass another --out")
