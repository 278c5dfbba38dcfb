#!/usr/bin/env bash
# Mutation testing of one module with mutmut, outside the working tree (`make mutation`).
#
#   scripts/mutation.sh [MODULE] [TESTS...]
#   MODULE  file to mutate (default pnpdeblur/solvers/schedules.py); several: comma-separated
#   TESTS   pytest selection that should kill its mutants (default: the schedule tests)
#   env: MUTMUT_VENV (default /tmp/pnpdeblur-mutmut), MUTATION_DIR (default: a new temp dir),
#        MUTATION_BUDGET seconds (default 1200), MUTATION_JOBS (default 2), PY (the project venv),
#        MUTATION_NUMBA_PYTHON=1 (mutate numba kernels: see below), MUTATION_TIMEOUT_MULTIPLIER
#        (mutmut's timeout_multiplier, default 15), MUTATION_THREADS (torch/numba/BLAS threads per
#        test process, default 1: see below), MUTATION_MUTANTS (space-separated mutant names or
#        fnmatch patterns to run only those, e.g. 'pnpdeblur.operators._numba_kernels.x_forward*'),
#        MUTATION_UNDECORATE=1 (mutate decorated functions too: see below)
#
# mutmut lives in its own venv (never in the project's .venv): the first run creates it and
# installs mutmut from PyPI; a .pth file lets it import the project venv's packages (torch,
# numba ...). The repository's files (git ls-files: tracked + untracked-not-ignored) are copied
# to MUTATION_DIR and mutmut runs there, so it never writes mutants/ into the checkout.
# mutmut 3 skips every decorated function (only @staticmethod/@classmethod get mutants), so the
# @nb.njit kernels of operators/_numba_kernels.py would silently get no mutants at all. With
# MUTATION_NUMBA_PYTHON=1 the copy of MODULE loses its one-line `@nb.njit(...)` decorators: the
# kernels then run as plain Python (numba.prange is range outside numba), get trampolines and
# mutants like any function. Pure Python is ~1000x slower: select tests on tiny images.
# The other decorated functions (properties, @torch.no_grad() helpers, @once_differentiable
# backward passes) get mutants with MUTATION_UNDECORATE=1: scripts/undecorate.py rewrites them in
# the copy as a plain def followed by `name = decorator(name)`, which behaves the same.
# Results: MUTATION_DIR/mutation-results.txt (one line per mutant) and the summary printed last.
set -euo pipefail

MODULE=${1:-pnpdeblur/solvers/schedules.py}
shift || true
if [ "$#" -gt 0 ]; then
    TESTS=("$@")
else  # fast tests that call the schedule functions directly; solver-level tests (seconds
      # each, and a full solve whenever a mutant removes an argument check) would add hours
    TESTS=(tests/test_schedules.py
           tests/test_solvers.py::test_schedules
           tests/test_trust_solvers.py::test_sigma_implied_by_explicit_betas_is_the_closed_form
           tests/test_trust_solvers.py::test_betas_implied_by_explicit_sigmas_is_the_closed_form
           tests/test_trust_solvers.py::test_explicit_schedules_round_trip_the_dpir_schedule
           tests/test_trust_solvers.py::test_explicit_schedules_use_the_noise_level)
fi
REPO=$(git rev-parse --show-toplevel)
PY=${PY:-$REPO/.venv/bin/python}
VENV=${MUTMUT_VENV:-/tmp/pnpdeblur-mutmut}
BUDGET=${MUTATION_BUDGET:-1200}
JOBS=${MUTATION_JOBS:-2}
MUTMUT_VERSION=3.8.1

MODULES=(${MODULE//,/ })
for m in "${MODULES[@]}"; do
    [ -f "$REPO/$m" ] || { echo "MODULE $m is not a file of the repository" >&2; exit 2; }
done

if [ ! -x "$VENV/bin/mutmut" ]; then
    # the same interpreter as the project venv, so the project's compiled packages import
    base=$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3
    "$base" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "mutmut==$MUTMUT_VERSION"
fi
site=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
vsite=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
echo "$site" > "$vsite/zz_pnpdeblur_project_venv.pth"  # appended after mutmut's own packages

WORK=${MUTATION_DIR:-$(mktemp -d /tmp/pnpdeblur-mutation.XXXXXX)}
mkdir -p "$WORK"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard) | while IFS= read -r -d '' f; do
    if [ -f "$REPO/$f" ]; then mkdir -p "$WORK/$(dirname "$f")" && cp -p "$REPO/$f" "$WORK/$f"; fi
done

if [ "${MUTATION_NUMBA_PYTHON:-0}" = 1 ]; then
    # only the copy; the decorators must be one line each (checked: none may remain)
    for m in "${MODULES[@]}"; do
        sed -i -E '/^[[:space:]]*@(nb|numba)\.(njit|jit)(\(.*\))?[[:space:]]*$/d' "$WORK/$m"
    done
    if grep -qE '@(nb|numba)\.' "${MODULES[@]/#/$WORK/}"; then
        echo "MUTATION_NUMBA_PYTHON: a numba decorator of $MODULE spans several lines; not stripped" >&2
        exit 2
    fi
    echo "MUTATION_NUMBA_PYTHON=1: numba decorators stripped from the copy of $MODULE (kernels run as Python)"
fi

if [ "${MUTATION_UNDECORATE:-0}" = 1 ]; then
    (cd "$WORK" && "$PY" scripts/undecorate.py "${MODULES[@]}")
fi

# mutmut reads its settings from setup.cfg: only in the copy
{
    echo
    echo "[mutmut]"
    echo "source_paths = pnpdeblur/"
    echo "only_mutate ="
    for m in "${MODULES[@]}"; do echo "    $m"; done
    echo "also_copy ="
    echo "    setup.cfg"
    echo "    tests/"
    printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n'
    # mutmut's limit is CPU seconds, (test time + constant) x 15 x 2; torch's threads add up
    # CPU time, so the default constant (1 s) made fast runs count as timeouts (= detected)
    echo "timeout_constant = 5.0"
    echo "timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-15.0}"
    echo "pytest_add_cli_args_test_selection ="
    for t in "${TESTS[@]}"; do echo "    $t"; done
} >> "$WORK/setup.cfg"

cd "$WORK"
echo "mutating $MODULE in $WORK with tests: ${TESTS[*]} (budget ${BUDGET}s, ${JOBS} jobs)"
export MPLBACKEND=Agg
# mutmut runs the tests once in its own process, then forks a child per mutant. A thread pool
# started before the fork (torch's OpenMP pool on any tensor op large enough to go parallel,
# numba's parallel kernels) leaves the child waiting forever on a lock that no thread will
# release (seen: 0 CPU seconds, futex_do_wait, so mutmut's CPU-time limit never fires). One
# thread per process starts no pool; with MUTATION_JOBS processes on a shared machine nothing
# is lost.
THREADS=${MUTATION_THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS NUMBA_NUM_THREADS=$THREADS
rc=0
read -r -a ONLY <<< "${MUTATION_MUTANTS:-}"
nice -n 19 timeout "$BUDGET" "$VENV/bin/mutmut" run --max-children "$JOBS" "${ONLY[@]}" > mutmut-run.log 2>&1 || rc=$?
tr '\r' '\n' < mutmut-run.log | grep -v '^\s*$' | tail -n 2  # the last progress line
[ "$rc" = 124 ] && echo "stopped at the budget of ${BUDGET}s: the counts below are partial"
"$VENV/bin/mutmut" results --all true > mutation-results.txt 2>&1 || true
echo "per-mutant results: $WORK/mutation-results.txt (diff of one: cd $WORK && $VENV/bin/mutmut show NAME)"
awk -F': ' 'NF == 2 {n[$2]++} END {for (k in n) printf "%-12s %d\n", k, n[k]}' mutation-results.txt | sort
