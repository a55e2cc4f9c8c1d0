"""The contrastive learner: query/momentum encoders, the key queue, InfoNCE (paper III-B).

Three paradigms (paper Table I): ``queue`` (AS-CAL: momentum key encoder + queue of past keys),
``end_to_end`` (both views through the query encoder, negatives from the same mini-batch) and
``memory_bank`` (one stored, momentum-updated representation per training sample; negatives drawn
from the bank). Structure after MoCo's builder: the queue and its pointer are buffers, so they are
saved in the state dict and move with ``.to(device)``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ContrastConfig, ModelConfig
from .errors import SettingError
from .augment import valid_mask
from .encoder import SequenceDecoder, SequenceEncoder, build_encoder

PARADIGMS = ("queue", "end_to_end", "memory_bank")
HEADS = ("none", "linear", "mlp")
POOLS = ("tap", "last", "tap_max")


def info_nce(q: torch.Tensor, k_pos: torch.Tensor, negatives: torch.Tensor | None, tau: float,
             in_batch: bool = False, exclude: torch.Tensor | None = None,
             positives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE (paper Eq. 12), mean over the batch.

    Args:
        q: (N, D) queries.
        k_pos: (N, D) positive keys.
        negatives: (K, D) negative keys shared by all queries (queue or bank sample), or None.
        tau: temperature.
        in_batch: use the other samples' keys of the batch as negatives (end-to-end paradigm):
            logits are q @ k_pos.T and the positive of query i is column i.
        exclude: (N, K) bool, queue entries left out of query i's denominator (another recording of
            the query's own performance: a false negative by construction).
        positives: (N, K) bool, queue entries counted as further positives of query i (mined
            neighbours): the loss is -log of the softmax mass on the key and on these.
    """
    if in_batch:
        logits = q @ k_pos.t() / tau
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, target)
    pos = (q * k_pos).sum(1, keepdim=True)
    neg = q @ negatives.t() if negatives is not None else q.new_zeros(q.shape[0], 0)
    logits = torch.cat([pos, neg], 1) / tau
    if exclude is not None:
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(exclude, float("-inf"))], 1)
    if positives is None:
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
    if exclude is not None:
        positives = positives & ~exclude
    is_pos = torch.cat([torch.ones_like(positives[:, :1]), positives], 1)
    return (logits.logsumexp(1) - logits.masked_fill(~is_pos, float("-inf")).logsumexp(1)).mean()


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid frames: recon (N, T, D) against x (N, T, ...) flattened
    to (N, T, D), lengths (N,). Padding frames count for nothing."""
    n, t = x.shape[:2]
    target = x.reshape(n, t, -1)
    mask = valid_mask(lengths.to(x.device), t).to(x.dtype)[..., None]  # (N, T, 1)
    err = (recon - target).pow(2) * mask
    return err.sum() / (mask.sum() * target.shape[-1]).clamp(min=1)


def mine_positives(k: torch.Tensor, queue: torch.Tensor, top: int,
                   exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) bool: for each key k_i (N, D), its ``top`` most similar queue entries (K, D) by dot
    product, never an excluded one. These are taken as probable same-action samples (nearest-
    neighbour mining, as in CrosSCLR / AimCLR), found with the momentum encoder, without labels."""
    sim = k @ queue.t()
    if exclude is not None:
        sim = sim.masked_fill(exclude, float("-inf"))
    top = min(int(top), queue.shape[0])
    mask = torch.zeros_like(sim, dtype=torch.bool)
    if top < 1:
        return mask
    idx = sim.topk(top, dim=1).indices
    mask.scatter_(1, idx, True)
    if exclude is not None:
        mask &= ~exclude  # fewer than ``top`` allowed entries: the -inf picks are dropped
    return mask


def build_head(kind: str, dim_in: int, dim_out: int) -> nn.Module:
    """Projection head (paper V-A1): none, linear, or 2-layer MLP (Linear-ReLU-Linear)."""
    if kind == "none":
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(dim_in, dim_out)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(inplace=True), nn.Linear(dim_in, dim_out))
    raise SettingError(f"unknown head {kind!r}; known: {', '.join(HEADS)}")


def _gather_all(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank (no gradient) when running distributed, else ``t``."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return t
    world = torch.distributed.get_world_size()
    if world == 1:
        return t
    out = [torch.empty_like(t) for _ in range(world)]
    torch.distributed.all_gather(out, t.contiguous())
    return torch.cat(out, 0)


class KeyQueue(nn.Module):
    """Ring buffer of the last K keys (K, D): enqueue the newest batch, overwrite the oldest.

    With ``track_groups`` it also keeps each key's group id (K,) int64 (-1 for the random initial
    keys), so a query can leave out keys of its own group (its own performance, any camera).
    """

    def __init__(self, size: int, dim: int, normalize: bool, generator: torch.Generator | None = None,
                 track_groups: bool = False) -> None:
        super().__init__()
        if size < 1:
            raise SettingError("queue size must be >= 1")
        if normalize:
            init = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        else:
            bound = 1.0 / (dim / 3) ** 0.5  # as the released code: uniform in +-1/sqrt(D/3)
            init = (torch.rand(size, dim, generator=generator) * 2 - 1) * bound
        self.register_buffer("keys", init)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        # None when not tracked: a registered None buffer is left out of the state dict
        self.register_buffer("groups", torch.full((size,), -1, dtype=torch.long) if track_groups else None)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        """Write (B, D) keys (and their (B,) group ids) at the pointer, wrapping around; B may
        exceed K (the last K win)."""
        size = self.keys.shape[0]
        k = k.detach().to(self.keys.dtype)[-size:]
        idx = (self.ptr + torch.arange(k.shape[0], device=k.device)) % size
        self.keys[idx] = k
        if self.groups is not None:
            if groups is None:
                raise ValueError("this queue tracks groups: enqueue needs the keys' group ids")
            self.groups[idx] = groups.to(self.groups.device, torch.long)[-size:]
        self.ptr.copy_((self.ptr + k.shape[0]) % size)

    def ordered(self) -> torch.Tensor:
        """(K, D) keys from oldest to newest (for tests and inspection)."""
        return torch.roll(self.keys, -int(self.ptr), 0)


class ContrastiveLearner(nn.Module):
    """AS-CAL and its two comparison paradigms.

    Inputs per step: two augmented views xq, xk (N, T, M, V, C), their lengths (N,), and the
    samples' dataset indices (N,) (used by the memory bank). Output: the loss (scalar tensor).
    """

    def __init__(self, input_dim: int, model: ModelConfig, cfg: ContrastConfig, num_samples: int = 0,
                 seed: int = 0, persons: int = 1) -> None:
        super().__init__()
        if cfg.paradigm not in PARADIGMS:
            raise SettingError(f"unknown paradigm {cfg.paradigm!r}; known: {', '.join(PARADIGMS)}")
        if cfg.pool not in POOLS:
            raise SettingError(f"unknown contrast.pool {cfg.pool!r}; known: {', '.join(POOLS)}")
        self.cfg = cfg
        self.encoder_q: SequenceEncoder = build_encoder(input_dim, model, persons=persons)
        feat = self.encoder_q.output_dim * (2 if cfg.pool == "tap_max" else 1)
        self.head_q = build_head(cfg.head, feat, cfg.head_dim)
        self.dim = feat if cfg.head == "none" else cfg.head_dim
        gen = torch.Generator().manual_seed(seed + 12345)
        self.encoder_k: SequenceEncoder | None = None
        self.head_k: nn.Module | None = None
        self.queue: KeyQueue | None = None
        if cfg.paradigm == "queue":
            self.encoder_k = copy.deepcopy(self.encoder_q)
            self.head_k = copy.deepcopy(self.head_q)
            for p in list(self.encoder_k.parameters()) + list(self.head_k.parameters()):
                p.requires_grad_(False)
            self.queue = KeyQueue(cfg.queue_size, self.dim, cfg.normalize, gen,
                                  track_groups=cfg.exclude_group)
        elif cfg.paradigm == "memory_bank":
            if num_samples < 1:
                raise SettingError("memory_bank needs num_samples (the training-set size)")
            bank = KeyQueue(num_samples, self.dim, cfg.normalize, gen).keys
            self.register_buffer("bank", bank)
        self.decoder: SequenceDecoder | None = None
        if cfg.reconstruct < 0:
            raise SettingError(f"contrast.reconstruct is a loss weight, >= 0; got {cfg.reconstruct}")
        if cfg.reconstruct > 0:
            self.decoder = SequenceDecoder(self.encoder_q.output_dim, input_dim, hidden=model.hidden)
        self.last_recon: torch.Tensor | None = None  # the last step's reconstruction error (unweighted)
        if cfg.mine_k < 0 or cfg.mine_after < 0:
            raise SettingError(f"contrast.mine_k and contrast.mine_after must be >= 0, got {cfg.mine_k}, "
                               f"{cfg.mine_after}")
        if cfg.paradigm != "queue" and (cfg.exclude_group or cfg.mine_k or cfg.symmetric
                                        or cfg.cross_view_both or cfg.reconstruct):
            raise SettingError("contrast.exclude_group, contrast.mine_k, contrast.symmetric, "
                               "contrast.cross_view_both and contrast.reconstruct need paradigm queue")
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Tell the learner which (0-based) epoch starts: mined positives are used from
        ``contrast.mine_after`` on."""
        self.mining = self.cfg.mine_k > 0 and epoch >= self.cfg.mine_after

    # --- momentum encoder -------------------------------------------------------------
    def key_params(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        assert self.encoder_k is not None and self.head_k is not None
        qs = list(self.encoder_q.parameters()) + list(self.head_q.parameters())
        ks = list(self.encoder_k.parameters()) + list(self.head_k.parameters())
        return ks, qs

    @torch.no_grad()
    def momentum_update(self, momentum: float | None = None) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (paper Eq. 9); buffers (BatchNorm stats) are copied.
        ``momentum``: m (default ``contrast.momentum``; distillation passes ``distill.ema``)."""
        if self.encoder_k is None:
            return
        ks, qs = self.key_params()
        m = self.cfg.momentum if momentum is None else momentum
        torch._foreach_lerp_(ks, qs, 1.0 - m)
        for bk, bq in zip(self.encoder_k.buffers(), self.encoder_q.buffers()):
            bk.copy_(bq)

    # --- forward ------------------------------------------------------------------------
    def _embed(self, enc: nn.Module, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
               recon: list[torch.Tensor] | None = None, keep: list[Any] | None = None) -> torch.Tensor:
        """(N, D) contrasted embedding of x; with ``recon`` (a list) and a decoder, also appends the
        reconstruction error of x from its TAP (a scalar tensor); ``keep`` (a list) receives the
        encoder's output."""
        out = enc(x, lengths)
        if keep is not None:
            keep.append(out)
        if recon is not None and self.decoder is not None:
            recon.append(reconstruction_loss(self.decoder(out.pooled, x.shape[1]), x, lengths))
        if self.cfg.pool == "tap_max":
            z = head(torch.cat([out.pooled, out.peak], 1))
        else:
            z = head(out.pooled if self.cfg.pool == "tap" else out.last)
        return F.normalize(z, dim=1) if self.cfg.normalize else z

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, lengths: torch.Tensor,
                index: torch.Tensor | None = None, lengths_k: torch.Tensor | None = None,
                groups: torch.Tensor | None = None, xk2: torch.Tensor | None = None,
                lengths_k2: torch.Tensor | None = None, outputs: list[Any] | None = None) -> torch.Tensor:
        """InfoNCE of queries xq against keys xk, both (N, T, M, V, C); ``lengths`` (N,) are the
        queries' valid frames and ``lengths_k`` the keys' (default: the same, as for two
        augmentations of one sample; they differ when the key is another camera's recording).
        ``groups`` (N,) int64: the samples' performance ids, needed by ``contrast.exclude_group``.
        ``xk2`` (N, T, M, V, C), ``lengths_k2`` (N,): a second positive view of each sample
        (``contrast.cross_view_both``); its InfoNCE term is averaged with the first one's.
        ``outputs`` (a list, queue paradigm only) receives the query encoder's output on ``xq``, so a
        caller can add its own term on the same forward pass (``distill.contrast``)."""
        cfg = self.cfg
        lengths_k = lengths if lengths_k is None else lengths_k
        if cfg.paradigm == "queue":
            assert self.encoder_k is not None and self.head_k is not None and self.queue is not None
            views = [(xq, lengths), (xk, lengths_k)]
            if xk2 is not None:
                views.append((xk2, lengths if lengths_k2 is None else lengths_k2))
            pairs = [(0, j) for j in range(1, len(views))]  # (query view, key view)
            if cfg.symmetric:
                pairs += [(j, 0) for j in range(1, len(views))]
            exclude = None
            with torch.no_grad():
                self.momentum_update()
                keys = {j: self._embed(self.encoder_k, self.head_k, *views[j]) for j in {b for _, b in pairs}}
                negatives = self.queue.keys.clone().detach()
                if self.queue.groups is not None:
                    if groups is None:
                        raise ValueError("contrast.exclude_group needs the samples' group ids")
                    groups = groups.to(xq.device)
                    exclude = groups[:, None] == self.queue.groups[None, :]
                positives = {j: mine_positives(k, negatives, cfg.mine_k, exclude) if self.mining else None
                             for j, k in keys.items()}
            recon: list[torch.Tensor] = []
            queries = {i: self._embed(self.encoder_q, self.head_q, *views[i], recon=recon,
                                      keep=outputs if i == 0 else None)
                       for i in sorted({a for a, _ in pairs})}
            loss = torch.stack([info_nce(queries[a], keys[b], negatives, cfg.temperature, exclude=exclude,
                                         positives=positives[b]) for a, b in pairs]).mean()
            if recon:
                rec = torch.stack(recon).mean()
                self.last_recon = rec.detach()
                loss = loss + cfg.reconstruct * rec
            self.queue.enqueue(_gather_all(keys[1]), _gather_all(groups) if exclude is not None else None)
            return loss
        if outputs is not None:
            raise SettingError("the query encoder's output is kept by paradigm queue only")
        q = self._embed(self.encoder_q, self.head_q, xq, lengths)  # (N, D)
        if cfg.paradigm == "end_to_end":
            k = self._embed(self.encoder_q, self.head_q, xk, lengths_k)
            return info_nce(q, k, None, cfg.temperature, in_batch=True)
        # memory bank: positive = the sample's stored representation, negatives = a random draw
        if index is None:
            raise ValueError("memory_bank needs the samples' dataset indices")
        index = index.to(q.device)
        bank: torch.Tensor = self.bank
        pos = bank[index].detach()
        k_neg = min(cfg.queue_size, bank.shape[0])
        neg_idx = torch.randint(0, bank.shape[0], (k_neg,), device=q.device)
        loss = info_nce(q, pos, bank[neg_idx].detach(), cfg.temperature)
        with torch.no_grad():  # data-parallel: every rank applies every rank's updates (banks stay equal)
            index, qd = _gather_all(index), _gather_all(q.detach())
            new = bank[index] * cfg.bank_momentum + qd * (1 - cfg.bank_momentum)
            bank[index] = F.normalize(new, dim=1) if cfg.normalize else new
        return loss
