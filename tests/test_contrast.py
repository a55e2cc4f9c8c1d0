"""The learner's parts against their formulas: momentum update, gradients, queue, InfoNCE."""

import copy
import math

import pytest
import torch

from skelcl.config import ContrastConfig, ModelConfig
from skelcl.contrast import ContrastiveLearner, KeyQueue, info_nce, mine_positives, reconstruction_loss
from skelcl.encoder import SequenceEncoder
from skelcl.errors import ConfigError


def _batch(n=6, t=10, d=2 * 5 * 3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, 2, 5, 3, generator=g)
    lengths = torch.randint(3, t + 1, (n,), generator=g)
    return x, lengths


def test_momentum_update_equals_formula():
    torch.manual_seed(0)
    m = 0.9
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(queue_size=12, momentum=m))
    # make the two encoders differ
    with torch.no_grad():
        for p in learner.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in learner.encoder_k.parameters()]
    q = [p.clone() for p in learner.encoder_q.parameters()]
    learner.momentum_update()
    for bk, pq, pk in zip(before_k, q, learner.encoder_k.parameters()):
        torch.testing.assert_close(pk, m * bk + (1 - m) * pq)


def test_key_encoder_gets_no_gradients():
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(queue_size=12))
    x, lengths = _batch()
    loss = learner(x, x.flip(1), lengths)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in learner.encoder_k.parameters())
    assert all(p.grad is not None for p in learner.encoder_q.parameters())


def test_queue_holds_last_k_keys_in_order_after_wraparound():
    q = KeyQueue(size=5, dim=2, normalize=False)
    batches = [torch.full((3, 2), float(i)) + torch.arange(3.0)[:, None] / 10 for i in range(4)]
    for b in batches:
        q.enqueue(b)
    allkeys = torch.cat(batches)  # 12 keys, the last 5 must remain, oldest first
    torch.testing.assert_close(q.ordered(), allkeys[-5:])
    assert int(q.ptr) == 12 % 5


def test_queue_batch_larger_than_queue():
    q = KeyQueue(size=3, dim=1, normalize=True)
    q.enqueue(torch.arange(7.0)[:, None])
    torch.testing.assert_close(q.ordered(), torch.tensor([[4.0], [5.0], [6.0]]))


def test_info_nce_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    kp = torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    neg = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    tau = 0.5
    losses = []
    for i in range(2):
        pos = (q[i] @ kp[i]).item() / tau
        negs = [(q[i] @ n).item() / tau for n in neg]
        denom = math.exp(pos) + sum(math.exp(v) for v in negs)
        losses.append(-math.log(math.exp(pos) / denom))
    expected = sum(losses) / 2
    assert info_nce(q, kp, neg, tau).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_in_batch_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 1.0
    l0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(1)))
    l1 = -math.log(math.exp(1) / (math.exp(0) + math.exp(1)))
    assert info_nce(q, k, None, tau, in_batch=True).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


@pytest.mark.parametrize("paradigm", ["queue", "end_to_end", "memory_bank"])
@pytest.mark.parametrize("head", ["none", "linear", "mlp"])
def test_each_paradigm_and_head_runs(paradigm, head):
    torch.manual_seed(0)
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(
        paradigm=paradigm, head=head, head_dim=4, queue_size=10, normalize=True), num_samples=20)
    x, lengths = _batch()
    loss = learner(x, x.flip(1), lengths, index=torch.arange(6))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in learner.encoder_q.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_memory_bank_updates_rows_of_the_batch_only():
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(
        paradigm="memory_bank", queue_size=5, normalize=True), num_samples=20)
    before = learner.bank.clone()
    x, lengths = _batch()
    learner(x, x, lengths, index=torch.arange(6))
    changed = (learner.bank != before).any(1)
    assert changed[:6].all() and not changed[6:].any()


def test_masked_tap_ignores_padding():
    enc = SequenceEncoder(30, hidden=8)
    x, _ = _batch(n=2, t=10)
    lengths = torch.tensor([4, 10])
    x2 = x.clone()
    x2[0, 4:] = 123.0  # garbage past the valid length must not change the pooled feature
    a, b = enc(x, lengths), enc(x2, lengths)
    torch.testing.assert_close(a.pooled, b.pooled)
    torch.testing.assert_close(a.last[0], a.states[0, 3])


def test_bidirectional_encoder_excludes_padding():
    enc = SequenceEncoder(30, hidden=8, bidirectional=True)
    x, _ = _batch(n=2, t=10)
    lengths = torch.tensor([4, 10])
    x2 = x.clone()
    x2[0, 4:] = 5.0
    torch.testing.assert_close(enc(x, lengths).pooled, enc(x2, lengths).pooled)
    assert enc(x, lengths).pooled.shape == (2, 16)


def test_bidirectional_without_padding_matches_the_packed_path():
    torch.manual_seed(0)
    enc = SequenceEncoder(30, hidden=8, bidirectional=True, layers=2)
    x, _ = _batch(n=3, t=10)
    full = torch.tensor([10, 10, 10])
    plain = enc(x, full)  # no padding: the unpacked call
    packed = enc(torch.cat([x, torch.zeros_like(x[:1])]), torch.tensor([10, 10, 10, 3]))  # one short: packed
    torch.testing.assert_close(plain.states, packed.states[:3])
    torch.testing.assert_close(plain.pooled, packed.pooled[:3])


def test_motion_input_appends_masked_velocity():
    torch.manual_seed(0)
    enc = SequenceEncoder(30, hidden=8, motion=True)
    assert enc.rnn.input_size == 60
    x, _ = _batch(n=2, t=10)
    lengths = torch.tensor([4, 10])
    x2 = x.clone()
    x2[0, 4:] = 7.0  # padding content must not leak through the velocity of the last valid frame
    torch.testing.assert_close(enc(x, lengths).pooled, enc(x2, lengths).pooled)


def test_person_mean_pool_is_invariant_to_person_order_and_absent_persons():
    torch.manual_seed(0)
    enc = SequenceEncoder(30, hidden=8, persons=2, person_pool="mean")
    assert enc.rnn.input_size == 15
    x, lengths = _batch(n=3, t=10)
    swapped = x.flip(2)
    torch.testing.assert_close(enc(x, lengths).pooled, enc(swapped, lengths).pooled)
    one = x.clone()
    one[:, :, 1] = 0  # an absent second person does not dilute the first one's encoding
    alone = enc(one, lengths).pooled
    torch.testing.assert_close(alone, enc(one.flip(2), lengths).pooled)
    learner = ContrastiveLearner(30, ModelConfig(hidden=8, person_pool="mean"), ContrastConfig(queue_size=8),
                                 persons=2)
    assert torch.isfinite(learner(x, swapped, lengths))


def test_person_symmetric_pool_ignores_person_order_and_keeps_one_person_samples():
    torch.manual_seed(0)
    enc = SequenceEncoder(30, hidden=8, persons=2, person_pool="symmetric")
    assert enc.rnn.input_size == 30  # both persons still enter the RNN together
    x, lengths = _batch(n=3, t=10)
    out, swapped = enc(x, lengths), enc(x.flip(2), lengths)
    for field_name in ("states", "pooled", "last"):
        torch.testing.assert_close(getattr(out, field_name), getattr(swapped, field_name))
    one = x.clone()
    one[:, :, 1] = 0  # no second person: nothing to swap, the plain encoding
    flat = SequenceEncoder(30, hidden=8, persons=2)
    flat.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc(one, lengths).pooled, flat(one, lengths).pooled)


def test_pool_last_contrasts_the_last_hidden_state():
    """contrast.pool='last' (the paper's no-TAP variant) embeds h_T; 'tap' the TAP mean; 'tap_max' TAP ++
    the max over valid frames (the queue keys widen with it)."""
    x, lengths = _batch()
    for pool, fields in (("tap", ["pooled"]), ("last", ["last"]), ("tap_max", ["pooled", "peak"])):
        torch.manual_seed(0)
        learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(pool=pool, normalize=True))
        out = learner.encoder_q(x, lengths)
        z = learner._embed(learner.encoder_q, learner.head_q, x, lengths)
        want = torch.cat([getattr(out, f) for f in fields], 1)
        assert z.shape == (x.shape[0], 8 * len(fields)) and learner.queue.keys.shape[1] == 8 * len(fields)
        assert torch.allclose(z, torch.nn.functional.normalize(want, dim=1))
        loss = learner(x, x, lengths)  # a full step's loss with the wider keys
        assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="pool"):
        ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(pool="max"))


def test_outputs_hands_back_the_query_encoders_pass_on_the_first_view():
    """forward(outputs=[...]) keeps the query encoder's output on xq (distill.contrast reuses it),
    leaves the loss unchanged, and is refused by the paradigms without a key encoder."""
    x, lengths = _batch()
    xk = x.flip(1)
    torch.manual_seed(0)
    a = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(queue_size=8, normalize=True))
    b = copy.deepcopy(a)
    outs: list = []
    loss = a(x, xk, lengths, outputs=outs)
    assert len(outs) == 1
    assert torch.allclose(outs[0].pooled, a.encoder_q(x, lengths).pooled, atol=1e-6)
    assert torch.allclose(loss, b(x, xk, lengths))
    assert outs[0].pooled.requires_grad  # a caller's term trains the same pass
    e2e = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(paradigm="end_to_end"))
    with pytest.raises(ConfigError, match="paradigm queue"):
        e2e(x, xk, lengths, outputs=[])


def _hand_nce(q, kp, neg, tau, keep, extra=()):
    """-log(sum over the key and ``extra`` negatives of exp / sum over the key and kept negatives)."""
    pos = math.exp((q @ kp).item() / tau)
    e = [math.exp((q @ n).item() / tau) for n in neg]
    return -math.log((pos + sum(e[j] for j in extra)) / (pos + sum(e[j] for j in keep)))


def test_info_nce_exclude_and_positives_match_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    kp = torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    neg = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.3, 0.2]])
    tau = 0.5
    exclude = torch.tensor([[False, True, False, False], [False, False, False, True]])
    want = (_hand_nce(q[0], kp[0], neg, tau, [0, 2, 3]) + _hand_nce(q[1], kp[1], neg, tau, [0, 1, 2])) / 2
    assert info_nce(q, kp, neg, tau, exclude=exclude).item() == pytest.approx(want, rel=1e-6)
    # positives: query 0 also counts negative 2; query 1 asks for the excluded 3, which stays out
    positives = torch.tensor([[False, False, True, False], [False, False, False, True]])
    want = (_hand_nce(q[0], kp[0], neg, tau, [0, 2, 3], [2]) + _hand_nce(q[1], kp[1], neg, tau, [0, 1, 2])) / 2
    got = info_nce(q, kp, neg, tau, exclude=exclude, positives=positives).item()
    assert got == pytest.approx(want, rel=1e-6)
    # no positives and nothing excluded: plain InfoNCE
    none = torch.zeros(2, 4, dtype=torch.bool)
    assert info_nce(q, kp, neg, tau, exclude=none, positives=none).item() == pytest.approx(
        info_nce(q, kp, neg, tau).item(), rel=1e-6)


def test_mine_positives_takes_the_most_similar_allowed_keys():
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.8, -0.2], [-1.0, 0.0]])
    assert mine_positives(k, queue, 2).tolist() == [[True, False, True, False], [True, True, False, False]]
    exclude = torch.tensor([[True, False, False, False], [False, True, True, True]])
    got = mine_positives(k, queue, 2, exclude)
    assert got.tolist() == [[False, True, True, False], [True, False, False, False]]  # row 1: one allowed
    assert not mine_positives(k, queue, 0).any()


def test_queue_keeps_group_ids_with_its_keys():
    q = KeyQueue(size=3, dim=1, normalize=True, track_groups=True)
    assert q.groups.tolist() == [-1, -1, -1] and "groups" in q.state_dict()
    q.enqueue(torch.ones(2, 1), torch.tensor([7, 8]))
    q.enqueue(torch.ones(2, 1), torch.tensor([9, 10]))
    assert q.groups.tolist() == [10, 8, 9]
    with pytest.raises(ValueError, match="group ids"):
        q.enqueue(torch.ones(1, 1))
    assert "groups" not in KeyQueue(size=3, dim=1, normalize=True).state_dict()


def test_excluded_group_keys_do_not_change_the_loss():
    """A queue entry of the query's own group is left out: the loss equals one without that entry."""
    torch.manual_seed(0)
    cfg = ContrastConfig(queue_size=8, exclude_group=True)
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), cfg)
    x, lengths = _batch(n=2)
    groups = torch.tensor([3, 4])
    with torch.no_grad():
        learner.queue.groups.copy_(torch.tensor([3, -1, -1, 4, -1, 3, -1, -1]))
    keys = learner.queue.keys.clone()
    a = copy.deepcopy(learner)
    loss = learner(x, x.flip(1), lengths, groups=groups)
    # by hand: the same embeddings, each query's own-group rows dropped
    with torch.no_grad():
        a.momentum_update()
        q = a._embed(a.encoder_q, a.head_q, x, lengths)
        k = a._embed(a.encoder_k, a.head_k, x.flip(1), lengths)
    keep = [[1, 2, 3, 4, 6, 7], [0, 1, 2, 4, 5, 6, 7]]
    want = sum(info_nce(q[i:i + 1], k[i:i + 1], keys[keep[i]], cfg.temperature).item() for i in range(2)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert learner.queue.groups.tolist()[:2] == [3, 4]  # the new keys carry their groups
    with pytest.raises(ValueError, match="group ids"):
        learner(x, x, lengths)


def test_symmetric_and_two_key_losses_match_hand_computation():
    """symmetric: mean of L(q(a), k(b)) and L(q(b), k(a)); a second key view adds its own terms."""
    torch.manual_seed(0)
    x, lengths = _batch(n=4)
    xb, xc = x.flip(1), x * 0.5
    # (query view, key view) terms written out: 0 = query input, 1 = key input, 2 = second key input
    for cfg, views, pairs in ((ContrastConfig(queue_size=8, symmetric=True), (x, xb), [(0, 1), (1, 0)]),
                              (ContrastConfig(queue_size=8, cross_view_both=True), (x, xb, xc), [(0, 1), (0, 2)]),
                              (ContrastConfig(queue_size=8, symmetric=True, cross_view_both=True), (x, xb, xc),
                               [(0, 1), (0, 2), (1, 0), (2, 0)])):
        learner = ContrastiveLearner(30, ModelConfig(hidden=8), cfg)
        a = copy.deepcopy(learner)
        negatives = learner.queue.keys.clone()
        extra = {"xk2": views[2]} if len(views) == 3 else {}
        loss = learner(views[0], views[1], lengths, **extra)
        with torch.no_grad():
            a.momentum_update()
            q = [a._embed(a.encoder_q, a.head_q, v, lengths) for v in views]
            k = [a._embed(a.encoder_k, a.head_k, v, lengths) for v in views]
        want = sum(info_nce(q[i], k[j], negatives, cfg.temperature).item() for i, j in pairs) / len(pairs)
        assert loss.item() == pytest.approx(want, rel=1e-5)
        assert torch.allclose(learner.queue.ordered()[-4:], k[1], atol=1e-6)  # the queue takes key view 1


def test_mining_and_group_exclusion_need_the_queue_paradigm():
    for bad in ({"exclude_group": True}, {"mine_k": 2}, {"symmetric": True}, {"cross_view_both": True},
                {"reconstruct": 1.0}):
        with pytest.raises(ConfigError, match="paradigm queue"):
            ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(paradigm="end_to_end", **bad))


def test_pairwise_distances_match_a_hand_computation_and_ignore_rotation():
    from skelcl.augment import rotation_matrix
    from skelcl.encoder import pairwise_distances

    x, _ = _batch(n=2, t=4)
    flat = x.reshape(2, 4, -1)  # 10 points of 3 coordinates per frame
    d = pairwise_distances(flat)
    assert d.shape == (2, 4, 45)
    pts = x[1, 2].reshape(10, 3)
    # row-major upper triangle: pair (0, 1) first, (0, 2) second, ..., (8, 9) last
    torch.testing.assert_close(d[1, 2, 0], (pts[0] - pts[1]).norm())
    torch.testing.assert_close(d[1, 2, 1], (pts[0] - pts[2]).norm())
    torch.testing.assert_close(d[1, 2, -1], (pts[8] - pts[9]).norm())
    rot = rotation_matrix(torch.tensor(0.3), torch.tensor(-1.1), torch.tensor(0.7))[0]
    moved = (x @ rot.mT + torch.tensor([1.0, -2.0, 0.5])).reshape(2, 4, -1)
    torch.testing.assert_close(pairwise_distances(moved), d, atol=1e-5, rtol=1e-5)


def test_distance_frame_features_make_the_encoder_view_invariant():
    from skelcl.augment import rotation_matrix

    torch.manual_seed(0)
    x, lengths = _batch(n=3, t=10)
    rot = rotation_matrix(torch.tensor(0.0), torch.tensor(2.0), torch.tensor(0.0))[0]
    turned = x @ rot.mT
    enc = SequenceEncoder(30, hidden=8, layers=2, frame_features="distances")
    assert enc.rnn.input_size == 45
    torch.testing.assert_close(enc(x, lengths).pooled, enc(turned, lengths).pooled, atol=1e-5, rtol=1e-4)
    both = SequenceEncoder(30, hidden=8, frame_features="coords+distances")
    assert both.rnn.input_size == 30 + 45
    assert not torch.allclose(both(x, lengths).pooled, both(turned, lengths).pooled)
    x2 = x.clone()
    x2[0, lengths[0]:] = 9.0  # padding stays out of the distances
    torch.testing.assert_close(enc(x, lengths).pooled, enc(x2, lengths).pooled)
    learner = ContrastiveLearner(30, ModelConfig(hidden=8, frame_features="distances"), ContrastConfig(queue_size=8))
    loss = learner(x, turned, lengths)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in learner.encoder_q.parameters() if p.grad is not None)


def test_frame_features_reject_unknown_names_the_graph_encoder_and_2d_joints():
    from skelcl.encoder import build_encoder
    from skelcl.errors import SettingError

    with pytest.raises(SettingError, match="frame_features"):
        SequenceEncoder(30, hidden=8, frame_features="angles")
    with pytest.raises(SettingError, match="frame_features"):
        build_encoder(30, ModelConfig(encoder="gcn", graph=[[1, 0]], frame_features="distances"))
    planar = torch.randn(2, 6, 1, 15, 2)  # 2-D poses: 30 values a frame, also a multiple of 3
    with pytest.raises(SettingError, match="C=2"):
        SequenceEncoder(30, hidden=8, frame_features="distances")(planar, torch.tensor([6, 4]))


def test_reconstruction_loss_is_the_mean_squared_error_over_valid_frames():
    x, lengths = _batch(n=3, t=6)
    recon = torch.randn(3, 6, 30, generator=torch.Generator().manual_seed(1))
    flat = x.reshape(3, 6, 30)
    want = sum(((recon[i, :n] - flat[i, :n]) ** 2).sum() for i, n in enumerate(lengths.tolist()))
    want = want / (int(lengths.sum()) * 30)
    assert reconstruction_loss(recon, x, lengths).item() == pytest.approx(want.item(), rel=1e-5)
    # padding frames do not count
    recon2 = recon.clone()
    recon2[0, int(lengths[0]):] += 100.0
    assert reconstruction_loss(recon2, x, lengths).item() == pytest.approx(want.item(), rel=1e-5)


def test_reconstruct_adds_the_weighted_decoder_error_and_trains_encoder_and_decoder():
    torch.manual_seed(0)
    x, lengths = _batch(n=4)
    xb = x.flip(1)
    plain = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(queue_size=8))
    assert plain.decoder is None
    learner = ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(queue_size=8, reconstruct=0.5))
    assert any(k.startswith("decoder.") for k in learner.state_dict())
    a = copy.deepcopy(learner)
    negatives = learner.queue.keys.clone()
    loss = learner(x, xb, lengths)
    with torch.no_grad():
        a.momentum_update()
        out = a.encoder_q(x, lengths)
        q = a._embed(a.encoder_q, a.head_q, x, lengths)
        k = a._embed(a.encoder_k, a.head_k, xb, lengths)
        rec = reconstruction_loss(a.decoder(out.pooled, x.shape[1]), x, lengths)
    want = info_nce(q, k, negatives, 0.2).item() + 0.5 * rec.item()
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in learner.decoder.parameters())
    assert all(p.grad is not None for p in learner.encoder_q.parameters())
    with pytest.raises(ConfigError, match=">= 0"):
        ContrastiveLearner(30, ModelConfig(hidden=8), ContrastConfig(reconstruct=-1.0))
