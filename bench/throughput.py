"""Pretraining throughput: the whole step as ``skelcl pretrain`` runs it, against the bare LSTM step.

In one process, on the same data, steps of two kinds are timed alternately (a, b, a, b, ...), so that
load from other processes hits both alike, and the medians are compared:

  (a) bare encoder step: query LSTM forward + backward and key LSTM forward (no grad) on pre-made
      float32 tensors (N, T, M*V*C): the cost AS-CAL cannot avoid;
  (b) full step, :meth:`skelcl.train.Pretrainer.train_step`, the very code ``pretrain`` runs: gather
      the batch by index from float16 storage -> float32 -> two augmentations -> learner (query
      forward, momentum update, key forward, InfoNCE against the queue, enqueue) -> backward -> SGD
      step -> loss accumulation and NaN check. (Not timed: the progress bar, updated every 10 steps,
      and the once-per-epoch checkpoint.)

Settings (the paper's, from the bundled configs with float16 storage): ``ntu`` = ntu60-xsub (T=150,
M=2, V=25, 2x256 LSTM, batch 32, K=16384); ``sbu`` = sbu-paper (T=40, M=2, V=15, 1x256, batch 32,
K=200). Data: 40,091 random sequences (the size of NTU-60's xsub training set) stored as float16,
lengths U[T/3, T], second person absent in half of them. Random, not the synthetic generator: the
values do not change the cost, and generating 40k sequences would take longer than the benchmark.

Memory: the peak resident memory of this process, and of a child process that holds an NTU-120-sized
training set (63,026 x 150 x 2 x 25 x 3 float16, 2.8 GB) and runs a few full NTU steps (limit 6 GB).

Threads: torch's default. OpenMP's wait policy is set to PASSIVE unless OMP_WAIT_POLICY is already set:
on a machine whose cores other processes also use, spinning OpenMP threads take turns away from each
other and every fork/join can stall for a scheduler time slice, which makes step times vary 10-fold
(both (a) and (b), without changing the work they do). Pass OMP_WAIT_POLICY=ACTIVE to see it.

    python bench/throughput.py [--steps N] [--budget S] [--settings ntu,sbu] [--device cpu|cuda] [--no-memory]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP (see the docstring)

import platform
import resource
import statistics
import subprocess
import sys
import time
from copy import deepcopy
from typing import Callable

import numpy as np
import torch

from skelcl.config import Config, load_config
from skelcl.layouts import get_layout
from skelcl.store import SkeletonDataset
from skelcl.train import Pretrainer

NTU60_XSUB_TRAIN = 40_091
NTU120_XSUB_TRAIN = 63_026
MEMORY_LIMIT_GB = 6.0

SETTINGS: dict[str, dict] = {
    "ntu": {"config": "ntu60-xsub", "frames": 150, "persons": 2, "layout": "ntu25", "steps": 100, "warmup": 3},
    "sbu": {"config": "sbu-paper", "frames": 40, "persons": 2, "layout": "sbu15", "steps": 500, "warmup": 20},
}


GB = 1e9


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1024 if sys.platform != "darwin" else 1) / GB


def random_dataset(n: int, frames: int, persons: int, layout: str, seed: int = 0,
                   block: int = 512) -> SkeletonDataset:
    """n random sequences (n, T, M, V, 3) float16 with zero padding, built block by block (no float32 copy).

    A block of ``block`` random sequences is written repeatedly (rows differ in memory, which is what
    the gather sees); protocol ``xsub`` trains on all of them.
    """
    lay = get_layout(layout)
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((block, frames, persons, lay.num_joints, 3), dtype=np.float32) * 0.3)
    lens = rng.integers(max(1, frames // 3), frames + 1, size=block)
    base *= (np.arange(frames)[None, :] < lens[:, None])[:, :, None, None, None]
    if persons > 1:
        base[::2, :, 1:] = 0
    base16 = base.astype(np.float16)
    x = np.empty((n, frames, persons, lay.num_joints, 3), dtype=np.float16)
    for s in range(0, n, block):
        e = min(n, s + block)
        x[s:e] = base16[: e - s]
    lengths = np.resize(lens, n).astype(np.int64)
    idx = np.arange(n)
    return SkeletonDataset(x=x, lengths=lengths, labels=np.zeros(n, dtype=np.int64), layout=lay,
                           protocols={"xsub": (idx, idx[:0])}, name=f"random-{n}")


def setting_config(name: str, device: str) -> Config:
    s = SETTINGS[name]
    return load_config(s["config"], [
        "data.protocol=xsub", f"data.preprocess.frames={s['frames']}", f"data.preprocess.persons={s['persons']}",
        "data.preprocess.dtype=float16", f"train.device={device}", "train.tensorboard=false"])


def bare_step(tr: Pretrainer) -> Callable[[], None]:
    """(a): copies of the learner's two LSTMs on one pre-made, pre-augmented float32 batch."""
    rnn_q = deepcopy(tr.learner.encoder_q.rnn)
    rnn_k = deepcopy(tr.learner.encoder_k.rnn) if tr.learner.encoder_k is not None else deepcopy(rnn_q)
    for p in rnn_k.parameters():
        p.requires_grad_(False)
    sel = torch.arange(tr.local_batch_size)
    xb, lb, _ = tr.data.get(sel)
    g = torch.Generator(device=tr.aug_gen.device).manual_seed(1)
    n, t = xb.shape[:2]
    xq = tr.augment(xb, lb, g).reshape(n, t, -1).contiguous()
    xk = tr.augment(xb, lb, g).reshape(n, t, -1).contiguous()

    def step() -> None:
        rnn_q.zero_grad(set_to_none=True)
        q = rnn_q(xq)[0].mean(1)
        with torch.no_grad():
            k = rnn_k(xk)[0].mean(1)
        (q * k).sum().backward()

    return step


def measure(name: str, steps: int | None, device: str, budget: float) -> dict:
    s = SETTINGS[name]
    cfg = setting_config(name, device)
    t0 = time.perf_counter()
    ds = random_dataset(NTU60_XSUB_TRAIN, s["frames"], s["persons"], s["layout"])
    t_data = time.perf_counter() - t0
    tr = Pretrainer(cfg, ds)
    tr.learner.train()
    dev = tr.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    order = tr.begin_epoch(0)
    a = bare_step(tr)
    counter = {"b": 0}

    def b() -> None:
        tr.train_step(order, counter["b"] % tr.steps)
        counter["b"] += 1

    def timed(fn: Callable[[], None]) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    n_steps = steps if steps is not None else s["steps"]
    for _ in range(s["warmup"]):
        timed(a), timed(b)
    ta, tb = [], []
    t_end = time.perf_counter() + budget
    for _ in range(n_steps):
        ta.append(timed(a))
        tb.append(timed(b))
        if time.perf_counter() > t_end and len(ta) >= 5:
            break
    ma, mb = statistics.median(ta), statistics.median(tb)
    bs = tr.local_batch_size
    m = cfg.model
    return {"name": name, "T": s["frames"], "M": s["persons"], "V": ds.x.shape[3],
            "lstm": f"{m.layers}x{m.hidden}", "batch": bs, "K": cfg.contrast.queue_size,
            "a": bs / ma, "b": bs / mb, "ratio": ma / mb, "overhead_ms": (mb - ma) * 1e3,
            "steps": len(ta), "data_gb": ds.x.nbytes / GB, "data_s": t_data}


def memory_child(n: int, total: int, steps: int, device: str) -> None:
    """Hold an NTU-120-sized float16 training set (n of ``total`` sequences), run a few full NTU steps,
    print the data size and peak RSS."""
    cfg = setting_config("ntu", device)
    ds = random_dataset(max(n, total), 150, 2, "ntu25")
    ds.protocols["xsub"] = (np.arange(n), np.arange(n, len(ds)))
    tr = Pretrainer(cfg, ds)
    order = tr.begin_epoch(0)
    for b in range(steps):
        tr.train_step(order, b)
    print(f"MEMORY {ds.x.nbytes / GB:.3f} {peak_rss_gb():.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=None,
                    help="timed (a, b) pairs per setting (default: 100 ntu, 500 sbu)")
    ap.add_argument("--budget", type=float, default=90.0,
                    help="stop a setting's timing after this many seconds (at least 5 pairs)")
    ap.add_argument("--settings", default="ntu,sbu", help="comma-separated: ntu, sbu")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--no-memory", action="store_true", help="skip the NTU-120-sized memory check")
    ap.add_argument("--memory-sequences", type=int, default=NTU120_XSUB_TRAIN,
                    help="training sequences of the memory check (default: NTU-120 xsub, 63,026)")
    ap.add_argument("--memory-total", type=int, default=0,
                    help="sequences held in all (a test split besides the training set; NTU-120: 114,480)")
    ap.add_argument("--memory-steps", type=int, default=3)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_sequences, args.memory_total, args.memory_steps, args.device)
        return

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, device {args.device}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"data: {NTU60_XSUB_TRAIN:,} random float16 sequences per setting (NTU-60 xsub training-set size; "
          "random values, not the synthetic generator)\n")
    rows = []
    t_start = time.perf_counter()
    for name in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if name not in SETTINGS:
            ap.error(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")
        rows.append(measure(name, args.steps, args.device, args.budget))
        r = rows[-1]
        print(f"  {name}: {r['steps']} interleaved step pairs done "
              f"({r['data_gb']:.2f} GB float16 data built in {r['data_s']:.1f}s)", flush=True)
    head = (f"{'setting':8s} {'T':>4s} {'M':>2s} {'V':>3s} {'LSTM':>6s} {'batch':>5s} {'K':>6s} "
            f"{'(a) bare seq/s':>15s} {'(b) full seq/s':>15s} {'b/a':>6s} {'overhead ms/step':>17s} {'pairs':>6s}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['name']:8s} {r['T']:4d} {r['M']:2d} {r['V']:3d} {r['lstm']:>6s} {r['batch']:5d} {r['K']:6d} "
              f"{r['a']:15.1f} {r['b']:15.1f} {r['ratio']:6.3f} {r['overhead_ms']:17.2f} {r['steps']:6d}")
    ok = all(r["ratio"] >= 0.85 for r in rows)
    print(f"\nratio b/a >= 0.85 in every setting: {'yes' if ok else 'NO'} (medians of interleaved steps)")
    held = sum(r['data_gb'] for r in rows)
    print(f"peak RSS of this process: {peak_rss_gb():.2f} GB "
          f"(holds {held:.2f} GB of float16 data); time {time.perf_counter() - t_start:.0f}s")

    if not args.no_memory:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--device", args.device,
               "--memory-sequences", str(args.memory_sequences), "--memory-total", str(args.memory_total),
               "--memory-steps", str(args.memory_steps)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in res.stdout.splitlines() if ln.startswith("MEMORY ")), None)
        if res.returncode != 0 or line is None:
            print(f"memory check failed:\n{res.stdout}{res.stderr}")
            sys.exit(1)
        data_gb, peak = (float(v) for v in line.split()[1:])
        held = max(args.memory_sequences, args.memory_total)
        print(f"NTU-120-sized training set: {args.memory_sequences:,} of {held:,} held sequences x 150 x 2 x 25 x 3 "
              f"float16 = {data_gb:.2f} GB; "
              f"peak RSS with {args.memory_steps} full NTU steps: {peak:.2f} GB "
              f"(limit {MEMORY_LIMIT_GB:.0f} GB: {'ok' if peak < MEMORY_LIMIT_GB else 'EXCEEDED'})")


if __name__ == "__main__":
    main()
