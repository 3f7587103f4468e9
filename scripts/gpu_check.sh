#!/usr/bin/env bash
# Everything the GPU machine has to do, in one run: build (with bittorch-bench), the whole
# test suite including the CUDA tests, compute-sanitizer memcheck and racecheck on the CUDA
# test binary, the benchmark, and the MNIST comparison on the GPU and on the CPU.
# Results go to $OUT (default: ./gpu-out; more than 8 files go back as one results.tar.gz).
# Needs torch in python3 (the GPU image has it).
# BITTORCH_GPU_STEPS picks the steps after the build (default: all of
# "tests sanitizer bench packed mnist"; "cudatests" runs the CUDA test binary alone,
# "checkpoint" saves, resumes and loads an MNIST checkpoint across GPU and CPU; "lmdp" trains
# bittorch-lm on one GPU and on two under torchrun (needs 2 GPUs; BITTORCH_DP_SEED=N reruns
# only the loss comparison at seed N) and "dpcheck" runs the data-parallel test on two GPUs
# with NCCL; "mnistdp" trains bittorch-mnist on one GPU and on two; "lmcheck",
# "lmbench" and "lmquality" run bittorch-lm: BITTORCH_LM_PRESET, BITTORCH_LM_ARGS and
# BITTORCH_LM_TIMEOUT set the quality run); BITTORCH_BENCH_ARGS is passed on to bittorch-bench;
# BITTORCH_SANITIZER_TOOLS picks compute-sanitizer's tools (default: memcheck racecheck) and
# BITTORCH_SANITIZER_FILTER the tests they run (a gtest filter);
# BITTORCH_PACKED_ARGS is passed on to bittorch-bench-packed (--kernels times each variant);
# "kernels" times every packed variant by name, with 16-bit rows and then each 8-bit format of
# BITTORCH_KERNEL_FORMATS (default "none float8_e4m3"), on the bench's shapes and the LM's
# widths (BITTORCH_KERNEL_ARGS replaces rows, shapes and repeats), packed_kernels_<format>.json;
# BITTORCH_CUDA_TEST_FILTER narrows the CUDA tests (a gtest filter); "scaling" trains
# bittorch-lm medium and large on 1 GPU and on 2, 4, 8 (as many as there are) at the same
# global batch, ternary with 8-bit activations and the BF16 baseline (lm_scaling.json;
# BITTORCH_SCALING_RUNS picks presets, global batches and steps);
# "ncu" takes Nsight Compute's figures of the packed kernels at batch 1, 16 and 64 (BITTORCH_NCU_ROWS);
# "lmncu" times the quantization kernels of medium's training step each alone under Nsight
# Compute (ncu_lm_*.csv, summarized by bench/ncu_kernel_summary.py; BITTORCH_NCU_LAUNCHES
# launches of each kind, default 96);
# "pyoverhead" times the Python module against the op on the GPU and runs the package's tests;
# BITTORCH_COMMIT names the commit for the JSON where the copy's git metadata is stale;
# BITTORCH_BASELINE_SRC, a source tree of an earlier commit (`git archive`), is built beside
# (bittorch-lm and bittorch-bench) and timed in the same steps, "bench" and "lmbench" writing
# its figures to *_baseline.json: before and after in one run on one machine;
# "lmbench" (BITTORCH_LMBENCH_PRESETS, default "medium large") also trains the same models
# with eager steps instead of steps replayed from a CUDA graph
# (lm_bench_<preset>_eager.json) and in plain PyTorch, eager and compiled
# (bench/lm_pytorch_reference.py, lm_pytorch_<preset>.json; BITTORCH_PYTORCH_MODES=compile
# leaves eager out);
# "lmprofile" profiles training steps of medium and large, ours (bittorch-lm bench --profile,
# which also profiles 16 decode steps of the BF16 and the packed model: the GPU's busy time
# per token against the token's) and the PyTorch reference's (lm_profile_*.json, lm_pytorch_profile_*.json, the traces tarred,
# their kernels grouped by bench/lm_profile_breakdown.py in lm_profile_breakdown.json;
# BITTORCH_PROFILE_PRESETS picks the presets, default "medium large");
# "lmcompare" is lmbench's training comparison alone: bittorch-lm bench --parts train and the
# compiled PyTorch reference per preset, with the ratios (BITTORCH_LMBENCH_PRESETS;
# BITTORCH_LMBENCH_VARIANTS: bench's --variants, e.g. "baseline,ternary_a8,ternary_a8_g8");
# BITTORCH_CUTLASS_INCLUDE_DIR: CUTLASS's headers, carried to the GPU machine (which has no
# nvidia-cutlass wheel), for the Hopper kernels built on them;
# BITTORCH_GPU_TARGETS names the ninja targets to build (default: all), e.g. "bittorch-lm
# bittorch_cuda_tests" where only those run; on a Hopper GPU the kernels are built for sm_90a
# only (BITTORCH_GPU_ALL_ARCHITECTURES=1: also sm_80, the library's default list);
# "lmload" exports a `large` model and times `bittorch-lm sample --packed` on it (load, prefill,
# 64 tokens; the baseline's too), lm_load.json;
# "bigmodel" trains the bitnet-2b4t shape (2.41B parameters) on one GPU with and without
# activation checkpointing (bittorch-lm bench: tokens/s and peak memory, lm_big_*.json) and,
# with 2 GPUs, under torchrun with ZeRO stage 2 and checkpointing (peak memory per rank,
# lm_big_2gpu.json).
# The steps bound their own long commands (timeout inside): an outer `timeout` on this script
# stops the script but not the command it is waiting for, which then runs on beside whatever
# comes next on the GPU (a benchmark measured that way is void).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-${root}/gpu-out}"
mkdir -p "$out"
cd "$root"
python="$(command -v python3)"
status=0
steps="${BITTORCH_GPU_STEPS:-tests sanitizer bench packed mnist}"
step() { echo "=== $* ==="; }
wants() { [[ " $steps " == *" $1 "* ]]; }

step configure and build
# The GPU image has no nvidia-cutlass: BITTORCH_CUTLASS_INCLUDE_DIR names headers carried along.
configure=(${BITTORCH_CUTLASS_INCLUDE_DIR:+-DBITTORCH_CUTLASS_INCLUDE_DIR="$(realpath "$BITTORCH_CUTLASS_INCLUDE_DIR")"})
# Kernels for the Hopper GPU here only (sm_90a), not also for the A100 (sm_80): the CUDA files
# compile in about half the time, and CI compiles both for every commit.
# BITTORCH_GPU_ALL_ARCHITECTURES=1 builds the library's default list.
if [[ -z ${BITTORCH_GPU_ALL_ARCHITECTURES:-} &&
      $(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1) == 9.0 ]]; then
  configure+=(-DBITTORCH_CUDA_ARCHITECTURES=90a -DTORCH_CUDA_ARCH_LIST=9.0a)
fi
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBITTORCH_BUILD_BENCH=ON "${configure[@]}" \
  -DBITTORCH_PYTHON="$python" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
grep "BitTorch:" "$out/configure.log"
# shellcheck disable=SC2086
ninja -C build-gpu -j16 ${BITTORCH_GPU_TARGETS:-} >"$out/build.log" 2>&1 ||
  { grep -E "error|FAILED" -A5 "$out/build.log" | head -60; exit 1; }
rm -f "$out/configure.log" "$out/build.log"  # only 8 files come back from the GPU machine
baseline=""
if [[ -n ${BITTORCH_BASELINE_SRC:-} ]]; then
  step "build the baseline ($BITTORCH_BASELINE_SRC)"
  cmake -S "$BITTORCH_BASELINE_SRC" -B build-baseline -G Ninja -DCMAKE_BUILD_TYPE=Release -DBITTORCH_BUILD_BENCH=ON "${configure[@]}" \
    -DBITTORCH_BUILD_TESTS=OFF -DBITTORCH_PYTHON="$python" >"$out/baseline.log" 2>&1 &&
    ninja -C build-baseline -j16 bittorch-lm bittorch-bench >>"$out/baseline.log" 2>&1 &&
    baseline=build-baseline || { grep -E "error|FAILED" -A5 "$out/baseline.log" | head -30; status=1; }
  rm -f "$out/baseline.log"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lm=./build-gpu/apps/lm/bittorch-lm

if wants tests || wants cudatests; then
step CUDA tests
./build-gpu/tests/bittorch_cuda_tests --gtest_filter="${BITTORCH_CUDA_TEST_FILTER:-*}" 2>&1 | tee "$out/cuda_tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure" | head -40
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
# The decode path once more with plain launches: a failure in one run only points at
# programmatic dependent launch.
BITTORCH_NO_DEPENDENT_LAUNCH=1 ./build-gpu/tests/bittorch_cuda_tests \
  --gtest_filter="GenerationCuda.*:DecodeAttentionCuda.*:PackedLinearCuda.Every*" 2>&1 |
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure" | sed 's/^/plain launches: /' | head -20
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if wants tests; then
step whole test suite
(cd build-gpu && ctest -j8 --output-on-failure) >"$out/ctest.log" 2>&1 || status=1
grep -E "tests passed|Failed|\*\*\*" "$out/ctest.log" | head -20
(cd build-gpu && ctest -R "python_torch_ops|exported_symbols" -V) 2>&1 | grep -E "exported symbols|C\+\+ runtime|errors on|cuda |opcheck|  bittorch|compile|export |contract|mismatches|FAILED|MISMATCH" | head -20
fi

if wants sanitizer; then
step compute-sanitizer
subset='DtypesModesGranularities/CudaMatchesCpu.ForwardAndGradients/Float_max_per_channel:DtypesModesGranularities/CudaMatchesCpu.ForwardAndGradients/BFloat16_absmean_global'
subset+=':DtypesFormatsGranularities/EightBitCudaMatchesCpu.ForwardAndGradients/BFloat16_float8_e4m3_per_channel'
subset+=':DtypesFormatsGranularities/EightBitCudaMatchesCpu.ForwardAndGradients/Float_int8_global'
subset+=':TernarizeCuda.*:QuantizeActivationsCuda.*:TernaryLinearCuda.*:TernaryLinearCudaModule.*:PackedLinearCuda.*'
subset+=':DecodeAttentionCuda.*:DtypesFormats/SmallRowsMatchReference.*'
# Every packed variant by name runs under the sanitizer; the heuristics' own routing is the same kernels.
subset+='-PackedLinearCuda.MatchesTheCpuKernel'
subset="${BITTORCH_SANITIZER_FILTER:-$subset}"
for tool in ${BITTORCH_SANITIZER_TOOLS:-memcheck racecheck}; do
  compute-sanitizer --tool "$tool" --error-exitcode 3 ./build-gpu/tests/bittorch_cuda_tests \
    --gtest_filter="$subset" >"$out/sanitizer_$tool.log" 2>&1
  code=$?
  echo "$tool: exit $code; $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer_$tool.log" | tail -1)"
  grep -E "^=========" "$out/sanitizer_$tool.log" | head -40
  [[ $code -eq 0 ]] || status=1
done
fi

if wants bench; then
step benchmark
# shellcheck disable=SC2086
./build-gpu/bench/bittorch-bench ${BITTORCH_BENCH_ARGS:-} --json "$out/bench.json" --commit "${BITTORCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
  2>&1 | tee "$out/bench.txt" || status=1
if [[ -n $baseline ]]; then
  step "benchmark of the baseline"
  # shellcheck disable=SC2086
  ./$baseline/bench/bittorch-bench ${BITTORCH_BENCH_ARGS:-} --json "$out/bench_baseline.json" --commit baseline \
    2>&1 | tail -40 || status=1
fi
fi

if wants packed; then
step packed inference benchmark
# shellcheck disable=SC2086
./build-gpu/bench/bittorch-bench-packed ${BITTORCH_PACKED_ARGS:-} --json "$out/bench_packed.json" \
  --commit "${BITTORCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
  2>&1 | tee "$out/bench_packed.txt" || status=1
fi

if wants kernels; then
step "packed kernel variants by name"
# shellcheck disable=SC2054  # the commas are within the values
kernel_args=(--rows 1,16,32,48,64,96,128,256,512,1024 --shapes 4096x4096,8192x8192,768x3072,3072x768,1536x6144,6144x1536
             --cpu-shapes "" --repeats 10)
[[ -n ${BITTORCH_KERNEL_ARGS:-} ]] && read -ra kernel_args <<<"$BITTORCH_KERNEL_ARGS"
for format in ${BITTORCH_KERNEL_FORMATS:-none float8_e4m3}; do
  timeout 240 ./build-gpu/bench/bittorch-bench-packed --kernels --kernel-activations "$format" "${kernel_args[@]}" \
    --json "$out/packed_kernels_$format.json" \
    --commit "${BITTORCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
    >"$out/packed_kernels_$format.txt" 2>&1
  code=$?
  echo "$format: exit $code, $(grep -c kernel_ "$out/packed_kernels_$format.txt") kernel rows"
  [[ $code -eq 0 ]] || status=1
done
fi

if wants ncu; then
step "Nsight Compute: the packed kernels the dispatch picks at batch 1, 16 and 64, 8192 x 8192, BF16"
# One launch each, after warm-up; --clock-control none leaves the clocks as they are (METHOD.md).
for rows in ${BITTORCH_NCU_ROWS:-1 16 64}; do
  ncu --clock-control none --kernel-name regex:'packed_(mma|mma_split|stream|tiled)_kernel' --launch-skip 10 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section WarpStateStats --section ComputeWorkloadAnalysis --csv --page raw \
    ./build-gpu/bench/bittorch-bench-packed --rows "$rows" --shapes 8192x8192 --cpu-shapes 256x256 --repeats 3 \
    >"$out/ncu_rows$rows.csv" 2>&1 || status=1
  grep -c "packed_" "$out/ncu_rows$rows.csv" | sed "s/^/rows $rows: kernels profiled (lines): /"
done
fi

if wants lmncu; then
step "Nsight Compute: the quantization kernels of a medium training step, each kernel alone"
# The Kineto trace's durations of dependent launches include their wait for the kernel before;
# ncu replays each kernel alone. The weights' ternarization (the ternary model), then the
# activations' quantization and squared_relu_quantized (8-bit activations), eager steps.
for kind in weights activations; do
  regex='RowTernaryQuantizer' variant=ternary
  [[ $kind == activations ]] && regex='ActivationQuantizer|SquaredReluQuantizer' variant=ternary_a8
  ncu --clock-control none --print-units base --kernel-name-base demangled --kernel-name "regex:$regex" \
    --launch-count "${BITTORCH_NCU_LAUNCHES:-96}" --metrics gpu__time_duration.sum,dram__bytes.sum --csv --page raw \
    "$lm" bench --cuda --preset medium --batch-size 32 --parts train --variants "$variant" --train-steps 1 \
    --no-cuda-graph --log-level warn >"$out/ncu_lm_$kind.csv" 2>&1 || status=1
  python3 bench/ncu_kernel_summary.py "$out/ncu_lm_$kind.csv" | head -12 || status=1
done
fi

if wants pyoverhead; then
step "Python package: TernaryLinear against the op called directly (bench/python_overhead.py)"
BITTORCH_LIBRARY="$root/build-gpu/libbittorch.so" PYTHONPATH="$root/python" python3 bench/python_overhead.py \
  --device cuda --json "$out/python_overhead.json" || status=1
BITTORCH_LIBRARY="$root/build-gpu/libbittorch.so" PYTHONPATH="$root/python" python3 tests/python/test_package.py \
  2>&1 | grep -E "^(ok|FAIL)|skipped" || status=1
fi

if wants checkpoint; then
step checkpoints written on the GPU: resumed there, loaded on the CPU
mnist=./build-gpu/apps/mnist/bittorch-mnist
flags=(--epochs 3 --no-progress --log-level warn --train-limit 5000)
ck="$out/gpu.ckpt"
"$mnist" --cuda "${flags[@]}" --metrics-json "$out/whole.json" >/dev/null || status=1
"$mnist" --cuda "${flags[@]}" --save "$ck" --stop-after-epoch 1 >/dev/null || status=1
"$mnist" --cuda "${flags[@]}" --resume "$ck" --save "$ck" --metrics-json "$out/resumed.json" >/dev/null || status=1
python3 - "$out/whole.json" "$out/resumed.json" <<'PY' || status=1
import json, sys
timing = {"seconds", "samples_per_second"}
runs = [[{k: v for k, v in e.items() if k not in timing} for e in json.load(open(p))["runs"][0]["epochs"]] for p in sys.argv[1:]]
print("uninterrupted:", runs[0]); print("resumed:      ", runs[1]); print("equal:", runs[0] == runs[1])
PY
"$mnist" --epochs 0 --load "$ck" --no-progress --log-level warn | tail -1 || status=1
rm -f "$ck" "$out/whole.json" "$out/resumed.json"
fi

if wants mnist; then
step MNIST on the GPU and the CPU
./build-gpu/apps/mnist/bittorch-mnist --compare --cuda --no-progress --metrics-json "$out/mnist_gpu.json" 2>&1 | tail -4
./build-gpu/apps/mnist/bittorch-mnist --compare --no-progress 2>&1 | tail -4
./build-gpu/apps/mnist/bittorch-mnist --cuda --activation-bits 8 --no-progress --metrics-json "$out/mnist_gpu_a8.json" 2>&1 | tail -3
fi
if wants lmcheck; then
step "bittorch-lm on the GPU: train, export, sample the packed file on the GPU and the CPU"
"$lm" train --cuda --preset tiny --compare --steps 200 --eval-interval 100 --no-progress --export "$out/tiny.btp" \
  2>&1 | tail -3 || status=1
"$lm" train --cuda --preset tiny --activation-bits 8 --steps 100 --eval-interval 100 --no-progress 2>&1 | tail -1 ||
  status=1
"$lm" sample --cuda --packed "$out/tiny.btp" --prompt "ROMEO:" --tokens 60 --seed 1 || status=1
"$lm" sample --packed "$out/tiny.btp" --prompt "ROMEO:" --tokens 60 --seed 1 || status=1
rm -f "$out/tiny.btp"
fi

if wants lmbench; then
step "bittorch-lm bench: medium (batch 32 x 512) and large (16 x 1024) on the GPU, medium generation on the CPU"
summary='import json,sys; d=json.load(sys.stdin); print(json.dumps({"train": d["train"], "generate": d["generate"]}))'
# Preset by preset, each one's figures whole before the next (BITTORCH_LMBENCH_PRESETS).
for preset in ${BITTORCH_LMBENCH_PRESETS:-medium large}; do
  batch=32
  [[ $preset == large ]] && batch=16
  for build in build-gpu $baseline; do
    suffix=""
    [[ $build == "$baseline" ]] && suffix=_baseline && echo "--- the baseline"
    "./$build/apps/lm/bittorch-lm" bench --cuda --preset "$preset" --batch-size "$batch" \
      --json "$out/lm_bench_$preset$suffix.json" --log-level warn | python3 -c "$summary" || status=1
  done
  # Training again with eager steps (the default replays each step from a CUDA graph).
  "$lm" bench --cuda --preset "$preset" --batch-size "$batch" --parts train --no-cuda-graph \
    --json "$out/lm_bench_${preset}_eager.json" --log-level warn |
    python3 -c 'import json,sys; print("eager steps:", json.dumps(json.load(sys.stdin)["train"]))' || status=1
  # The same model and batch in plain PyTorch, eager and torch.compile (bench/lm_pytorch_reference.py),
  # so that every comparison is a ratio from this one run.
  python3 bench/lm_pytorch_reference.py --from-bench "$out/lm_bench_$preset.json" --json "$out/lm_pytorch_$preset.json" \
    --modes "${BITTORCH_PYTORCH_MODES:-eager,compile}" || status=1
  # Generation again with plain launches instead of programmatic dependent ones: the effect of
  # overlapping each kernel's launch with the end of the one before it, in this run.
  BITTORCH_NO_DEPENDENT_LAUNCH=1 "$lm" bench --cuda --preset "$preset" --parts generate \
    --json "$out/lm_bench_${preset}_plain_launches.json" --log-level warn |
    python3 -c 'import json,sys; print("plain launches:", json.dumps(json.load(sys.stdin)["generate"]))' || status=1
done
"$lm" bench --preset medium --parts generate --generate-tokens 64 --json "$out/lm_bench_medium_cpu.json" --log-level warn \
  | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["generate"]))' || status=1
fi

if wants lmcompare; then
step "issue 26's comparison alone: bittorch-lm training against PyTorch torch.compile, BF16 and BitNet, per preset"
# Ours (BF16, ternary, 8-bit activations), then the compiled reference of the same model and
# batch: the ratios of one run in about 100 s a preset (lmbench also times eager PyTorch, the
# CUDA-graph step and generation).
for preset in ${BITTORCH_LMBENCH_PRESETS:-medium large}; do
  batch=32
  [[ $preset == large ]] && batch=16
  timeout 160 "$lm" bench --cuda --preset "$preset" --batch-size "$batch" --parts train \
    --variants "${BITTORCH_LMBENCH_VARIANTS:-baseline,ternary,ternary_a8}" \
    --json "$out/lm_bench_$preset.json" --log-level warn >/dev/null || status=1
  timeout 240 python3 bench/lm_pytorch_reference.py --from-bench "$out/lm_bench_$preset.json" --modes compile \
    --json "$out/lm_pytorch_$preset.json" >/dev/null || status=1
  python3 - "$out/lm_bench_$preset.json" "$out/lm_pytorch_$preset.json" "$preset" <<'PY' || status=1
import json, sys
ours, theirs = (json.load(open(path)) for path in sys.argv[1:3])
compiled = {run["variant"]: run for run in theirs["runs"]}
for run in ours["train"]:
    ratios = ", ".join(f"{run['tokens_per_second'] / other['tokens_per_second']:.3f}x compile {name}"
                       for name, other in compiled.items())
    print(f"{sys.argv[3]:<7} {run['variant']:<11} {run['tokens_per_second']:>10.0f} tokens/s "
          f"{run['peak_memory_bytes'] / 2**30:6.2f} GiB  {ratios}")
for name, other in compiled.items():
    print(f"{sys.argv[3]:<7} compile {name:<7} {other['tokens_per_second']:>10.0f} tokens/s "
          f"{other['peak_memory_bytes'] / 2**30:6.2f} GiB")
PY
done
fi

if wants bigmodel; then
step "the bitnet-2b4t shape (2.41B parameters): training throughput and peak memory on one GPU and on two (ZeRO stage 2)"
for checkpointing in "" --checkpoint-activations; do
  name=lm_big_1gpu${checkpointing:+_checkpointed}
  "$lm" bench --cuda --preset bitnet-2b4t --batch-size 4 --parts train --train-steps 3 $checkpointing \
    --json "$out/$name.json" --log-level warn >/dev/null || status=1
  python3 -c 'import json,sys; print(sys.argv[2], json.dumps(json.load(open(sys.argv[1]))["train"]))' \
    "$out/$name.json" "$name" || status=1
done
if (( $(nvidia-smi -L | wc -l) >= 2 )); then
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
  python3 -m torch.distributed.run --standalone --nproc-per-node 2 --no-python "$lm" train --cuda --model ternary \
    --preset bitnet-2b4t --batch-size 4 --steps 6 --eval-interval 3 --eval-windows 4 --warmup 2 --shard-gradients \
    --checkpoint-activations --no-progress --log-level warn --metrics-json "$out/lm_big_2gpu.json" >/dev/null || status=1
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["runs"][0]; print({k: r.get(k) for k in ("peak_memory_bytes", "parameters")}, r["evaluations"][-1])' \
    "$out/lm_big_2gpu.json" || status=1
fi
fi

if wants lmprofile; then
step "profiles of training steps: bittorch-lm (Kineto, each kernel under the op that launched it; and of decode steps) and the PyTorch reference, eager and compiled"
for preset in ${BITTORCH_PROFILE_PRESETS:-medium large}; do
  batch=32
  [[ $preset == large ]] && batch=16
  "$lm" bench --cuda --preset "$preset" --batch-size "$batch" --parts train,generate --train-steps 3 \
    --generate-tokens 64 --profile "/tmp/profile_$preset" --json "$out/lm_profile_$preset.json" \
    --log-level warn >/dev/null || status=1
  python3 bench/lm_pytorch_reference.py --from-bench "$out/lm_profile_$preset.json" --steps 3 --warmup 3 \
    --profile "/tmp/profile_$preset" --json "$out/lm_pytorch_profile_$preset.json" || status=1
done
tar -czf "$out/lm_profile_traces.tar.gz" -C /tmp $(cd /tmp && ls -d profile_medium profile_large 2>/dev/null) || status=1
python3 bench/lm_profile_breakdown.py "$out/lm_profile_traces.tar.gz" --json "$out/lm_profile_breakdown.json" \
  --top 25 || status=1
fi

if wants lmload; then
step "bittorch-lm sample --packed on a large model: load, prefill and 64 tokens, as a user runs it"
"$lm" train --cuda --preset large --steps 1 --batch-size 1 --warmup 1 --eval-interval 1 --eval-windows 1 \
  --no-progress --log-level warn --export /tmp/large.btp >/dev/null || status=1
python3 - "$out" /tmp/large.btp build-gpu $baseline <<'PY' || status=1
import json, os, subprocess, sys, time
out, model, builds = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {"file_bytes": os.path.getsize(model)}
for build in builds:
    name = "baseline" if build != "build-gpu" else "this commit"
    for device in ("--cuda", "--device=cpu"):
        command = [f"./{build}/apps/lm/bittorch-lm", "sample", "--packed", model, device, "--tokens", "64",
                   "--prompt", "ROMEO:", "--log-level", "warn"]
        start = time.monotonic()  # the file is in the page cache: just written
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.monotonic() - start
        runs[f"{name} {device}"] = {"seconds": seconds, "exit": result.returncode, "text": result.stdout[-80:]}
        print(f"{name:<12} {device:<13} {seconds:6.2f} s  exit {result.returncode}  {result.stderr[-200:]}")
json.dump(runs, open(os.path.join(out, "lm_load.json"), "w"), indent=1)
PY
rm -f /tmp/large.btp
fi

if wants lmquality; then
preset="${BITTORCH_LM_PRESET:-small}"
step "bittorch-lm quality: $preset, fp (BF16) against ternary on the same batches"
# shellcheck disable=SC2086
timeout "${BITTORCH_LM_TIMEOUT:-540}" "$lm" train --cuda --preset "$preset" --compare --no-progress \
  --metrics-json "$out/lm_quality_$preset.json" --sample 400 \
  ${BITTORCH_LM_ARGS:---steps 3000 --batch-size 64 --eval-interval 250 --eval-windows 256} \
  2>&1 | grep -E "epoch [0-9]+/[0-9]+:|bits per byte|^fp |^ternary |error" || status=1
python3 -c 'import json,sys; [print("---", r["model"], "sample ---" + r.get("sample", "")) for r in json.load(open(sys.argv[1]))["runs"]]' \
  "$out/lm_quality_$preset.json" || status=1
fi
if wants dpcheck; then
step "DataParallel on two GPUs (NCCL) against one process, and a rank that dies"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
python3 tests/distributed/check_data_parallel.py python3 build-gpu/tests/bittorch_data_parallel_worker \
  "$out/dpcheck" cuda >"$out/dpcheck.log" 2>&1 || status=1
cat "$out/dpcheck.log"
rm -rf "$out/dpcheck" "$out/dpcheck.log"
fi

if wants lmdp; then
step "bittorch-lm data parallel: one GPU against two (torchrun, NCCL), medium and large"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
torchrun=(python3 -m torch.distributed.run --standalone --nproc-per-node 2 --no-python)
dp() {  # NAME PRESET STEPS [torchrun] FLAGS...
  local name=$1 preset=$2 steps=$3; shift 3
  local launcher=()
  if [[ $1 == torchrun ]]; then launcher=("${torchrun[@]}"); shift; fi
  "${launcher[@]}" "$lm" train --cuda --model ternary --preset "$preset" --steps "$steps" \
    --eval-interval $((steps / 2)) --eval-windows 64 --no-progress --log-level warn \
    --metrics-json "$out/dp_$name.json" "$@" >/dev/null 2>"$out/dp_$name.err" || { tail -5 "$out/dp_$name.err"; status=1; }
  rm -f "$out/dp_$name.err"
}
if [[ -n ${BITTORCH_DP_SEED:-} ]]; then  # the loss comparison again at another seed (noise)
  dp "medium_1gpu_batch64_seed$BITTORCH_DP_SEED" medium 200 --batch-size 64 --seed "$BITTORCH_DP_SEED"
  dp "medium_2gpu_seed$BITTORCH_DP_SEED" medium 200 torchrun --batch-size 32 --seed "$BITTORCH_DP_SEED"
else
  dp medium_1gpu medium 200 --batch-size 32
  dp medium_2gpu medium 200 torchrun --batch-size 32
  dp medium_2gpu_bf16 medium 200 torchrun --batch-size 32 --bf16-gradients
  dp medium_1gpu_batch64 medium 200 --batch-size 64
  dp large_1gpu large 60 --batch-size 16
  dp large_2gpu large 60 torchrun --batch-size 16
  # ZeRO stages 1 and 2 and activation checkpointing: memory per GPU and throughput beside plain
  # data parallelism.
  dp large_2gpu_zero1 large 60 torchrun --batch-size 16 --shard-optimizer
  dp large_2gpu_zero2 large 60 torchrun --batch-size 16 --shard-gradients
  dp large_2gpu_zero2_checkpointed large 60 torchrun --batch-size 16 --shard-gradients --checkpoint-activations
  dp large_1gpu_checkpointed large 60 --batch-size 16 --checkpoint-activations
fi
python3 - "$out" <<'PY' || status=1
import glob, json, os, sys
out = sys.argv[1]
runs = {}
for path in sorted(glob.glob(os.path.join(out, "dp_*.json"))):
    doc = json.load(open(path))
    evals = doc["runs"][0]["evaluations"]
    runs[os.path.basename(path)[3:-5]] = {"tokens_per_second": evals[-1]["tokens_per_second"],
                                          "val_loss": [e["val_loss"] for e in evals],
                                          "train_loss": [e["train_loss"] for e in evals],
                                          "peak_memory_bytes_per_rank": doc["runs"][0].get("peak_memory_bytes")}
    os.remove(path)
for preset in ("medium", "large"):
    one, two = runs.get(preset + "_1gpu"), runs.get(preset + "_2gpu")
    if one and two:
        runs[preset + "_speedup"] = two["tokens_per_second"] / one["tokens_per_second"]
json.dump(runs, open(os.path.join(out, "lm_data_parallel.json"), "w"), indent=1)
print(json.dumps(runs, indent=1))
PY
fi

if wants scaling; then
step "bittorch-lm scaling: the same global batch on 1 GPU and on every GPU count up to this machine's (torchrun, NCCL)"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
gpus=$(nvidia-smi -L | wc -l)
scale() {  # NAME GPUS PRESET GLOBAL_BATCH STEPS FLAGS...: --batch-size GLOBAL_BATCH / GPUS per process
  local name=$1 n=$2 preset=$3 batch=$4 steps=$5; shift 5
  local launcher=()
  [[ $n -gt 1 ]] && launcher=(python3 -m torch.distributed.run --standalone --nproc-per-node "$n" --no-python)
  "${launcher[@]}" "$lm" train --cuda --preset "$preset" --steps "$steps" --eval-interval $((steps / 2)) \
    --eval-windows 64 --batch-size $((batch / n)) --no-progress --log-level warn --metrics-json "$out/scale_$name.json" \
    "$@" >/dev/null 2>"$out/scale_$name.err"
}
# BITTORCH_SCALING_RUNS: preset:global batch:steps, space-separated.
for run in ${BITTORCH_SCALING_RUNS:-medium:64:200 large:32:60}; do
  IFS=: read -r preset batch steps <<<"$run"
  for model in ternary_a8 bf16; do
    flags=(--model ternary --activation-bits 8)
    [[ $model == bf16 ]] && flags=(--model fp)
    for n in 1 2 4 8; do
      [[ $n -gt $gpus ]] && break
      name="${preset}_b${batch}_${model}_${n}gpu"
      # One GPU may lack the memory for the whole global batch: then two micro-batches of half.
      if ! scale "$name" "$n" "$preset" "$batch" "$steps" "${flags[@]}" && [[ $n -eq 1 ]]; then
        tail -2 "$out/scale_$name.err"
        touch "$out/scale_$name.halves"
        scale "$name" 1 "$preset" $((batch / 2)) "$steps" "${flags[@]}" --accumulation 2 || status=1
      fi
      grep -iE "error|terminate" "$out/scale_$name.err" | head -3
      rm -f "$out/scale_$name.err"
    done
  done
done
python3 - "$out" "$gpus" <<'PY' || status=1
import glob, json, os, sys
out, rows = sys.argv[1], []
for path in sorted(glob.glob(os.path.join(out, "scale_*.json"))):
    name = os.path.basename(path)[6:-5]
    preset, batch, gpus = name.split("_")[0], int(name.split("_")[1][1:]), int(name.rsplit("_", 1)[1][:-3])
    model = "ternary_a8" if "ternary" in name else "bf16"
    halves = os.path.exists(path[:-5] + ".halves")
    doc = json.load(open(path))
    run = doc["runs"][0]
    evals = run["evaluations"]
    rows.append({"preset": preset, "global_batch": batch, "model": model, "gpus": gpus, "accumulation": 2 if halves else 1,
                 "tokens_per_second": evals[-1]["tokens_per_second"], "val_loss": [e["val_loss"] for e in evals],
                 "train_loss": [e["train_loss"] for e in evals], "all_reduce": run.get("all_reduce")})
    os.remove(path)
    if halves: os.remove(path[:-5] + ".halves")
for r in rows:
    one = next((o for o in rows if all(o[k] == r[k] for k in ("preset", "global_batch", "model")) and o["gpus"] == 1),
               None)
    if one: r["efficiency"] = r["tokens_per_second"] / (r["gpus"] * one["tokens_per_second"])
json.dump({"gpus": int(sys.argv[2]), "runs": rows}, open(os.path.join(out, "lm_scaling.json"), "w"), indent=1)
for r in rows:
    ar = r["all_reduce"] or {}
    print(f'{r["preset"]:<7} batch {r["global_batch"]:<3} {r["model"]:<11} {r["gpus"]} GPU  {r["tokens_per_second"]:>10.0f} tokens/s  '
          f'efficiency {r.get("efficiency", float("nan")):.3f}  val {r["val_loss"][-1]:.4f}  '
          f'all-reduce {ar.get("all_reduce_ms", 0):.2f} ms, after the backward {ar.get("exposed_ms", 0):.2f} ms (step {ar.get("step")})')
PY
fi

if wants mnistdp; then
step "bittorch-mnist data parallel: one GPU (batch 128) against two (torchrun, 64 each: the same global batch)"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule
mnist=./build-gpu/apps/mnist/bittorch-mnist
"$mnist" --cuda --compare --no-progress --log-level warn --metrics-json "$out/mnist_dp_1gpu.json" >/dev/null || status=1
python3 -m torch.distributed.run --standalone --nproc-per-node 2 --no-python "$mnist" --cuda --compare --batch-size 64 \
  --no-progress --log-level warn --metrics-json "$out/mnist_dp_2gpu.json" >/dev/null 2>"$out/mnist_dp.err" ||
  { tail -5 "$out/mnist_dp.err"; status=1; }
rm -f "$out/mnist_dp.err"
python3 - "$out" <<'PY' || status=1
import json, os, sys
out = sys.argv[1]
summary = {}
for gpus in ("1gpu", "2gpu"):
    path = os.path.join(out, f"mnist_dp_{gpus}.json")
    for run in json.load(open(path))["runs"]:
        epochs = run["epochs"]
        summary[f"{run['model']}_{gpus}"] = {"test_accuracy": [e["test_accuracy"] for e in epochs],
                                            "samples_per_second": epochs[-1]["samples_per_second"]}
    os.remove(path)
json.dump(summary, open(os.path.join(out, "mnist_data_parallel.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
fi

# Only 8 files come back from the GPU machine (the device tool's limit): past that, everything
# goes back as one archive (results.tar.gz; `tar -xzf` it), so that no figure is left behind.
results=("$out"/*)
if (( ${#results[@]} > 8 )); then
  names=("${results[@]##*/}")
  tar -czf "$out/results.tar.gz" -C "$out" "${names[@]}" && rm -f "${results[@]}"
  echo "${#names[@]} files in $out/results.tar.gz"
fi
exit $status
