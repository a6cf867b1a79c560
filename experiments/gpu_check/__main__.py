"""Run the GPU check: ``python -m experiments.gpu_check [--size 3b|7b|tiny] [--out FILE]``.

Builds a random-weight Qwen2.5-VL of a released size locally (nothing is downloaded), then:

* ``probe_exactness_<dtype>``: the attention probe vs eager ``output_attentions`` (bfloat16
  and float32 on CUDA; float32 on CPU);
* ``memory_throughput``: peak memory and time of a forward+backward with and without the
  probe (and eager ``output_attentions``), forward+backward tokens/s;
* ``train_<credit>``: DAPO steps of ``RLVRModule`` through a Lightning Trainer with each
  credit method (none, sayo, vgpo, atrl, ease), LoRA, SDPA, bfloat16 on CUDA;
* ``train_dapo_dynamic_sampling``: one DAPO step with dynamic sampling on;
* ``qlora_nf4``: one step with 4-bit nf4 base weights (CUDA and bitsandbytes only).

Each check runs guarded: a failure is recorded (with its traceback's last lines) and the
others still run. Checks not started before ``--budget`` seconds are recorded as skipped,
and a running training check stops after its current step. The JSON file (``--out``) is
rewritten atomically after every check. Without CUDA the tiny model runs on CPU in float32.
Exit status: 0 when every check that ran passed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from experiments.gpu_check.workspace import SIZES, build_model, build_rows
from visgrpo.credit import CREDIT_METHODS

NAMES = ("setup", "probe_exactness_bfloat16", "probe_exactness_float32", "memory_throughput",
         *(f"train_{credit}" for credit in CREDIT_METHODS.names()), "train_dapo_dynamic_sampling", "qlora_nf4")


def _versions() -> dict:
    import lightning
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "lightning": lightning.__version__,
           "cuda": torch.version.cuda}
    for name in ("peft", "bitsandbytes"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 (recorded, not fatal)
            out[name] = f"unavailable: {type(exc).__name__}"
    return out


def _write(path: Path, report: dict) -> None:
    """Atomic write: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="visgrpo GPU check (one JSON file of figures and pass/fail)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None,
                    help="model size (default: 3b with CUDA, tiny without)")
    ap.add_argument("--tiny", action="store_true", help="same as --size tiny")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    ap.add_argument("--out", default=None, help="JSON file (default runs/gpu_check/<size>.json; the committed "
                    "experiments/gpu_check/results/<size>.json changes only when named)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which no check starts")
    ap.add_argument("--work", default=None, help="workspace folder (default: a temporary one, removed)")
    ap.add_argument("--only", default=None, help="comma-separated check names or prefixes to run")
    ap.add_argument("--full-ft", action="store_true", help="train all weights instead of LoRA")
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    deadline = t_start + args.budget
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    size = SIZES["tiny" if args.tiny else (args.size or ("3b" if device == "cuda" else "tiny"))]
    dtype = "bfloat16" if device == "cuda" else "float32"
    out = Path(args.out) if args.out else Path("runs/gpu_check") / f"{size.name}.json"
    torch.set_float32_matmul_precision("highest")

    report = {
        "meta": {
            "command": " ".join(["python -m experiments.gpu_check", *(argv if argv is not None else sys.argv[1:])]),
            "device": (torch.cuda.get_device_name(0) if device == "cuda"
                       else f"cpu ({platform.processor() or platform.machine()})"),
            "size": size.name, "dtype": dtype, "attention": "sdpa",
            "versions": _versions(), "budget_s": args.budget,
            "work": {"image_tokens": size.image_tokens, "max_new_tokens": size.max_new_tokens,
                     "prompts_per_step": size.prompts, "generations": size.generations,
                     "micro_batch": size.micro_batch, "steps": size.steps,
                     "probe_response_tokens": size.probe_response, "lora": not args.full_ft},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "checks": {},
    }
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="visgrpo_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[gpu_check {time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    def run(name: str, fn, *a, **kw) -> None:
        if args.only and not any(name.startswith(p) for p in args.only.split(",")):
            return
        if time.monotonic() > deadline:
            report["checks"][name] = {"status": "skipped", "reason": f"time budget ({args.budget:.0f} s) spent"}
            log(f"{name}: skipped (time budget)")
            _write(out, report)
            return
        log(f"{name}: start")
        t0 = time.perf_counter()
        try:
            res = fn(*a, **kw)
            res["status"] = "pass" if res.pop("ok") else "fail"
        except Exception as exc:  # noqa: BLE001 (a failing check is recorded; the others run)
            res = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:2000],
                   "traceback": traceback.format_exc().splitlines()[-12:]}
        res["seconds"] = time.perf_counter() - t0
        if device == "cuda":
            res["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        report["checks"][name] = res
        log(f"{name}: {res['status']} in {res['seconds']:.1f} s"
            + (f" ({res['error']})" if "error" in res else ""))
        _free(device)
        _write(out, report)

    from experiments.gpu_check import checks

    state: dict = {}

    def setup() -> dict:
        state["model"] = build_model(work, size, device)
        state["train"] = build_rows(size, num=size.prompts * size.steps)
        cfg = json.loads((state["model"] / "config.json").read_text())
        return {"ok": True, "model_dir_bytes": sum(f.stat().st_size for f in state["model"].glob("*.safetensors")),
                "text_config": {k: cfg["text_config"].get(k) for k in (
                    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "vocab_size")},
                "vision_depth": cfg["vision_config"].get("depth")}

    try:
        run("setup", setup)
        if "model" not in state:  # nothing else can run: record why
            for name in (n for n in NAMES[1:] if dtype != "float32" or "bfloat16" not in n):
                report["checks"].setdefault(name, {"status": "skipped", "reason": "setup did not complete"})
            return 1
        for dt in ([dtype, "float32"] if dtype != "float32" else [dtype]):
            run(f"probe_exactness_{dt}", checks.probe_exactness, state["model"], dt, device, size)
        run("memory_throughput", checks.memory_and_throughput, state["model"], dtype, device, size)
        for credit in checks.CREDIT:
            run(f"train_{credit}", checks.train_steps, state["model"], state["train"], size, dtype,
                device, credit, deadline, lora=not args.full_ft)
        run("train_dapo_dynamic_sampling", checks.train_steps, state["model"], state["train"], size, dtype,
            device, "none", deadline, lora=not args.full_ft, steps=1, dynamic_sampling=True)
        if device != "cuda":
            report["checks"]["qlora_nf4"] = {"status": "skipped", "reason": "no CUDA"}
        else:
            try:
                import bitsandbytes  # noqa: F401
            except Exception as exc:  # noqa: BLE001
                report["checks"]["qlora_nf4"] = {"status": "skipped", "reason": f"bitsandbytes: {exc}"}
            else:
                run("qlora_nf4", checks.train_steps, state["model"], state["train"], size, dtype, device,
                    "none", deadline, lora=True, quantization="nf4", steps=1)
    finally:
        statuses = [c["status"] for c in report["checks"].values()]
        report["summary"] = {s: statuses.count(s) for s in ("pass", "fail", "skipped")}
        report["meta"]["elapsed_s"] = time.monotonic() - t_start
        _write(out, report)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        log(f"wrote {out}: {report['summary']}")
    return 0 if report["summary"]["fail"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
