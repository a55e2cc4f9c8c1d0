"""The seven AS-CAL augmentations: their maths, their invariants (padding, absent persons, dtype,
device) and their reproducibility (per-sample draws, same seed same output)."""

from __future__ import annotations

import math

import pytest
import torch

from skelcl.augment import (
    ALL_SEVEN,
    AUGMENTATIONS,
    Blur,
    ChannelMask,
    Crop,
    Compose,
    Decimate,
    Identity,
    JointMask,
    Mirror,
    Noise,
    Reverse,
    Rotate,
    Shear,
    build_augment,
    gaussian_kernels,
    mirror_pairs,
    presence,
    rotation_matrix,
    valid_mask,
)
from skelcl.errors import ConfigError
from skelcl.layouts import KINECT20, NTU25, SBU15

B, T, M, V, C = 12, 60, 2, 25, 3


def make_batch(b: int = B, t: int = T, seed: int = 0, dtype: torch.dtype = torch.float32,
               device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random NTU25-shaped skeletons with varied lengths, zero padding, an absent second person in
    some samples and a second person who leaves half-way in another."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, M, V, C, generator=g)
    lengths = torch.randint(5, t + 1, (b,), generator=g)
    lengths[0], lengths[1] = t, 1
    x = x * valid_mask(lengths, t)[:, :, None, None, None]
    x[::3, :, 1] = 0  # absent second person
    x[2, t // 2:, 1] = 0  # person leaves
    return x.to(device=device, dtype=dtype), lengths.to(device)


def gen(seed: int = 1, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def zero_where_input_zero(x: torch.Tensor, y: torch.Tensor) -> None:
    """Padding frames and absent persons of x are still exactly zero in y."""
    absent = ~presence(x).expand_as(x)
    assert torch.all(y[absent] == 0)


ALL_OPS = [cls() for name, cls in AUGMENTATIONS.items()] + [
    Rotate(variant="released-code"), Blur(variant="released-code", p=1.0), Blur(p=1.0),
    JointMask(variant="released-code"), Reverse(p=1.0), Decimate(p=1.0)]


# ------------------------------------------------------------------------------------------ rotation


def test_rotation_matrix_matches_equations():
    a, bta, g = torch.tensor([0.3]), torch.tensor([-0.7]), torch.tensor([1.1])

    def rx(t):
        c, s = math.cos(t), math.sin(t)
        return torch.tensor([[1, 0, 0], [0, c, s], [0, -s, c]])

    def ry(t):
        c, s = math.cos(t), math.sin(t)
        return torch.tensor([[c, 0, -s], [0, 1, 0], [s, 0, c]])

    def rz(t):
        c, s = math.cos(t), math.sin(t)
        return torch.tensor([[c, s, 0], [-s, c, 0], [0, 0, 1]])

    want = rz(1.1) @ ry(-0.7) @ rx(0.3)
    torch.testing.assert_close(rotation_matrix(a, bta, g)[0], want)


@pytest.mark.parametrize("variant", ["paper", "released-code"])
def test_rotation_orthonormal_angles_and_bone_lengths(variant):
    x, lengths = make_batch(b=64, dtype=torch.float64)
    op = Rotate(variant=variant)
    p = op.draw(x, lengths, gen(3))
    r = p["matrix"].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(64, dtype=torch.float64), atol=1e-6, rtol=0)
    ang, axis = p["angles"], p["axis"]
    main = ang.gather(1, axis[:, None])[:, 0]
    assert torch.all((main >= 0) & (main <= math.pi / 6))
    assert main.max() > math.pi / 12  # the main angle spans its range
    minor = ang.masked_select(~torch.nn.functional.one_hot(axis, 3).bool())
    if variant == "paper":
        assert torch.all((minor >= 0) & (minor <= math.pi / 180)) and minor.max() > 0
    else:
        assert torch.all(minor == 0)
    assert set(axis.tolist()) == {0, 1, 2}
    y = op.apply(x, lengths, p)
    bones = torch.tensor(NTU25.bones)
    bl = lambda z: (z[..., bones[:, 0], :] - z[..., bones[:, 1], :]).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(bl(y), bl(x), atol=1e-9, rtol=1e-9)
    # it is x' = R x for each joint
    torch.testing.assert_close(y[0, 0, 0], x[0, 0, 0] @ r[0].T)


# ------------------------------------------------------------------------------------------- shear


def test_shear_matrix_and_factors():
    x, lengths = make_batch(b=200)
    op = Shear(amplitude=0.5)
    p = op.draw(x, lengths, gen())
    s, f = p["matrix"], p["factors"]
    assert torch.all(torch.diagonal(s, dim1=1, dim2=2) == 1)
    assert torch.all(f.abs() <= 0.5) and f.abs().max() > 0.45
    off = s.masked_select(~torch.eye(3, dtype=torch.bool).expand_as(s)).view(-1, 6)
    assert torch.equal(off, f)  # row-major off-diagonal order of Eq. 5
    y = op.apply(x, lengths, p)
    torch.testing.assert_close(y, torch.einsum("bij,btmvj->btmvi", s, x), atol=1e-5, rtol=1e-5)
    assert Shear().draw(x, lengths, gen())["factors"].abs().max() <= 1.0


# ----------------------------------------------------------------------------------------- reverse


def test_reverse_valid_frames_only_and_twice_is_identity():
    x, lengths = make_batch()
    op = Reverse(p=1.0)
    y = op(x, lengths, gen())
    for b in range(B):
        n = int(lengths[b])
        assert torch.equal(y[b, :n], x[b, :n].flip(0))  # a short sequence does not start with padding
        assert torch.all(y[b, n:] == 0)
    assert torch.equal(op(y, lengths, gen()), x)
    # the same drawn flips applied twice are the identity, whatever p drew
    half = Reverse(p=0.5)
    p = half.draw(x, lengths, gen(5))
    assert 0 < int(p["flip"].sum()) < B
    assert torch.equal(half.apply(half.apply(x, lengths, p), lengths, p), x)
    assert torch.equal(Reverse(p=0.0)(x, lengths, gen()), x)


# ------------------------------------------------------------------------------------------- noise


def test_noise_statistics_and_zeros():
    x, lengths = make_batch(b=64)
    y = Noise(std=0.05)(x, lengths, gen())
    pres = presence(x).expand_as(x)
    d = (y - x)[pres]
    assert d.numel() > 100_000
    assert abs(float(d.mean())) < 1e-3
    assert abs(float(d.std()) - 0.05) < 1e-3
    zero_where_input_zero(x, y)
    assert torch.all(y[~pres] == 0)


# -------------------------------------------------------------------------------------------- blur


def test_blur_kernel():
    k = gaussian_kernels(torch.tensor([0.1, 1.0, 2.0]))
    assert k.shape == (3, 15)
    torch.testing.assert_close(k.sum(-1), torch.ones(3))
    assert torch.equal(k, k.flip(-1))
    raw = gaussian_kernels(torch.tensor([2.0]), normalize=False)
    t = torch.arange(-7, 8, dtype=torch.float32)
    torch.testing.assert_close(raw[0], torch.exp(-t ** 2 / 8))


def test_blur_keeps_constant_constant_and_padding_zero():
    x, lengths = make_batch()
    pres = presence(x)
    const = torch.tensor([0.5, -1.0, 2.0])
    xc = pres * const  # constant on every present frame, zero elsewhere
    op = Blur(p=1.0)
    p = op.draw(xc, lengths, gen())
    assert torch.all((p["sigma"] >= 0.1) & (p["sigma"] <= 2.0))
    y = op.apply(xc, lengths, p)
    torch.testing.assert_close(y, xc, atol=1e-5, rtol=1e-5)
    yr = op.apply(x, lengths, p)
    zero_where_input_zero(x, yr)
    assert not torch.allclose(yr, x)
    # it is a smoothing: frame-to-frame differences shrink
    assert (yr.diff(dim=1)).abs().mean() < 0.8 * x.diff(dim=1).abs().mean()


def test_blur_interior_matches_convolution_and_released_gain():
    x, lengths = make_batch(b=4, t=40)
    x, lengths = x[:1, :, :1], lengths[:1]  # full length, one person
    for normalize in (True, False):
        op = Blur(p=1.0, normalize=normalize)
        p = op.draw(x, lengths, gen())
        y = op.apply(x, lengths, p)
        k = p["kernel"][0]
        t0 = 20
        want = (x[0, t0 - 7:t0 + 8] * k[:, None, None, None]).sum(0)
        torch.testing.assert_close(y[0, t0], want, atol=1e-5, rtol=1e-5)
    assert Blur(variant="released-code").normalized is False


def test_blur_probability():
    x, lengths = make_batch()
    assert torch.equal(Blur(p=0.0)(x, lengths, gen()), x)
    op = Blur(p=0.5)
    p = op.draw(x, lengths, gen(2))
    y = op.apply(x, lengths, p)
    for b in range(B):
        assert torch.equal(y[b], x[b]) == (not bool(p["apply"][b]))


# ------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("variant", ["paper", "released-code"])
def test_joint_mask_zeroes_exactly_what_it_reports(variant):
    x, lengths = make_batch(b=32, t=150)
    op = JointMask(variant=variant)
    p = op.draw(x, lengths, gen())
    mask = p["mask"]  # (B, T, V)
    y = op.apply(x, lengths, p)
    full = mask[:, :, None, :, None].expand_as(x)
    assert torch.all(y[full] == 0)
    assert torch.equal(y[~full], x[~full])
    assert not torch.any(mask & ~valid_mask(lengths, 150)[:, :, None])  # valid frames only
    nj, nf = p["joints"], p["frames"]
    assert torch.all((nj >= 5) & (nj <= 15))
    assert torch.all(nf == torch.minimum(nf, lengths)) and torch.all(nf <= 100)
    assert torch.equal(mask.any(2).sum(1), nf)  # exactly L frames ...
    assert torch.equal(mask.any(1).sum(1), torch.where(nf > 0, nj, 0))  # ... times exactly V joints
    assert torch.equal(mask.sum((1, 2)), nf * nj)
    long_ = lengths >= 100
    assert torch.all(nf[long_] >= 50)


def test_joint_mask_short_arrays():
    x, lengths = make_batch(b=64, t=40)
    paper = JointMask().draw(x, lengths, gen())
    assert torch.equal(paper["frames"], lengths)  # L >= 50 clipped to the valid length
    rel = JointMask(variant="released-code")
    assert rel.frame_range(40) == (20, 50) and rel.frame_range(150) == (50, 100)
    nf = rel.draw(x, lengths, gen())["frames"]
    assert torch.all(nf == torch.minimum(nf, lengths)) and torch.all(nf <= 50)


def test_channel_mask_zeroes_exactly_what_it_reports():
    x, lengths = make_batch(b=64)
    op = ChannelMask()
    p = op.draw(x, lengths, gen())
    y = op.apply(x, lengths, p)
    m = p["mask"]
    assert torch.equal(m.sum(1), torch.ones(64, dtype=torch.int64))
    assert set(p["axis"].tolist()) == {0, 1, 2}
    full = m[:, None, None, None, :].expand_as(x)
    assert torch.all(y[full] == 0)
    assert torch.equal(y[~full], x[~full])


# -------------------------------------------------------------------------------- all, invariants


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: f"{o.name}-{getattr(o, 'variant', '')}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_invariants_dtype_shape_padding(op, dtype):
    x, lengths = make_batch(dtype=dtype)
    y = op(x, lengths, gen())
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
    zero_where_input_zero(x, y)
    assert torch.all(y[~valid_mask(lengths, T)] == 0)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: f"{o.name}-{getattr(o, 'variant', '')}")
def test_batched_equals_per_sample(op):
    x, lengths = make_batch()
    p = op.draw(x, lengths, gen(7))
    y = op.apply(x, lengths, p)
    for i in range(B):
        pi = {k: v[i:i + 1] for k, v in p.items()}
        yi = op.apply(x[i:i + 1], lengths[i:i + 1], pi)
        if isinstance(op, (Rotate, Shear)):  # a BLAS may block a batch of 1 differently
            torch.testing.assert_close(yi[0], y[i], atol=1e-6, rtol=1e-6)
        else:
            assert torch.equal(yi[0], y[i])  # bit-exact: no cross-sample arithmetic


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: f"{o.name}-{getattr(o, 'variant', '')}")
def test_same_seed_same_output(op):
    x, lengths = make_batch()
    a = op(x, lengths, gen(11))
    assert torch.equal(a, op(x, lengths, gen(11)))
    deterministic = isinstance(op, Identity) or (isinstance(op, Reverse) and op.p in (0.0, 1.0))
    if not deterministic:
        assert not torch.equal(a, op(x, lengths, gen(12)))


def test_compose_in_order_same_seed():
    x, lengths = make_batch()
    comp = build_augment(list(ALL_SEVEN))
    assert comp.names == list(ALL_SEVEN)
    y = comp(x, lengths, gen(4))
    assert torch.equal(y, comp(x, lengths, gen(4)))
    # Compose = the ops in order, drawing from one generator
    g = gen(4)
    z = x
    for op in comp.ops:
        z = op(z, lengths, g)
    assert torch.equal(y, z)
    zero_where_input_zero(x, y)
    # drawn once, applied twice: the draws depend on the batch's shape only, so they serve another
    # preprocessing of the same sequences (here a scaling, through the linear ops)
    params = comp.draw(x, lengths, gen(4))
    assert torch.equal(comp.apply(x, lengths, params), y)
    linear = build_augment(["rotate", "shear", "reverse", "joint_mask", "channel_mask"])
    drawn = linear.draw(x, lengths, gen(5))
    assert torch.allclose(linear.apply(2 * x, lengths, drawn), 2 * linear.apply(x, lengths, drawn), atol=1e-5)
    with pytest.raises(ValueError, match="parameter sets"):
        linear.apply(x, lengths, drawn[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("gen_device", ["cuda", "cpu"])
def test_cuda(gen_device):
    x, lengths = make_batch(device="cuda")
    for op in ALL_OPS:
        y = op(x, lengths, gen(3, gen_device))
        assert y.device == x.device and y.dtype == x.dtype
        zero_where_input_zero(x, y)
        assert torch.equal(y, op(x, lengths, gen(3, gen_device)))
    # with a CPU generator, the CUDA result equals the CPU result
    if gen_device == "cpu":
        xc, lc = x.cpu(), lengths.cpu()
        for op in ALL_OPS:
            torch.testing.assert_close(op(x, lengths, gen(3)).cpu(), op(xc, lc, gen(3)), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ build_augment


def test_build_augment_specs():
    comp = build_augment(["reverse", {"shear": {"amplitude": 0.5}}])
    assert isinstance(comp, Compose) and comp.names == ["reverse", "shear"]
    assert comp.ops[1] == Shear(amplitude=0.5)
    assert build_augment("noise").ops == (Noise(),)
    assert len(build_augment(["none"])) == 0 and len(build_augment(None)) == 0
    assert build_augment([{"blur": None}]).ops == (Blur(),)
    assert build_augment([{"rotate": {"variant": "released-code"}}]).ops[0].minor == 0.0
    assert set(AUGMENTATIONS) == set(ALL_SEVEN) | {"none", "swap_persons", "crop", "mirror", "decimate"}
    for cls in AUGMENTATIONS.values():
        assert cls.__doc__ and cls.__doc__.strip()


@pytest.mark.parametrize("spec, words", [
    (["reverse", "flip"], ["flip", "rotate", "channel_mask", "none"]),
    ([{"shear": {"amp": 1}}], ["amp", "amplitude"]),
    ([{"shear": 3}], ["mapping"]),
    ([{"shear": {}, "noise": {}}], ["one-key"]),
    ([{"rotate": {"variant": "code"}}], ["variant"]),
    ([{"blur": {"taps": 4}}], ["odd"]),
    ([{"blur": {"sigma_min": 0.0}}], ["sigma_min"]),
    ([{"reverse": {"p": 2}}], ["reverse.p"]),
    ([{"noise": {"std": -1}}], ["noise.std"]),
])
def test_build_augment_rejects(spec, words):
    with pytest.raises(ConfigError) as err:
        build_augment(spec)
    for w in words:
        assert w in str(err.value)


def test_empty_batch():
    x, lengths = make_batch()
    for op in ALL_OPS:
        assert op(x[:0], lengths[:0], gen()).shape == x[:0].shape


def test_wrong_shapes_are_clear():
    x, lengths = make_batch()
    with pytest.raises(ValueError, match="B, T, M, V, C"):
        Shear()(x[0], lengths, gen())
    with pytest.raises(ValueError, match="lengths"):
        Shear()(x, lengths[:3], gen())


# ------------------------------------------------------------------------------- plot and the CLI


def _tiny_dataset(n: int = 3, t: int = 20):
    import numpy as np

    from skelcl.store import SkeletonDataset

    x, lengths = make_batch(b=n, t=t, seed=5)
    x = (x * 0.2).numpy()
    return SkeletonDataset(x=x, lengths=lengths.numpy(), labels=np.arange(n) % 2, layout=NTU25,
                           class_names=["a", "b"], name="tiny")


def test_augmentation_rows_show_what_was_done():
    from skelcl.plot import augmentation_rows, show_frames

    ds = _tiny_dataset()
    rows = augmentation_rows(ds.x[0], int(ds.lengths[0]), seed=1)
    assert [r.label.split("\n")[0].split(":")[0] for r in rows] == [
        "original", "rotation", "shear", "reverse", "noise", "blur", "joint mask", "channel mask"]
    n = int(ds.lengths[0])
    assert all(r.x.shape == ds.x[0].shape for r in rows)
    assert (rows[3].x[:n] == ds.x[0][:n][::-1]).all()  # reverse is drawn with p = 1
    jm = rows[6]
    assert jm.marks is not None and jm.marks.any()
    assert (jm.x[jm.marks[:, None, :, None].repeat(2, 1).repeat(3, 3)] == 0).all()
    assert show_frames(20, 4) == [0, 6, 13, 19] and show_frames(1, 4) == [0]


def test_cli_show_augment_writes_png(tmp_path, monkeypatch, capsys):
    import skelcl.cli.augment as cli_aug
    from skelcl.cli import main

    monkeypatch.setattr(cli_aug, "load_dataset", lambda *a, **k: _tiny_dataset())
    out = tmp_path / "fig.png"
    assert main(["show-augment", "--out", str(out), "--index", "1", "--seed", "2", "--frames", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["show-augment", "--out", str(out), "--index", "9"]) == 2
    assert "--index 9 is outside 0..2" in capsys.readouterr().err


def test_cli_show_augment_synthetic(tmp_path):
    from skelcl.cli import main
    from skelcl.formats import load_dataset

    try:
        load_dataset("synthetic")
    except ConfigError as exc:  # the reader may not be registered yet in a partial checkout
        pytest.skip(f"synthetic dataset not available: {exc}")
    out = tmp_path / "syn.png"
    assert main(["show-augment", "--out", str(out), "--frames", "2"]) == 0
    assert out.stat().st_size > 10_000


def test_swap_persons_swaps_exactly_the_drawn_two_person_samples():
    from skelcl.augment import SwapPersons

    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 6, 2, 4, 3, generator=g)
    x[:4, :, 1] = 0  # one-person samples
    lengths = torch.full((16,), 6)
    op = SwapPersons(p=0.5)
    params = op.draw(x, lengths, torch.Generator().manual_seed(0))
    y = op.apply(x, lengths, params)
    swap = params["swap"]
    assert not swap[:4].any() and swap.any() and (~swap[4:]).any()
    assert torch.equal(y[swap][:, :, 0], x[swap][:, :, 1]) and torch.equal(y[swap][:, :, 1], x[swap][:, :, 0])
    assert torch.equal(y[~swap], x[~swap])
    assert torch.equal(op.apply(y, lengths, params), x)  # an involution


def test_crop_resamples_the_drawn_window_linearly():
    x = torch.zeros(2, 10, 1, 1, 1)
    x[0, :8, 0, 0, 0] = torch.arange(1, 9.0)
    x[1, :, 0, 0, 0] = torch.arange(1, 11.0)
    lengths = torch.tensor([8, 10])
    params = {"start": torch.tensor([2.0, 0.0]), "span": torch.tensor([4.0, 10.0])}
    y = Crop().apply(x, lengths, params)[..., 0, 0, 0]
    # sample 0: window frames 2..5 (values 3..6) stretched over 8 frames; padding stays zero
    assert torch.allclose(y[0, :8], torch.linspace(3, 6, 8))
    assert torch.all(y[0, 8:] == 0)
    # sample 1: the full window is the identity
    assert torch.allclose(y[1], x[1, :, 0, 0, 0])


def test_crop_draws_windows_inside_the_valid_frames():
    x, lengths = make_batch()
    p = Crop(min_ratio=0.3).draw(x, lengths, torch.Generator().manual_seed(3))
    n = lengths.float()
    assert torch.all(p["span"] >= 0.3 * n - 1e-5) and torch.all(p["span"] <= n + 1e-5)
    assert torch.all(p["start"] >= 0) and torch.all(p["start"] + p["span"] <= n + 1e-4)
    with pytest.raises(ConfigError, match="min_ratio"):
        Crop(min_ratio=0.0)


def test_decimate_is_a_coarser_recording_interpolated_back():
    """Against numpy: sample n evenly spaced points of the valid frames, interpolate back onto them."""
    import numpy as np
    x, lengths = make_batch()
    x[:, :, 1] = 0  # one person throughout: presence does not interfere with the reference
    op = Decimate(p=1.0, min_fraction=0.3)
    p = op.draw(x, lengths, gen(4))
    y = op.apply(x, lengths, p)
    for i in range(B):
        n, k = int(lengths[i]), int(p["points"][i])
        assert 2 <= k <= max(n, 2)
        xi = x[i, :n].reshape(n, -1).numpy().astype(np.float64)
        coarse = np.linspace(0, n - 1, k)
        ref = np.stack([np.interp(np.arange(n), coarse, np.interp(coarse, np.arange(n), col)) for col in xi.T], 1)
        np.testing.assert_allclose(y[i, :n].reshape(n, -1).numpy(), ref, atol=1e-5)
        assert torch.all(y[i, n:] == 0)
    # as many points as frames is the identity; so is p = 0
    full = {"apply": torch.ones(B, dtype=torch.bool), "points": lengths.float().clamp(min=2)}
    torch.testing.assert_close(op.apply(x, lengths, full), x)
    assert torch.equal(Decimate(p=0.0)(x, lengths, gen(4)), x)


def test_decimate_smooths_and_refuses_bad_settings():
    t = torch.linspace(0, 6 * math.pi, 60)
    x = torch.sin(t).repeat(4, 1)[:, :, None, None, None]
    lengths = torch.full((4,), 60)
    y = Decimate(p=1.0, min_fraction=0.2)(x, lengths, gen(2))
    rough = lambda z: z.diff(n=2, dim=1).abs().mean()  # noqa: E731
    assert rough(y) < rough(x)
    with pytest.raises(ConfigError, match="min_fraction"):
        Decimate(min_fraction=0.0)
    with pytest.raises(ConfigError, match="decimate.p"):
        Decimate(p=1.5)


# ------------------------------------------------------------------------------------------ mirror


def test_mirror_pairs_from_joint_names():
    assert mirror_pairs(KINECT20.joints) == [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18),
                                             (15, 19)]
    assert len(mirror_pairs(NTU25.joints)) == 10 and (3, 6) in mirror_pairs(SBU15.joints)
    assert mirror_pairs(["j0", "j1", "j2"]) == []


def test_mirror_swaps_twins_negates_x_and_is_its_own_inverse():
    x, lengths = make_batch()
    op = build_augment(["mirror"], joint_names=NTU25.joints).ops[0]
    assert isinstance(op, Mirror) and len(op.pairs) == 10
    p = op.draw(x, lengths, gen(5))
    flip = p["flip"]
    assert 0 < int(flip.sum()) < B
    y = op.apply(x, lengths, p)
    zero_where_input_zero(x, y)
    sign = torch.tensor([-1.0, 1.0, 1.0])
    for left, right in op.pairs:  # a left joint takes its right twin's place, reflected in x
        torch.testing.assert_close(y[flip][..., left, :], x[flip][..., right, :] * sign)
        torch.testing.assert_close(y[flip][..., right, :], x[flip][..., left, :] * sign)
    spine = [j for j in range(V) if all(j not in pair for pair in op.pairs)]
    torch.testing.assert_close(y[flip][..., spine, :], x[flip][..., spine, :] * sign)
    torch.testing.assert_close(y[~flip], x[~flip])
    torch.testing.assert_close(op.apply(y, lengths, p), x)  # twice: back where it was
    bones = torch.tensor(NTU25.bones)
    bl = lambda z: (z[..., bones[:, 0], :] - z[..., bones[:, 1], :]).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(bl(y).sort(-1).values, bl(x).sort(-1).values)  # same bones, twins swapped


def test_mirror_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="names no"):
        build_augment(["mirror"], joint_names=["j0", "j1", "j2"])
    with pytest.raises(ConfigError, match="each joint once"):
        Mirror(pairs=((1, 2), (2, 3)))
    with pytest.raises(ConfigError, match="axis"):
        Mirror(axis=3)
    x, lengths = make_batch()
    with pytest.raises(ConfigError, match="data has 25 joints"):
        Mirror(p=1.0, pairs=((1, 30),))(x, lengths, gen())
    # pairs given by the user are kept; without joint names nothing is filled in
    assert build_augment([{"mirror": {"pairs": [[1, 2]]}}], joint_names=NTU25.joints).ops[0].pairs == ((1, 2),)
    assert build_augment(["mirror"]).ops[0].pairs == ()
