"""Which files a command reads and where its results go: the inputs of ``deblur``, the frames of
``finetune``, output names without clashes, and the refusal to overwrite an input."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

__all__ = ["collect_inputs", "OutputPlan", "plan_outputs", "_same_file", "_overwrite_conflicts", "_natural_key",
           "sorted_frames"]


def collect_inputs(inputs: Sequence[Path], recursive: bool = False) -> Tuple[List[Path], List[Tuple[Path, str]]]:
    """Expand the ``IN`` arguments into image files.

    Parameters
    ----------
    inputs : sequence of Path
        Files (taken as given, whatever their extension) and folders (their files with an
        image extension, see :data:`pnpdeblur.data.IMAGE_EXTENSIONS`).
    recursive : bool
        Search folders recursively.

    Returns
    -------
    files : list of Path
        In argument order (folders sorted), each file once (compared by resolved path).
    problems : list of (Path, str)
        Arguments that give nothing (missing paths, folders without images), and the photo files of
        the folders in formats that are not read (camera raw, HEIC/HEIF), each with what to do.
    """
    from ..data.image_files import _unread_format_advice, list_images, scan_folder

    files: List[Path] = []
    seen = set()
    problems: List[Tuple[Path, str]] = []
    for p in inputs:
        if p.is_dir():
            try:
                found, unread = scan_folder(p, recursive=recursive)
                if not found and not unread:
                    list_images(p, recursive=recursive)  # raises, in its words
            except (ValueError, FileNotFoundError, OSError) as e:
                problems.append((p, str(e)))
                continue
            # photos the user meant to deblur, in a format not read here: each is reported by name
            problems.extend((f, f"not read: {_unread_format_advice(f)}") for f in unread)
        elif p.exists():
            found = [p]
        else:
            problems.append((p, "no such file or folder"))
            continue
        for f in found:
            key = os.path.normcase(str(f.resolve()))
            if key not in seen:  # a file named twice (or inside a named folder) is done once
                seen.add(key)
                files.append(f)
    return files, problems


@dataclass
class OutputPlan:
    """Where one input's results go."""

    source: Path                 #: the input file
    image: Path                  #: deblurred picture
    flow_png: Optional[Path]     #: colour-coded flow (``--save-flow``)
    flow_npy: Optional[Path]     #: raw flow (``--flow-npy``)
    renamed: bool = False        #: the stem clashed with an earlier input's outputs
    kernel_png: Optional[Path] = None  #: the estimated camera-shake kernel (``--save-kernel``)
    kernel_npy: Optional[Path] = None  #: the same kernel's weights (``--kernel-npy``)


def plan_outputs(files: Sequence[Path], outdir: Path, save_flow: bool = False,
                 flow_npy: bool = False, save_kernel: bool = False, kernel_npy: bool = False) -> List[OutputPlan]:
    """Output paths for ``files``: ``<stem>.png`` (+ ``<stem>_flow.png`` / ``.npy``, or
    ``<stem>_kernel.png`` / ``.npy``), no clashes.

    A file whose names are already taken by an earlier file (same stem, or ``x_flow.png``
    next to ``x.png`` with ``--save-flow``) gets ``<stem>_1``, ``<stem>_2``, … Names are
    compared case-insensitively (case-insensitive file systems). The plan depends only on
    ``files`` and the options, so every torchrun rank computes the same one.
    """
    taken = set()
    plans = []
    for f in files:
        stem, k = f.stem, 0
        while True:
            base = stem if k == 0 else f"{stem}_{k}"
            names = [base + ".png"]
            if save_flow or flow_npy:
                names.append(base + "_flow.png")
            if flow_npy:
                names.append(base + "_flow.npy")
            if save_kernel or kernel_npy:
                names.append(base + "_kernel.png")
            if kernel_npy:
                names.append(base + "_kernel.npy")
            if not any(n.casefold() in taken for n in names):
                break
            k += 1
        taken.update(n.casefold() for n in names)
        named = {n[len(base):]: outdir / n for n in names[1:]}  # by suffix
        plans.append(OutputPlan(
            f, outdir / names[0], named.get("_flow.png"), named.get("_flow.npy"),
            renamed=k > 0, kernel_png=named.get("_kernel.png"), kernel_npy=named.get("_kernel.npy")))
    return plans


def _same_file(a: Path, b: Path) -> bool:
    if os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve())):
        return True
    try:  # hard links and other aliases the path text does not show
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _overwrite_conflicts(plans: Sequence[OutputPlan], inputs: Sequence[Path]) -> List[Tuple[Path, Path]]:
    """(output, input) pairs where writing the output would replace an input file."""
    by_key = {os.path.normcase(str(p.resolve())): p for p in inputs}
    out = []
    for pl in plans:
        for o in (pl.image, pl.flow_png, pl.flow_npy, pl.kernel_png, pl.kernel_npy):
            if o is None:
                continue
            hit = by_key.get(os.path.normcase(str(o.resolve())))
            if hit is None and o.exists():
                hit = next((p for p in inputs if _same_file(o, p)), None)
            if hit is not None:
                out.append((o, hit))
    return out


def _natural_key(p: Path) -> Tuple:
    import re

    parts = re.split(r"(\d+)", p.name.casefold())
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in parts)


def sorted_frames(folder: Path) -> List[Path]:
    """The images of ``folder`` in natural order of their names (``f2`` before ``f10``)."""
    from ..data.image_files import list_images

    return sorted(list_images(folder), key=_natural_key)
