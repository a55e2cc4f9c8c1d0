"""The graph-convolution encoder: graph, shapes, padding and person order, pretraining round trip."""

import numpy as np
import pytest
import torch

from skelcl.config import load_config
from skelcl.encoder import build_encoder
from skelcl.errors import SettingError
from skelcl.graph import GraphEncoder, graph_partitions
from skelcl.layouts import KINECT20, LAYOUTS
from skelcl.probe import encode
from skelcl.train import load_checkpoint, pretrain

from test_train import tiny_config, tiny_dataset


def test_partitions_are_identity_and_normalised_bone_adjacency():
    parts = graph_partitions([(1, 0), (2, 1)], 3)
    torch.testing.assert_close(parts[0], torch.eye(3))
    deg = torch.tensor([1.0, 2.0, 1.0])
    a = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(parts[1], a / deg.sqrt()[:, None] / deg.sqrt()[None, :])
    with pytest.raises(SettingError, match="outside"):
        graph_partitions([(0, 5)], 3)


def test_shapes_and_padding_do_not_leak():
    torch.manual_seed(0)
    enc = GraphEncoder(60, KINECT20.bones, 20, channels=[8, 16], strides=[2, 1]).eval()
    x = torch.randn(3, 12, 1, 20, 3)
    lengths = torch.tensor([5, 12, 12])
    x[0, 5:] = 0
    out = enc(x, lengths)
    assert out.states.shape == (3, 6, 16) and out.pooled.shape == (3, 16) and enc.output_dim == 16
    x2 = x.clone()
    x2[0, 5:] = 99.0  # garbage past the valid length
    torch.testing.assert_close(enc(x2, lengths).pooled, out.pooled)
    assert not out.states[0, 3:].any()  # ceil(5 / 2) = 3 valid states, the rest zero
    torch.testing.assert_close(out.last[0], out.states[0, 2])
    torch.testing.assert_close(out.peak[0], out.states[0, :3].amax(0))  # max over valid states only
    torch.testing.assert_close(enc(x2, lengths).peak, out.peak)


def test_persons_are_averaged_order_free_and_absent_ones_ignored():
    torch.manual_seed(0)
    enc = GraphEncoder(2 * 20 * 3, KINECT20.bones, 20, channels=[8], strides=[1], persons=2).eval()
    x = torch.randn(2, 6, 2, 20, 3)
    x[1, :, 1] = 0  # sample 1 has one person
    lengths = torch.tensor([6, 6])
    swapped = x.flip(2)
    torch.testing.assert_close(enc(swapped, lengths).pooled[0], enc(x, lengths).pooled[0])
    alone = GraphEncoder(20 * 3, KINECT20.bones, 20, channels=[8], strides=[1], persons=1).eval()
    alone.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(x, lengths).pooled[1], alone(x[1:, :, :1], lengths[1:]).pooled[0])


def test_bad_graph_settings_are_setting_errors():
    cfg = load_config(None, ["model.encoder=gcn"]).model
    with pytest.raises(SettingError, match="model.graph"):
        build_encoder(60, cfg)
    with pytest.raises(SettingError, match="one entry per block"):
        GraphEncoder(60, KINECT20.bones, 20, channels=[8, 16], strides=[1])
    with pytest.raises(SettingError, match="odd"):
        GraphEncoder(60, KINECT20.bones, 20, kernel=4)
    with pytest.raises(SettingError, match="outside"):  # the encoder's own check, not an IndexError
        GraphEncoder(9, [(5, 0)], 3)
    lone = load_config(None, ["model.encoder=gcn", "model.graph=[[1, 0]]", "model.joints=3",
                              "model.channels=[4]", "model.strides=[1]"]).model
    enc = build_encoder(9, lone)  # joint 2 has no bone: the joint count comes from model.joints
    assert enc.joints == 3 and enc(torch.randn(2, 4, 1, 3, 3), torch.tensor([4, 4])).pooled.shape == (2, 4)
    with pytest.raises(SettingError, match="model.encoder"):
        build_encoder(60, load_config(None, ["model.encoder=transformer"]).model)


def test_gcn_pretrains_and_rebuilds_from_its_checkpoint(tmp_path):
    ds = tiny_dataset()
    cfg = tiny_config(**{"model.encoder": "gcn", "model.channels": "[8, 16]", "model.strides": "[2, 1]",
                         "model.kernel": 3, "optim.epochs": 6})
    res = pretrain(cfg, tmp_path, dataset=ds, progress=False)
    losses = [r["loss"] for r in res.metrics]
    assert np.isfinite(losses).all() and losses[-1] < losses[1], losses
    learner, cfg2 = load_checkpoint(tmp_path)  # no dataset needed: the graph is in the config
    assert cfg2.model.graph == [list(b) for b in ds.layout.bones] and cfg2.model.joints == 5
    assert "graph" in (tmp_path / "config.yaml").read_text()
    a = encode(res.learner.cpu(), ds.x, ds.lengths)
    b = encode(learner, ds.x, ds.lengths)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bone_input_appends_joint_minus_parent_and_its_velocity():
    torch.manual_seed(0)
    enc = GraphEncoder(9, [(1, 0), (2, 1)], 3, channels=[4], strides=[1], kernel=3, motion=True,
                       bone_input=True).eval()
    seen = []
    enc.data_norm.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x = torch.randn(2, 5, 1, 3, 3)
    lengths = torch.tensor([5, 3])
    out = enc(x, lengths)
    feats = seen[0].reshape(2, 12, 3, 5).permute(0, 3, 2, 1)  # (N, T, V, 4C): coords, bones, their velocities
    xm = x[:, :, 0] * (torch.arange(5)[None, :] < lengths[:, None])[:, :, None, None]
    bone = xm - xm[:, :, [0, 0, 1]]  # the root (joint 0) is its own parent: a zero bone
    torch.testing.assert_close(feats[..., :3], xm)
    torch.testing.assert_close(feats[..., 3:6], bone)
    assert not feats[..., 3:6][:, :, 0].any()
    torch.testing.assert_close(feats[0, :4, :, 9:], bone[0, 1:] - bone[0, :-1])  # the bones' velocity
    assert out.pooled.shape == (2, 4) and enc.data_norm.num_features == 12 * 3
    with pytest.raises(SettingError, match="bone_input"):
        build_encoder(9, load_config(None, ["model.bone_input=true"]).model)
    # a joint listed as the child of two joints (pairs written parent-first) has no one bone vector
    listed_twice = r"joint 1 is listed as the child of both 2 and 0; give model.graph as \[child, parent\]"
    with pytest.raises(SettingError, match=listed_twice):
        GraphEncoder(9, [(1, 2), (1, 0)], 3, channels=[4], strides=[1], kernel=3, bone_input=True)
    GraphEncoder(9, [(1, 2), (1, 0)], 3, channels=[4], strides=[1], kernel=3)  # the convolution alone reads edges


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_every_layouts_bones_are_child_parent_pairs_of_one_tree(layout):
    """model.bone_input takes each pair as (child, parent): every joint is a child at most once, and
    following parents from any joint ends at the one root without a cycle."""
    children = [c for c, _ in layout.bones]
    assert len(children) == len(set(children)) == layout.num_joints - 1
    parent = dict(layout.bones)
    roots = set()
    for j in range(layout.num_joints):
        path = [j]
        while path[-1] in parent:
            path.append(parent[path[-1]])
            assert len(path) <= layout.num_joints, f"cycle through {path}"
        roots.add(path[-1])
    assert len(roots) == 1
    GraphEncoder(3 * layout.num_joints, layout.bones, layout.num_joints, channels=[4], strides=[1], bone_input=True)
