"""Cost of the augmentations relative to one LSTM training step, on the same batch.

For a batch of 32 NTU-sized sequences (T=150, M=2, V=25, C=3; lengths U[40, 150], the second person
absent in half of them) this prints, per augmentation, the default composition [reverse, shear] and
all seven composed: the median time per batch and that time as a fraction of one AS-CAL training
step of a 2 x 256 LSTM over 150-dim inputs (forward + backward of the query encoder plus a no-grad
forward of the key encoder, batch_first). Two views are augmented per step in training, so the
pipeline's share of a step is twice the per-batch fraction shown.

    python bench/augment_cost.py [--device cpu|cuda] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from skelcl.augment import ALL_SEVEN, AUGMENTATIONS, DEFAULT_AUGMENT, build_augment, valid_mask


def timeit(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 3) -> float:
    """Median seconds per call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_batch(device: torch.device, b: int = 32, t: int = 150, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, 2, 25, 3, generator=g) * 0.3
    lengths = torch.randint(40, t + 1, (b,), generator=g)
    x = x * valid_mask(lengths, t)[:, :, None, None, None]
    x[::2, :, 1] = 0
    return x.to(device), lengths.to(device)


def lstm_step(device: torch.device, x: torch.Tensor) -> Callable[[], None]:
    """One AS-CAL step's encoder work: query forward+backward, key forward without grad."""
    q_enc = nn.LSTM(150, 256, num_layers=2, batch_first=True).to(device)
    k_enc = nn.LSTM(150, 256, num_layers=2, batch_first=True).to(device)
    inp = x.reshape(x.shape[0], x.shape[1], -1)

    def step() -> None:
        q_enc.zero_grad(set_to_none=True)
        q = q_enc(inp)[0].mean(1)
        with torch.no_grad():
            k = k_enc(inp)[0].mean(1)
        (q * k).sum().backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--repeats", type=int, default=50, help="timed calls per augmentation")
    ap.add_argument("--lstm-repeats", type=int, default=8, help="timed LSTM steps")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, lengths = make_batch(device)
    gen = torch.Generator(device=device).manual_seed(0)

    step = timeit(lstm_step(device, x), args.lstm_repeats, device, warmup=2)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {tuple(x.shape)}")
    print(f"LSTM step (2x256, query fwd+bwd + key fwd no-grad): {step * 1e3:.1f} ms\n")
    print(f"{'augmentation':32s} {'ms/batch':>9s} {'% of step':>10s}")
    cases: list[tuple[str, object]] = [(name, AUGMENTATIONS[name]()) for name in ALL_SEVEN]
    cases += [(f"default {list(DEFAULT_AUGMENT)}", build_augment(list(DEFAULT_AUGMENT))),
              ("all seven composed", build_augment(list(ALL_SEVEN)))]
    for name, op in cases:
        sec = timeit(lambda: op(x, lengths, gen), args.repeats, device)  # noqa: B023
        print(f"{name:32s} {sec * 1e3:9.3f} {100 * sec / step:9.2f}%")


if __name__ == "__main__":
    main()
