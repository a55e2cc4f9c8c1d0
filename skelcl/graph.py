"""A compact spatial-temporal graph convolution encoder (ST-GCN style), with TAP.

The recurrent encoder sees a frame as one flat vector, so it must learn from ~1000 sequences which
coordinates belong to which limb. A graph convolution shares weights over joints and mixes
neighbours along the skeleton's bones, the inductive bias behind most recent skeleton methods.
This one is small enough for a CPU: a few blocks of (graph convolution over joints -> temporal
convolution over frames), strided in time, then the mean over joints gives per-frame states that
TAP averages, exactly as for the RNN (:class:`skelcl.encoder.EncoderOutput`).

Graph: two fixed partitions, the joints themselves and their bone neighbours (symmetrically
normalised), plus a learned additive adjacency per block (zero at start) so that the encoder can
link joints the bones do not (the two hands).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .augment import valid_mask
from .encoder import EncoderOutput, masked_max, person_weights, with_velocity
from .errors import SettingError


def graph_partitions(bones: Sequence[Sequence[int]], joints: int) -> torch.Tensor:
    """(2, V, V): identity and the symmetrically normalised bone adjacency D^-1/2 A D^-1/2."""
    a = torch.zeros(joints, joints)
    for i, j in bones:
        if not (0 <= i < joints and 0 <= j < joints):
            raise SettingError(f"bone ({i}, {j}) is outside the {joints} joints")
        if i != j:
            a[i, j] = a[j, i] = 1.0
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    return torch.stack([torch.eye(joints), inv[:, None] * a * inv[None, :]])


class GraphBlock(nn.Module):
    """(N, C_in, T, V) -> (N, C_out, ceil(T / stride), V): graph conv, BN, ReLU, temporal conv, BN,
    residual, ReLU."""

    def __init__(self, c_in: int, c_out: int, partitions: torch.Tensor, stride: int = 1,
                 kernel: int = 9, dropout: float = 0.0) -> None:
        super().__init__()
        k, v, _ = partitions.shape
        self.k, self.c_out = k, c_out
        self.register_buffer("partitions", partitions.clone())
        self.learned = nn.Parameter(torch.zeros(k, v, v))
        self.spatial = nn.Conv2d(c_in * k, c_out, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.temporal = nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), (kernel // 2, 0))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout)
        if c_in == c_out and stride == 1:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        adj = (self.partitions + self.learned).permute(1, 0, 2).reshape(v, self.k * v)  # (V, K*V)
        # neighbours first (on the fewer input channels), then one 1x1 conv over the K partitions
        y = (x @ adj).view(n, c, t, self.k, v).permute(0, 3, 1, 2, 4).reshape(n, self.k * c, t, v)
        y = torch.relu(self.bn1(self.spatial(y)))
        y = self.bn2(self.temporal(self.drop(y)))
        return torch.relu(y + self.residual(x))


class GraphEncoder(nn.Module):
    """Input x: (N, T, M, V, C), lengths (N,). Each present person runs through the same blocks;
    their per-frame states are averaged (order-free, like ``person_pool: mean``).

    Args:
        input_dim: M * V * C (checked against ``bones`` and ``persons``).
        bones: (child, parent) joint pairs: the skeleton graph (``layout.bones``). The convolution
            reads them as undirected edges; ``bone_input`` reads the direction and refuses a joint
            listed as the child of two joints.
        joints: V.
        channels: output channels of each block; the last is the feature size E.
        strides: temporal stride of each block (the states have T / prod(strides) frames).
        kernel: temporal kernel size (odd).
        persons: M.
        motion: append each frame's velocity to its coordinates (2C input channels).
        bone_input: append each joint's bone vector (the joint minus its parent in ``bones``; zero at
            a root) to its coordinates, before ``motion`` (which then adds the bones' velocity too):
            the joint and bone streams of two-stream graph networks, fused at the input.
        tap: ``masked`` averages the valid (downsampled) frames, ``all`` every frame.
        dropout: before each temporal convolution.
    """

    def __init__(self, input_dim: int, bones: Sequence[Sequence[int]], joints: int,
                 channels: Sequence[int] = (64, 128, 256), strides: Sequence[int] = (2, 2, 1),
                 kernel: int = 9, persons: int = 1, motion: bool = False, tap: str = "masked",
                 dropout: float = 0.0, bone_input: bool = False) -> None:
        super().__init__()
        self.persons = max(int(persons), 1)
        if joints < 1 or input_dim % (self.persons * joints):
            raise SettingError(f"input_dim {input_dim} is not persons ({self.persons}) x joints ({joints}) x C")
        if not channels or len(channels) != len(strides):
            raise SettingError(f"model.channels ({list(channels)}) and model.strides ({list(strides)}) "
                               "need one entry per block")
        if any(int(c) < 1 for c in channels) or any(int(s) < 1 for s in strides):
            raise SettingError("model.channels and model.strides must be positive")
        if kernel < 1 or kernel % 2 == 0:
            raise SettingError(f"model.kernel must be odd and positive, got {kernel}")
        if tap not in ("masked", "all"):
            raise SettingError(f"tap must be 'masked' or 'all', got {tap!r}")
        self.input_dim = input_dim
        self.joints = joints
        self.coords = input_dim // (self.persons * joints)
        self.motion = motion
        self.bone_input = bone_input
        self.tap = tap
        self.strides = [int(s) for s in strides]
        parts = graph_partitions(bones, joints)  # refuses a bone outside the joints
        parent = list(range(joints))  # a joint that is no bone's child is its own parent: zero bone
        listed: dict[int, int] = {}
        for child, par in bones:
            child, par = int(child), int(par)
            if bone_input and listed.get(child, par) != par:  # a bone vector needs one parent per joint
                raise SettingError(f"model.bone_input: joint {child} is listed as the child of both {listed[child]} "
                                   f"and {par}; give model.graph as [child, parent] pairs of a tree")
            listed[child] = parent[child] = par
        self.register_buffer("parent", torch.tensor(parent, dtype=torch.long), persistent=False)
        c_in = self.coords * (2 if bone_input else 1) * (2 if motion else 1)
        self.data_norm = nn.BatchNorm1d(c_in * joints)
        blocks = []
        for c, s in zip(channels, self.strides):
            blocks.append(GraphBlock(c_in, int(c), parts, stride=s, kernel=kernel, dropout=dropout))
            c_in = int(c)
        self.blocks = nn.ModuleList(blocks)
        self.output_dim = int(channels[-1])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if x.dim() != 5 or x.shape[2] != self.persons or x.shape[3] != self.joints:
            raise ValueError(f"graph encoder expects (N, T, {self.persons}, {self.joints}, C) input, "
                             f"got {tuple(x.shape)}")
        n, t, m, v, c = x.shape
        lengths = lengths.to(x.device)
        w = person_weights(x)  # (N, M)
        mask = valid_mask(lengths, t)  # (N, T)
        x = x * mask[:, :, None, None, None].to(x.dtype)
        if self.bone_input:  # C -> 2C: coordinates, then bone vectors
            x = torch.cat([x, x - x[:, :, :, self.parent]], -1)
        if self.motion:
            x = with_velocity(x, mask)  # C -> 2C: coordinates, then velocity
        h = x.permute(0, 2, 4, 1, 3).reshape(n * m, -1, t, v)  # (N*M, C, T, V)
        h = self.data_norm(h.permute(0, 1, 3, 2).reshape(n * m, -1, t)).reshape(n * m, -1, v, t)
        h = h.permute(0, 1, 3, 2)
        mask_p = mask.repeat_interleave(m, 0)  # (N*M, T)
        h = h * mask_p[:, None, :, None]
        cur = lengths
        for block, s in zip(self.blocks, self.strides):
            h = block(h)
            cur = torch.div(cur + s - 1, s, rounding_mode="floor")  # ceil(len / s), as the conv
            h = h * valid_mask(cur.repeat_interleave(m), h.shape[2]).to(h.dtype)[:, None, :, None]
        states = h.mean(3).transpose(1, 2)  # (N*M, T', E)
        states = (states * w.reshape(n * m, 1, 1)).reshape(n, m, *states.shape[1:]).sum(1)  # (N, T', E)
        out_len = cur.clamp(min=1)
        if self.tap == "masked":
            pooled = states.sum(1) / out_len[:, None].to(states.dtype)
        else:
            pooled = states.mean(1)
        idx = (out_len - 1).view(n, 1, 1).expand(n, 1, states.shape[-1])
        last = states.gather(1, idx).squeeze(1)
        return EncoderOutput(states=states, pooled=pooled, last=last,
                             peak_of=lambda: masked_max(states, out_len))
