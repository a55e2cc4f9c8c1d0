"""Recurrent sequence encoders with temporal average pooling (TAP).

AS-CAL encodes a skeleton sequence frame by frame with an LSTM (paper Eqs. 7-8) and averages the
hidden states over time (TAP, Eqs. 10-11). GRU and plain RNN cells are here for the supervised
baselines of Tables III and V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .augment import persons_present, swap_two_persons, valid_mask
from .errors import SettingError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
PERSON_POOLS = ("concat", "mean", "symmetric")
FRAME_FEATURES = ("coords", "distances", "coords+distances")


def pairwise_distances(x: torch.Tensor, coords: int = 3) -> torch.Tensor:
    """x (N, T, D) frames of D = P * coords values: (N, T, P * (P - 1) / 2) distances between every
    pair of the P points of a frame (upper triangle, row-major).

    Distances do not change when the skeleton is rotated or moved, so a camera the encoder never saw
    gives the same input up to sensor noise: on N-UCLA (test camera v03) a logistic regression on
    distances reaches 71.8 against 63.8 on coordinates (docs/RESULTS.md, tenth round).
    """
    n, t, d = x.shape
    if d % coords:
        raise ValueError(f"frame size {d} is not a multiple of {coords} coordinates")
    pts = x.reshape(n * t, d // coords, coords)
    i, j = torch.triu_indices(pts.shape[1], pts.shape[1], 1, device=x.device)
    diff = pts[:, i] - pts[:, j]
    # the epsilon keeps the gradient finite where two points coincide (absent persons are all zero)
    return (diff.pow(2).sum(-1) + 1e-12).sqrt().reshape(n, t, -1)


def frame_feature_dim(frame_dim: int, features: str, coords: int = 3) -> int:
    """Input size per frame after :func:`pairwise_distances` etc. for a raw frame of ``frame_dim``."""
    if features not in FRAME_FEATURES:
        raise SettingError(f"model.frame_features must be one of {', '.join(FRAME_FEATURES)}, got {features!r}")
    if features == "coords":
        return frame_dim
    if frame_dim % coords:
        raise SettingError(f"model.frame_features={features!r} needs frames of {coords}-D points; "
                           f"a frame has {frame_dim} values")
    p = frame_dim // coords
    pairs = p * (p - 1) // 2
    return pairs if features == "distances" else frame_dim + pairs


def with_velocity(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (N, T, ...) with time on dim 1, mask (N, T): x with x[t+1] - x[t] appended on the last dim.

    The velocity is zero at each sequence's last valid frame and in the padding.
    """
    vel = torch.zeros_like(x)
    m = mask[:, 1:].to(x.dtype).reshape(*mask[:, 1:].shape, *([1] * (x.dim() - 2)))
    vel[:, :-1] = (x[:, 1:] - x[:, :-1]) * m
    return torch.cat([x, vel], -1)


def person_weights(x: torch.Tensor) -> torch.Tensor:
    """(N, M) weights averaging over the persons present in x (N, T, M, V, C); an all-zero sample
    gives its first (zero) person weight 1."""
    present = persons_present(x)
    present[:, 0] |= ~present.any(1)
    return present.to(x.dtype) / present.sum(1, keepdim=True)


def masked_max(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(N, E) maximum of states (N, T, E) over each sequence's first ``lengths`` (N,) frames (at
    least one frame)."""
    valid = valid_mask(lengths.to(states.device).clamp(min=1), states.shape[1])
    return states.masked_fill(~valid[..., None], float("-inf")).amax(1)


@dataclass
class EncoderOutput:
    """What an encoder returns for a batch of N sequences of T frames.

    Attributes:
        states: (N, T, E) hidden states of the last layer (zero past each length when masked).
        pooled: (N, E) temporal average of ``states`` (TAP): the CAE representation.
        last: (N, E) hidden state at each sequence's last valid frame (h_T of the paper).
        peak: (N, E) maximum of ``states`` over the valid frames (temporal max pooling), computed
            on first access from ``peak_of`` (pretraining never reads it, so it costs nothing there).
    """

    states: torch.Tensor
    pooled: torch.Tensor
    last: torch.Tensor
    peak_of: Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def peak(self) -> torch.Tensor:
        if self.peak_of is None:
            raise ValueError("this encoder output has no temporal max (peak_of is not set)")
        return self.peak_of()


class SequenceEncoder(nn.Module):
    """Multi-layer RNN over flattened frames, with TAP.

    Input x: (N, T, M, V, C) (or already flattened (N, T, D)), lengths (N,).
    Each frame's M*V*C coordinates form one input vector of size D.

    Args:
        input_dim: D = M * V * C.
        hidden: units per layer per direction.
        layers: stacked layers.
        cell: ``lstm`` | ``gru`` | ``rnn``.
        bidirectional: run both directions (output size doubles); padding is excluded by packing.
        tap: ``masked`` averages over the valid frames only; ``all`` averages over all T frames as the
            released code does (padding included).
        input_norm: ``none`` or ``batchnorm`` (BatchNorm over the D inputs, as CMD does).
        dropout: dropout between stacked layers.
        motion: append each frame's velocity (x[t+1] - x[t], zero at the last valid frame) to its
            coordinates, so the RNN sees position and motion (input size 2D).
        persons: M, the number of person slots in the input (needed by ``person_pool="mean"``).
        person_pool: ``concat`` feeds all persons' joints as one frame vector (the paper);
            ``mean`` runs the same RNN over each present person separately and averages their
            states, so the encoding does not depend on the order the sensor listed the persons in;
            ``symmetric`` runs the concatenated frame vector in both person orders (persons 1 and 2
            swapped where a second person is present) and averages the two outputs: order-free
            like ``mean``, but the RNN still sees both persons together (interactions). Twice the
            compute for two-person data.
        frame_features: what each frame gives the RNN: ``coords`` (the paper), ``distances``
            between every pair of joints in the frame (all persons' joints together; rotation and
            translation invariant, :func:`pairwise_distances`), or ``coords+distances``. Computed
            inside the encoder from the (augmented) coordinates, so augmentations act on them too.
    """

    def __init__(self, input_dim: int, hidden: int = 256, layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, tap: str = "masked", input_norm: str = "none",
                 dropout: float = 0.0, motion: bool = False, persons: int = 1,
                 person_pool: str = "concat", frame_features: str = "coords") -> None:
        super().__init__()
        if person_pool not in PERSON_POOLS:
            raise SettingError(f"person_pool must be one of {', '.join(PERSON_POOLS)}, got {person_pool!r}")
        if person_pool == "mean" and input_dim % max(persons, 1):
            raise SettingError(f"input_dim {input_dim} is not divisible by persons {persons}")
        self.persons = max(int(persons), 1)
        self.person_pool = person_pool
        if cell not in CELLS:
            raise SettingError(f"unknown cell {cell!r}; known: {', '.join(CELLS)}")
        if tap not in ("masked", "all"):
            raise SettingError(f"tap must be 'masked' or 'all', got {tap!r}")
        if input_norm not in ("none", "batchnorm"):
            raise SettingError(f"input_norm must be 'none' or 'batchnorm', got {input_norm!r}")
        self.input_dim = input_dim
        self.motion = motion
        self.tap = tap
        self.bidirectional = bidirectional
        frame_dim = input_dim // self.persons if person_pool == "mean" else input_dim
        self.frame_features = frame_features
        rnn_in = frame_feature_dim(frame_dim, frame_features) * (2 if motion else 1)
        self.norm = nn.BatchNorm1d(rnn_in) if input_norm == "batchnorm" else None
        self.rnn = CELLS[cell](rnn_in, hidden, num_layers=layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.output_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if self.frame_features != "coords" and x.dim() == 5 and x.shape[-1] != 3:
            # the flattened frame no longer says where one point ends; 2-D poses would be misread
            raise SettingError(f"model.frame_features={self.frame_features!r} needs 3-D joints (C=3), "
                               f"got C={x.shape[-1]}; use model.frame_features: coords")
        if self.person_pool == "mean":
            return self._forward_per_person(x, lengths)
        if self.person_pool == "symmetric" and x.dim() == 5 and x.shape[2] >= 2:
            return self._forward_symmetric(x, lengths)
        return self._forward_flat(x, lengths)

    def _forward_symmetric(self, x: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """x (N, T, M, V, C): the mean of the outputs for both orders of persons 1 and 2.

        One-person samples are not swapped, so their output is their plain output.
        """
        n = x.shape[0]
        both = self._forward_flat(torch.cat([x, swap_two_persons(x, lengths)], 0),
                                  torch.cat([lengths, lengths], 0).to(x.device))

        def avg(a: torch.Tensor) -> torch.Tensor:
            return (a[:n] + a[n:]) / 2

        return EncoderOutput(states=avg(both.states), pooled=avg(both.pooled), last=avg(both.last),
                             peak_of=lambda: avg(both.peak))

    def _forward_per_person(self, x: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """x (N, T, M, V, C): each person through the RNN, states averaged over present persons."""
        if x.dim() != 5 or x.shape[2] != self.persons:
            raise ValueError(f"person_pool='mean' expects (N, T, {self.persons}, V, C) input, got {tuple(x.shape)}")
        n, t, m = x.shape[:3]
        w = person_weights(x)  # (N, M)
        xp = x.permute(0, 2, 1, 3, 4).reshape(n * m, t, -1)
        out = self._forward_flat(xp, lengths.to(x.device).repeat_interleave(m))

        def pool(a: torch.Tensor) -> torch.Tensor:
            a = a.reshape(n, m, *a.shape[1:])
            return (a * w.reshape(n, m, *([1] * (a.dim() - 2)))).sum(1)

        return EncoderOutput(states=pool(out.states), pooled=pool(out.pooled), last=pool(out.last),
                             peak_of=lambda: pool(out.peak))

    def _forward_flat(self, x: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        n, t = x.shape[:2]
        x = x.reshape(n, t, -1)
        if x.shape[-1] * (self.persons if self.person_pool == "mean" else 1) != self.input_dim:
            raise ValueError(f"encoder expects {self.input_dim} inputs per frame, got {x.shape[-1]}")
        lengths = lengths.to(x.device)
        mask = valid_mask(lengths, t)  # (N, T)
        if self.frame_features != "coords":
            dist = pairwise_distances(x) * mask[..., None]
            x = dist if self.frame_features == "distances" else torch.cat([x, dist], -1)
        if self.motion:
            x = with_velocity(x, mask)
        if self.norm is not None:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2) * mask[..., None]
        if self.bidirectional and bool((lengths < t).any()):
            # packing keeps the backward direction from starting in the padding; without padding
            # (``resample_all``) the plain call gives the same states, faster
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = self.rnn(packed)
            states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        else:
            states, _ = self.rnn(x)
        if self.tap == "masked":
            states = states * mask[..., None]
            pooled = states.sum(1) / lengths.clamp(min=1)[:, None].to(states.dtype)
        else:
            pooled = states.mean(1)
        last_idx = (lengths.clamp(min=1) - 1).view(n, 1, 1).expand(n, 1, states.shape[-1])
        last = states.gather(1, last_idx).squeeze(1)
        return EncoderOutput(states=states, pooled=pooled, last=last,
                             peak_of=lambda: masked_max(states, lengths))


class SequenceDecoder(nn.Module):
    """Rebuild a whole sequence from one code vector (the reconstruction term of
    ``contrast.reconstruct``).

    A GRU whose initial state is a linear map of the code and whose input is only the frame's
    position (t / T), so every detail of the T frames has to come from the code: the encoder is
    pushed to keep in its pooled representation what a contrastive loss alone may drop (the
    fine motion of P&C, Su et al. 2020, which trains such a decoder alone).

    Input: code (N, E), frames T. Output: (N, T, D) reconstructed frame vectors.
    """

    def __init__(self, code_dim: int, out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.init = nn.Linear(code_dim, hidden)
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, code: torch.Tensor, frames: int) -> torch.Tensor:
        n = code.shape[0]
        pos = torch.linspace(0.0, 1.0, frames, device=code.device, dtype=code.dtype)
        h0 = torch.tanh(self.init(code))[None]  # (1, N, H)
        states, _ = self.rnn(pos.view(1, frames, 1).expand(n, frames, 1).contiguous(), h0)
        return self.out(states)


ENCODERS = ("rnn", "gcn")


def build_encoder(input_dim: int, cfg: "object", persons: int = 1) -> nn.Module:
    """Build from a :class:`skelcl.config.ModelConfig`-like object; ``persons`` is M of the data.

    ``encoder: gcn`` needs ``cfg.graph`` (the bone list; pretraining fills it from the layout).
    """
    kind = getattr(cfg, "encoder", "rnn")
    if kind not in ENCODERS:
        raise SettingError(f"model.encoder must be one of {', '.join(ENCODERS)}, got {kind!r}")
    if kind != "gcn" and getattr(cfg, "bone_input", False):
        raise SettingError("model.bone_input needs the skeleton graph: it applies to model.encoder: gcn")
    if kind == "gcn":
        from .graph import GraphEncoder

        if cfg.frame_features != "coords":
            raise SettingError("model.frame_features applies to the rnn encoder; the gcn encoder reads "
                               "coordinates (set model.frame_features: coords)")
        bones = [tuple(b) for b in cfg.graph]
        if not bones or any(len(b) != 2 for b in bones):
            raise SettingError("model.encoder: gcn needs model.graph, the (child, parent) bone pairs "
                               "(filled from the dataset's joint layout when pretraining)")
        joints = int(getattr(cfg, "joints", 0)) or max(max(b) for b in bones) + 1
        return GraphEncoder(input_dim, bones, joints, channels=cfg.channels, strides=cfg.strides,
                            kernel=cfg.kernel, persons=persons, motion=cfg.motion, tap=cfg.tap,
                            dropout=cfg.dropout, bone_input=cfg.bone_input)
    return SequenceEncoder(input_dim, hidden=cfg.hidden, layers=cfg.layers, cell=cfg.cell,
                           bidirectional=cfg.bidirectional, tap=cfg.tap, input_norm=cfg.input_norm,
                           dropout=cfg.dropout, motion=cfg.motion, persons=persons,
                           person_pool=cfg.person_pool, frame_features=cfg.frame_features)
