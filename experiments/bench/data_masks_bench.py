"""Throughput of ``visgrpo-data masks`` (samples/s on one core).

``python -m experiments.bench.data_masks_bench [--quick] [--num 10000] [--out results.json]``

Generates ``--num`` synthetic samples (``visgrpo-data synth``, 224 px, 4-7 objects, 1-3
evidence boxes with segmentation RLEs), then times, single-threaded:

* ``compute``: :func:`data_tools.masks.build_masks` on the loaded dataset (reads
  ``width``/``height``/``boxes``/``segmentation`` columns; no image decoding), with the
  segmentation masks (default path) and with boxes only (``--no-segmentation``);
* ``end_to_end``: load from disk + build + atomic save (what the CLI does).

Rates are samples per process-CPU second (one thread, so per second on one core; on a
shared machine wall time would also count the waits for a core). Target (issue 3): >= 5,000
samples/s for 10,000 samples. Prints one line per measurement
and a final JSON line ``{"summary": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET = 5000.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=10000)
    p.add_argument("--quick", action="store_true", help="2,000 samples, one repeat")
    p.add_argument("--repeats", type=int, default=3, help="best of N timings")
    p.add_argument("--families", default="qwen2_5_vl,qwen3_vl")
    p.add_argument("--out", default=None, help="write the JSON summary here")
    a = p.parse_args(argv)
    if a.quick:
        a.num, a.repeats = 2000, 1

    import torch

    torch.set_num_threads(1)
    from data_tools.grid import load_processor_grid
    from data_tools.masks import build_masks
    from data_tools.synth import generate
    from visgrpo.data.io import load_dataset_dir, save_dataset

    with tempfile.TemporaryDirectory(prefix="masks_bench_") as tmp:
        t0 = time.perf_counter()
        save_dataset(generate(a.num, seed=0), Path(tmp) / "data")
        print(f"synth: {a.num} samples in {time.perf_counter() - t0:.1f} s")
        ds, _ = load_dataset_dir(Path(tmp) / "data")
        summary: dict = {"num_samples": a.num, "target_samples_per_s": TARGET}
        for fam in a.families.split(","):
            grid = load_processor_grid(fam)
            for label, seg in (("segmentation", True), ("boxes", False)):
                best = min(_timed(lambda g=grid, s=seg: build_masks(ds, g, use_segmentation=s, progress=False))
                           for _ in range(a.repeats))
                rate = a.num / best
                summary[f"{fam}_{label}_samples_per_s"] = round(rate, 1)
                print(f"{fam:11s} compute ({label:12s}): {rate:10.0f} samples/s ({best:.3f} s)")

            def e2e(g=grid):
                d, _ = load_dataset_dir(Path(tmp) / "data")
                out, _ = build_masks(d, g, progress=False)
                save_dataset(out, Path(tmp) / f"out_{g.family}", {"processor": g.fingerprint()},
                             overwrite=True)

            best = min(_timed(e2e) for _ in range(a.repeats))
            summary[f"{fam}_end_to_end_samples_per_s"] = round(a.num / best, 1)
            print(f"{fam:11s} end-to-end (load+build+save): {a.num / best:10.0f} samples/s ({best:.3f} s)")
    rates = [v for k, v in summary.items() if k.endswith("segmentation_samples_per_s")]
    summary["meets_target"] = bool(rates and min(rates) >= TARGET)
    print(json.dumps({"summary": summary}))
    if a.out:
        Path(a.out).write_text(json.dumps({"summary": summary}, indent=2))
    return 0


def _timed(fn) -> float:
    """Process CPU seconds of ``fn()`` (one thread: the time on one core, without the time
    spent waiting for a core on a shared machine).
    """
    t = time.process_time()
    fn()
    return time.process_time() - t


if __name__ == "__main__":
    sys.exit(main())
