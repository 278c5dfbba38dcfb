#!/usr/bin/env bash
# A lent GPU machine's few minutes in one call of the `device` tool: the GPU tests and warm-started
# training runs side by side, everything worth keeping written to $OUT.
#
# From the repository root here, with the training photos carried:
#
#   run(command="bash scripts/gpu_session.sh", carry=[".data/bsds500"], timeout_s=570)
#
# What comes back (at most 8 files; the device tool returns no more):
#   machine.txt                 GPU, driver, torch and CuPy versions
#   gpu_tests.log               pytest -m gpu on tests/test_gpu.py and tests/test_tv_cuda.py
#   sen.safetensors, sen.json, sen.log
#                               SEN trained on from the shipped sen_small (issue 10)
#   drunet_medium.safetensors, drunet_medium.json, drunet.log
#                               DRUNet medium trained on from the shipped weights (issue 15)
#   sen23.safetensors, sen23.log
#                               with TRAIN containing "sen23": a SEN trained from scratch on ±23 px
#                               flows only, like the end-to-end nets (issue 12's controlled
#                               experiment); measure with `benchmarks/generalisation.py --sen
#                               sen23=PATH --sen-scale 0.5 --corpus .data/bsds500/test --n-corpus 6`
#   rpgan.safetensors, rpgan.log
#                               with TRAIN="rpgan" (not in the default: 8 files at most): RP-GAN from
#                               scratch (issue 11); measure with `benchmarks/blind.py --prior rpgan
#                               --rpgan-weights ...`
# Weights come back as candidates: measure them here before shipping (the SEN with
# `python benchmarks/blind.py --budget --weights ...` on BSDS500 val, the DRUNet with
# `python benchmarks/hqs_lambda.py` and `benchmarks/nonblind.py --drunet-weights ...`), then copy
# them over pnpdeblur/weights/ and update the model cards and RESULTS.md.
#
# Environment (all optional):
#   BUDGET  seconds of training per run (default 360; the runs share the GPU)
#   TRAIN   recipes to train side by side, from "sen sen23 drunet rpgan" (default "sen drunet"; "" for
#           none)
#   TESTS   1 runs the GPU tests beside the training, 0 skips them (default 1)
#   DEVICE  cuda (default), or cpu for a dry run of the wiring here:
#           OUT=/tmp/gpu DEVICE=cpu BUDGET=20 TESTS=0 bash scripts/gpu_session.sh
set -u
: "${OUT:?OUT must name the folder for the results}"
BUDGET=${BUDGET:-360}
TRAIN=${TRAIN-sen drunet}
TESTS=${TESTS:-1}
DEVICE=${DEVICE:-cuda}
CORPUS=${CORPUS:-.data/bsds500/train}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba} MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/mpl}
PY=${PY:-python3}

if [ ! -d "$CORPUS" ]; then
    echo "no training photos at $CORPUS: carry .data/bsds500 (see the header)" >&2
    exit 2
fi
{
    date -u
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
    $PY -c 'import torch; print("torch", torch.__version__)'
    $PY -c 'import cupy; print("cupy", cupy.__version__)' 2>&1 | tail -1
} > "$OUT/machine.txt" 2>&1

amp=()
if [ "$DEVICE" = cuda ]; then amp=(--amp); fi
pids=()
for recipe in $TRAIN; do
    case $recipe in
        sen)
            # stage 3 of docs/model_cards/sen_small.md, longer: a low, decaying learning rate
            $PY -m pnpdeblur train sen --corpus "$CORPUS" --preload --device "$DEVICE" "${amp[@]}" --workers 5 \
                --init shipped --lr 2e-4 --lr-end 2e-6 --decay-from 0 --val-items 64 --val-every 0 \
                --ckpt-every 0 --time-budget "$BUDGET" --run-dir /tmp/run_sen --float32 \
                --out "$OUT/sen.safetensors" --no-progress > "$OUT/sen.log" 2>&1 &
            ;;
        sen23)
            # sen_small's architecture and data, ±23 px flows only, from scratch at the paper's rate
            # (it left the constant-flow plateau in bf16 on a GPU; on the CPU in float32 use 3e-4)
            $PY -m pnpdeblur train sen --corpus "$CORPUS" --preload --device "$DEVICE" "${amp[@]}" --workers 5 \
                --presets 23 --val-items 64 --val-every 0 --ckpt-every 0 --time-budget "$BUDGET" \
                --run-dir /tmp/run_sen23 --float32 --out "$OUT/sen23.safetensors" --no-progress \
                > "$OUT/sen23.log" 2>&1 &
            ;;
        drunet)
            # the recipe of docs/model_cards/drunet_medium.md, from its weights at a lower rate
            $PY -m pnpdeblur train drunet --data "$CORPUS" --features 32,64,128,256 --blocks 2 --residual no \
                --init shipped --lr 1e-4 --crop 128 --batch 32 --device "$DEVICE" "${amp[@]}" --workers 5 \
                --threads 2 --val-items 48 --val-every 0 --ckpt-every 0 --time-budget "$BUDGET" \
                --run-dir /tmp/run_drunet --out "$OUT/drunet_medium.safetensors" --no-progress \
                > "$OUT/drunet.log" 2>&1 &
            ;;
        rpgan)
            # RP-GAN (issue 11) at the paper's crop with SEN flows estimated on 256² of context (small
            # crops give SEN flows so poor that the generator learns to distrust every deconvolution)
            $PY -m pnpdeblur train rpgan --corpus "$CORPUS" --preload --device "$DEVICE" --flows sen-ensemble \
                --crop 128 --flow-context 256 --pool 1000 --buffer 1000 --gamma 0.001 --lr 2e-4 --val-items 16 \
                --val-every 500 --ckpt-every 0 --time-budget "$BUDGET" --run-dir /tmp/run_rpgan \
                --out "$OUT/rpgan.safetensors" --no-progress > "$OUT/rpgan.log" 2>&1 &
            ;;
        *)
            echo "TRAIN: unknown recipe '$recipe' (choose from: sen sen23 drunet rpgan)" >&2
            exit 2
            ;;
    esac
    pids+=($!)
done

status=0
if [ "$TESTS" = 1 ]; then
    # numba compiles the CPU references first (pnpdeblur.warmup, via the tests' fixture): leave
    # the tests the training's time and two more minutes
    timeout $((BUDGET + 120)) $PY -m pytest -q -m gpu tests/test_gpu.py tests/test_tv_cuda.py \
        > "$OUT/gpu_tests.log" 2>&1 || status=$?
    tail -3 "$OUT/gpu_tests.log"
fi
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
for log in "$OUT"/sen.log "$OUT"/sen23.log "$OUT"/drunet.log; do
    if [ -f "$log" ]; then echo "== $log"; tail -2 "$log"; fi
done
ls -l "$OUT"
exit $status
