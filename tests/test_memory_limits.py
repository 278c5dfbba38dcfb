"""The memory the process may use (``pnpdeblur._memory``) and the weight tables' default limit,
an eighth of it (shared by a torchrun job's processes) within [768 MiB, 8 GiB]
(``_segment.default_table_limit``)."""
import os

import pytest

import pnpdeblur._memory as mem
from pnpdeblur.operators import _segment as seg

MiB, GiB = 2**20, 2**30


@pytest.mark.parametrize("memory, limit", [(None, 768 * MiB), (2 * GiB, 768 * MiB), (6 * GiB, 768 * MiB),
                                           (8 * GiB, GiB), (16 * GiB, 2 * GiB), (24 * GiB, 3 * GiB),
                                           (64 * GiB, 8 * GiB), (1024 * GiB, 8 * GiB)])
def test_the_table_limit_is_an_eighth_of_memory_within_its_bounds(memory, limit):
    assert seg.default_table_limit(memory) == limit


def test_the_default_reads_the_machine_and_the_variable_overrides_it(monkeypatch):
    monkeypatch.delenv("PNPDEBLUR_WEIGHT_TABLE_BYTES", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(mem, "machine_memory_bytes", lambda: 24 * GiB)
    assert seg._default_table_bytes() == 3 * GiB
    monkeypatch.setattr(mem, "machine_memory_bytes", lambda: None)
    assert seg._default_table_bytes() == 768 * MiB
    monkeypatch.setenv("PNPDEBLUR_WEIGHT_TABLE_BYTES", str(5 * MiB))
    assert seg._default_table_bytes() == 5 * MiB


def _limits(monkeypatch, tmp_path, *contents):
    """Point the control-group files at ``contents`` (None: the file is missing)."""
    paths = []
    for i, text in enumerate(contents):
        path = tmp_path / f"limit{i}"
        if text is not None:
            path.write_text(text)
        paths.append(str(path))
    monkeypatch.setattr(mem, "CGROUP_LIMIT_FILES", tuple(paths))


def _physical(monkeypatch, nbytes):
    def sysconf(name):
        if nbytes is None:
            raise ValueError(name)
        return {"SC_PHYS_PAGES": nbytes // 4096, "SC_PAGE_SIZE": 4096}[name]

    monkeypatch.setattr(mem.os, "sysconf", sysconf)


@pytest.mark.parametrize("physical, files, expected", [
    (32 * GiB, ("max\n", None), 32 * GiB),                      # v2 without a limit
    (32 * GiB, (None, "9223372036854771712\n"), 32 * GiB),      # v1 without a limit: near 2**63
    (32 * GiB, ("4294967296\n", None), 4 * GiB),                # a container's limit below the machine's
    (32 * GiB, (None, "2147483648\n"), 2 * GiB),                # the same in v1
    (32 * GiB, (None, None), 32 * GiB),                         # no control group
    (None, ("4294967296\n", None), 4 * GiB),                    # no sysconf: the container's limit
    (None, (None, None), None),                                 # nothing known
    (32 * GiB, ("garbage\n", "0\n"), 32 * GiB),                 # unreadable limits are ignored
])
def test_machine_memory_is_the_lower_of_the_machine_and_its_container(monkeypatch, tmp_path, physical, files,
                                                                      expected):
    _limits(monkeypatch, tmp_path, *files)
    _physical(monkeypatch, physical)
    assert mem.machine_memory_bytes() == expected


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="needs Linux's /proc/meminfo")
def test_physical_memory_matches_the_kernels_count():
    # an independent reading: MemTotal in /proc/meminfo (kB) is what sysconf's page count comes from
    with open("/proc/meminfo") as fh:
        total = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    assert abs(mem._physical_bytes() - total) < 4096 * 16
    assert 0 < mem.machine_memory_bytes() <= mem._physical_bytes()


@pytest.mark.parametrize("value, processes", [(None, 1), ("4", 4), ("1", 1), ("0", 1), ("-2", 1), ("two", 1),
                                              ("", 1)])
def test_processes_on_this_machine_reads_torchruns_local_world_size(monkeypatch, value, processes):
    if value is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", value)
    assert mem.processes_on_this_machine() == processes


def test_the_processes_of_a_torchrun_job_share_the_tables_memory(monkeypatch):
    # eight ranks on a 64 GiB machine: 1 GiB each (64/8/8), not the 8 GiB one process would take
    monkeypatch.delenv("PNPDEBLUR_WEIGHT_TABLE_BYTES", raising=False)
    monkeypatch.setattr(mem, "machine_memory_bytes", lambda: 64 * GiB)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert seg._default_table_bytes() == GiB
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert seg._default_table_bytes() == 8 * GiB
