"""Host syncs inside the training step of every tiny preset (or those named), on a CUDA device.

A host sync (``.item()``, ``bool(tensor)``, a boolean-mask index, a ``.cpu()``…) makes the CPU wait
for the GPU, so the next kernels cannot be queued while the step runs. This runs each preset's real
training step (Lightning engine, bf16, synthetic batch already on the GPU) under
``torch.cuda.set_sync_debug_mode("warn")`` and prints every ``file:line`` that synchronised.

    python benchmarks/find_host_syncs.py                      # every *_tiny preset
    python benchmarks/find_host_syncs.py gdt_basecase_tiny --json syncs.json
    python benchmarks/find_host_syncs.py bassl_tiny --stacks    # also each sync's whole Python stack
    python benchmarks/find_host_syncs.py bassl_tiny --error     # raise at the first sync: its traceback
"""

from __future__ import annotations

import argparse
import json
import traceback
from collections import Counter

from vidssl.bench import BenchOptions, _bench_config, find_host_syncs, format_host_syncs, host_sync_report
from vidssl.config import preset_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", help="presets (default: every *_tiny preset)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--stacks", action="store_true", help="print each sync's whole Python stack")
    parser.add_argument("--error", action="store_true",
                        help="sync debug mode 'error': the first sync raises, and its traceback is printed")
    args = parser.parse_args()
    presets = args.presets or [p for p in preset_names() if "tiny" in p]
    results = []
    for preset in presets:
        try:
            options = BenchOptions(steps=args.steps, warmup=1, batch=args.batch)
            if args.stacks or args.error:
                stacks: list[str] = []
                syncs = find_host_syncs(_bench_config(preset, options, gpu=True), steps=options.steps,
                                        warmup=options.warmup, mode="error" if args.error else "warn",
                                        stack_traces=stacks)
                result = {"preset": preset, "steps": options.steps, "host_syncs": dict(Counter(syncs)),
                          "stacks": stacks}
                print(format_host_syncs(result), flush=True)
                for where, stack in zip(syncs, stacks):
                    print(f"--- {where}\n{stack}", flush=True)
            else:
                result = host_sync_report(preset, options)
                print(format_host_syncs(result), flush=True)
        except Exception as exc:  # noqa: BLE001 (one preset's failure must not hide the others)
            result = {"preset": preset, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            print(f"{preset}: FAILED {result['error']}\n{result['trace']}", flush=True)
        results.append(result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
