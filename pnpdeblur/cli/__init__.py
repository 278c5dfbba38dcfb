"""The ``pnpdeblur`` command line (also ``python -m pnpdeblur``).

Subcommands
-----------
``pnpdeblur deblur IN… -o OUTDIR``
    Blind deblurring of photos with :func:`pnpdeblur.deblur` (SEN flow → HQS/CG with a
    prior, global iterations). Unreadable inputs are reported and skipped (exit status 1 at
    the end); an input file is never overwritten (exit status 2 before any work). Under
    ``torchrun`` the files are split across the processes. ``--net NAME|PATH`` runs an end-to-end
    network of :data:`DEBLUR_NETS` (``.restore(photo)``) instead, with the same files, names and
    statuses; it refuses the pipelines' options (exit status 2), and a network that cannot be
    loaded fails every input (exit status 1), as the pipelines' models do.
``pnpdeblur train <model> [args…]``
    Forwards ``args`` to the model's training recipe (:data:`TRAINERS`: ``sen``, ``rpgan``,
    ``deepdeblur``, ``deblurnet``, ``dvd``, ``deblurgan``, ``flownets``, ``drunet``, ``dncnn``).
    A recipe's refusal (a bad option, a missing folder, a ``ValueError`` deep in a run) is one
    line and exit status 1; with the environment variable ``PNPDEBLUR_DEBUG`` set (to anything
    but ``0``) the exception is raised instead, with its traceback.
``pnpdeblur finetune FRAMES_DIR --net NAME|PATH -o OUTDIR``
    Reblur2Deblur test-time fine-tuning (:func:`pnpdeblur.train.reblur.finetune_reblur`) of a
    deblurring network on the blurred video frames of a folder (temporal order = natural sort
    of the file names), then writes the deblurred frames. ``--net NAME`` loads the shipped
    weights of :data:`FINETUNE_NETS`; ``--net PATH`` any pnpdeblur checkpoint of one of those
    architectures (named in its header).
``pnpdeblur warmup``
    Compiles the CPU kernels now, several at a time (:func:`pnpdeblur.warmup.warm_kernels`),
    into numba's on-disk cache, so that the first solve does not compile them one by one.

:func:`main` takes an argument list and returns the exit status, so the command line can be
driven in-process (tests, notebooks); the console script passes it to ``sys.exit``.
"""
# The modules, one concern each: _parser (the parser, its help and defaults) with _arg_types (its
# option types); _files (inputs and output names) and _image_io (reading and writing images);
# _deblur with _deblur_options, _priors, _nets and _device; _finetune, _train, _warmup; _main.
# The private names below are re-exported for the tests. A test that replaces a function must patch
# the module that calls it (e.g. ``cli._deblur._read``): patching this package changes no caller.
from ._arg_types import _finite_float, _flow_scale, _margin, _nonneg_float, _positive_float, _positive_int, _unit_float
from ._deblur import _load_models, _run_deblur
from ._device import _resolve_device
from ._files import (OutputPlan, _natural_key, _overwrite_conflicts, _same_file, collect_inputs, plan_outputs,
                     sorted_frames)
from ._finetune import _load_flow, _run_finetune
from ._image_io import _atomic_save, _imsave, _is_16bit_png, _is_16bit_tiff, _png16_bytes, _read, _to_storage
from ._main import _exit_code, main
from ._nets import DEBLUR_NETS, FINETUNE_NETS, _load_net, _net_class, load_deblur_net
from ._parser import (_DEBLUR_EPILOG, _FINETUNE_EPILOG, _TOP_EPILOG, DEBLUR_CG_ITERS, DEBLUR_HQS_ITERS,
                      DEBLUR_SATURATION, GIVEN_FLOW_CG_ITERS, GIVEN_FLOW_HQS_ITERS, _image_extensions, _wrap,
                      build_parser)
from ._priors import (PRIOR_WEIGHTS, PRIORS, _prior_dncnn, _prior_drunet, _prior_drunet_medium, _prior_tv,
                      _prior_with_weights)
from ._status import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _err
from ._train import TRAINERS, _deblurnet_trainer, _run_train, _train_dncnn, _train_drunet, _train_rpgan, _train_sen

__all__ = ["main", "build_parser", "TRAINERS", "PRIORS", "FINETUNE_NETS", "DEBLUR_NETS", "OutputPlan",
           "plan_outputs", "collect_inputs", "load_deblur_net", "sorted_frames"]
