"""pnpdeblur.warmup: compiling the CPU kernels ahead of first use, in worker processes."""
import os

import numba
import pytest

from pnpdeblur.cli import main
from pnpdeblur.operators import _numba_kernels as NK
from pnpdeblur.warmup import WARM_DTYPES, WARM_TASKS, _jobs, _run_task, warm_kernels


def test_jobs_cover_each_task_dtype_and_the_operators_flow_dtypes():
    jobs = _jobs(WARM_TASKS, WARM_DTYPES)
    assert len(jobs) == len(set(jobs)) == 3 * 2 * 2 + 2 * 2
    for op in ("forward", "adjoint", "normal"):
        assert {(d, f) for t, d, f in jobs if t == op} == {(d, f) for d in WARM_DTYPES for f in WARM_DTYPES}
    for task in ("gradient", "tv"):
        assert [(d, f) for t, d, f in jobs if t == task] == [(d, d) for d in WARM_DTYPES]
    assert _jobs(["tv"], ["float32"]) == [("tv", "float32", "float32")]


def _table_signatures(dispatcher, position):
    """Signatures of a kernel compiled with a weight table (not None) at ``position``."""
    return [s for s in dispatcher.signatures
            if len(s) > position and not isinstance(s[position], (numba.types.NoneType, numba.types.Omitted))]


@pytest.mark.parametrize("task,kernel,table_at", [("forward", "forward", 5), ("adjoint", "adjoint", 6),
                                                  ("normal", "normal", 6)])
def test_a_job_compiles_its_kernel_with_and_without_the_weight_table(task, kernel, table_at):
    seconds, pid = _run_task(task, "float64", "float64")
    assert seconds > 0 and pid == os.getpid()
    sigs = getattr(NK, kernel).signatures
    f64 = [s for s in sigs if s[0].dtype == numba.float64]
    assert any(len(s) <= table_at or isinstance(s[table_at], (numba.types.NoneType, numba.types.Omitted)) for s in f64)
    assert any(s[0].dtype == numba.float64 for s in _table_signatures(getattr(NK, kernel), table_at))


def test_the_gradient_job_compiles_the_flow_gradient():
    _run_task("gradient", "float32", "float32")
    assert any(s[0].dtype == numba.float32 for s in NK.param_grad.signatures)


def test_the_tv_job_compiles_the_tv_prox_for_its_dtype_and_reports_its_own_time():
    import time

    from pnpdeblur.priors import _tv_numba as TVK

    t0 = time.perf_counter()
    seconds, _ = _run_task("tv", "float32", "float32")
    assert 0 < seconds <= time.perf_counter() - t0
    assert any(s[0].dtype == numba.float32 for s in TVK.primal.signatures)
    assert any(s[0].dtype == numba.float32 for s in TVK.dual_step.signatures)


def test_an_operator_job_uses_the_flow_dtype_it_is_given():
    _run_task("forward", "float32", "float64")  # float32 image, float64 flow
    assert any(s[0].dtype == numba.float32 and s[1].dtype == numba.float64 for s in NK.forward.signatures)


def test_warm_kernels_runs_each_job_in_a_worker_process():
    got = warm_kernels(tasks=("tv", "tv"), dtypes=["float64"], processes=1)
    assert list(got) == [("tv", "float64", "float64")]  # repeated names count once
    (seconds, pid), = got.values()
    assert seconds > 0 and pid != os.getpid()


@pytest.mark.parametrize("kw,match", [({"tasks": ("fft",)}, "tasks must be"), ({"tasks": "tv"}, "tasks must be"),
                                      ({"tasks": ()}, "tasks must be"), ({"dtypes": ("float16",)}, "dtypes must be"),
                                      ({"dtypes": "float32"}, "dtypes must be"), ({"dtypes": []}, "dtypes must be"),
                                      ({"processes": 0}, "processes must be"),
                                      ({"processes": True}, "processes must be"),
                                      ({"processes": 2.0}, "processes must be")])
def test_warm_kernels_checks_its_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        warm_kernels(**kw)


def test_cli_warmup_prints_each_job_and_refuses_stray_arguments(capsys):
    assert main(["warmup", "--tasks", "tv", "--dtypes", "float64", "--processes", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["tv", "image", "float64", "flow", "float64"] and out[0].endswith(" s")
    assert out[-1].startswith("compiled 1 kernel sets in ")
    assert main(["warmup", "extra"]) == 2
    assert "unrecognized arguments: extra" in capsys.readouterr().err
    assert main(["warmup", "--tasks", "fft"]) == 2
    assert main(["warmup", "--processes", "0"]) == 2
