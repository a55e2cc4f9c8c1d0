"""Typed configuration: one dataclass tree, YAML files in ``configs/``, dotted overrides.

    cfg = load_config("configs/sbu.yaml", overrides=["optim.lr=0.1", "train.epochs=10"])

Every checkpoint carries ``asdict(cfg)``, so a run can always be rebuilt from its own files.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class DataConfig:
    """Which data to read and how to preprocess it (see :class:`skelcl.store.Preprocess`).

    pretrain_on: which sequences unsupervised pretraining sees: ``train`` (default, the standard
        protocols) is the protocol's training split; ``all`` is every sequence of the dataset, the
        test split's included. Labels are never used, but ``all`` is transductive (the encoder has
        seen the test sequences, as a user who owns unlabelled recordings of the target camera or
        subjects would): never compare its figures with inductive ones.
    """

    dataset: str = "synthetic"
    root: str | None = None
    protocol: str = "xsub"
    preprocess: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    skip_bad: bool = False
    pretrain_on: str = "train"


@dataclass
class ModelConfig:
    """The encoder (paper: LSTM, 2x256 on NTU, 1x256 on small sets).

    encoder: ``rnn`` (the paper: ``cell``, ``layers``, ``hidden``, ``bidirectional``) or ``gcn``, a
        compact spatial-temporal graph convolution (:mod:`skelcl.graph`: ``channels``, ``strides``,
        ``kernel``; ``graph`` is the bone list and ``joints`` the joint count V, both filled from the
        dataset's joint layout when empty and kept in the resolved config so a checkpoint rebuilds
        without the data). The graph encoder always averages persons (``person_pool`` is for RNNs).
    frame_features: the RNN's input per frame: ``coords`` (the paper), ``distances`` (every pair of
        joints in the frame; view invariant) or ``coords+distances``.
    bone_input: the graph encoder also reads each joint's bone vector (joint minus parent; ``graph``
        must then list [child, parent] pairs, each joint a child at most once), and with
        ``motion`` the bones' velocity: the joint and bone streams of two-stream graph networks in one
        input. See :class:`skelcl.graph.GraphEncoder`. For the N-UCLA distillation student it
        changes nothing on average (88.4 +- 1.8 against 88.4 +- 0.9 linear, five seeds;
        docs/RESULTS.md, "Twenty-first round").
    """

    encoder: str = "rnn"
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 256
    bidirectional: bool = False
    tap: str = "masked"
    input_norm: str = "none"
    dropout: float = 0.0
    motion: bool = False
    person_pool: str = "concat"
    frame_features: str = "coords"
    channels: list[int] = field(default_factory=lambda: [64, 128, 256])
    strides: list[int] = field(default_factory=lambda: [2, 2, 1])
    kernel: int = 9
    graph: list[list[int]] = field(default_factory=list)
    joints: int = 0
    bone_input: bool = False


@dataclass
class ContrastConfig:
    """The contrastive learner (paper III-B).

    paradigm: ``queue`` (AS-CAL / MoCo), ``end_to_end`` (in-batch negatives) or ``memory_bank``.
    normalize: L2-normalise q and k (MoCo) instead of the paper's raw dot products. On by default:
        on SBU (5 folds) it gave 66.9 vs 61.8 linear top-1 and 77.6 vs 39.3 kNN (docs/RESULTS.md);
        ``*-paper.yaml`` configs turn it off and use tau 0.06 as the paper does.
    head: ``none`` | ``linear`` | ``mlp`` projection head with ``head_dim`` outputs.
    fill_queue: spend one epoch filling the queue with keys before training (released code).
    pool: which encoder output is contrasted: ``tap`` (temporal average of the hidden states, the
        paper's default) or ``last`` (the last valid hidden state h_T: the paper's "without TAP"
        variant of Fig. 5; evaluate it with ``probe.representation: last_q``) or ``tap_max`` (TAP
        concatenated with the temporal max of the same states: what ``probe.representation:
        cae_max`` reads out, so that the contrasted embedding and the probed one agree; 2E wide).
    cross_view: probability that a query's key is drawn from another camera's recording of the
        same performance (same instance in a synchronised multi-view dataset: N-UCLA, NTU) instead
        of from the same sequence; 0 (default) is the paper's single-sequence positives. Uses the
        datasets' camera correspondence, never labels; ``queue`` and ``end_to_end`` paradigms only.
        Samples without a training partner keep their own sequence as the key.
    exclude_group: keep, with each queued key, the id of the performance it records (the dataset's
        ``instance``, or the sample itself where there is none) and leave a query's own
        performance out of its negatives. With ``cross_view`` the other camera's recording of the
        query's performance is often still in the queue: without this it is pushed away.
    mine_k: from epoch ``mine_after`` on, each query also counts the ``mine_k`` queue keys most
        similar to its key (momentum encoder, no labels) as positives (nearest-neighbour mining,
        CrosSCLR / AimCLR); 0 (default) is plain InfoNCE. ``queue`` paradigm only.
    symmetric: also contrast the other way round (the key view through the query encoder against
        the query view through the key encoder) and average the two losses (MoCo v3's symmetrised
        loss); about twice the cost of a step. The queue still takes one key per sample.
        ``queue`` paradigm only.
    cross_view_both: with ``cross_view`` > 0, contrast every query with two positives instead of one
        drawn at random: its own second view and another camera's recording of the performance (two
        InfoNCE terms, averaged; the queue takes the own-view key). Samples without a partner use a
        second augmentation of their own sequence. ``queue`` paradigm only.
    reconstruct: weight of a second loss term, the mean squared error of a GRU decoder that
        rebuilds each query view's frames from its TAP alone (P&C's objective, Su et al. 2020,
        beside InfoNCE); 0 (default) is the paper's InfoNCE alone. The decoder is trained with the
        encoder and dropped afterwards. ``queue`` paradigm only.
    """

    paradigm: str = "queue"
    queue_size: int = 200
    momentum: float = 0.999
    temperature: float = 0.2
    normalize: bool = True
    head: str = "none"
    head_dim: int = 128
    bank_momentum: float = 0.5
    fill_queue: bool = False
    pool: str = "tap"
    cross_view: float = 0.0
    exclude_group: bool = False
    mine_k: int = 0
    mine_after: int = 0
    symmetric: bool = False
    cross_view_both: bool = False
    reconstruct: float = 0.0


@dataclass
class OptimConfig:
    """SGD with a learning-rate schedule (paper IV-B1: steps).

    schedule: ``step`` (the paper's: lr x ``gamma`` at each of ``milestones``) or ``cosine`` (lr
        decays to 0 along a half cosine over the epochs after the warm-up; ``milestones`` unused).
    warmup: epochs of linear warm-up from lr / (warmup + 1) before the schedule starts (0: none).
    optimizer: ``sgd`` (the paper's, with ``momentum``) or ``adamw`` (``momentum`` unused): the
        distillation regression (``distill``) barely moves under SGD at the contrastive lr.
    """

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 60
    milestones: list[int] = field(default_factory=lambda: [30])
    gamma: float = 0.1
    batch_size: int = 32
    schedule: str = "step"
    warmup: int = 0
    optimizer: str = "sgd"


@dataclass
class DistillConfig:
    """Distillation of pretrained encoders into this run's encoder (:mod:`skelcl.distill`).

    teachers: run folders or checkpoint files of encoders pretrained on the same dataset; empty = a
        contrastive pretraining (the default). Non-empty: the run trains its encoder to reproduce
        the teachers' frozen features instead.
    group_mean: average each target over the recordings of the same performance by the other
        cameras (datasets with ``meta["instance"]``: nucla, ntu), a view-invariant target.
    ema: 0 = the student is the trained network; in (0, 1) = keep an exponential moving average of
        its weights, updated every step with this decay (0.999: about the last 1000 steps), and make
        that average the run's encoder at the end (still one network). On N-UCLA: +1.3, +1.5, 0.0,
        -0.2, -0.2 over five seeds, no reliable gain (docs/RESULTS.md, "Nineteenth round"). With
        ``soup`` each student keeps its own average and the soup averages those: 90.2 against the
        plain soup's 90.2 on three seeds ("Thirty-first round").
    contrast: 0 = the regression alone; > 0 = add the run's InfoNCE (``contrast``: queue, momentum key
        encoder, ``cross_view`` keys) on the same student forward pass, with this weight, so the
        student also discriminates instances (needs paradigm queue; not with ``ema``, which uses the
        key encoder's slot). On N-UCLA at 0.1, 0.3 and 1.0: at or below the regression alone on
        both seeds tried, kNN lower on every run (docs/RESULTS.md, "Twentieth round").
    mixup: 0 = off; > 0 = the concentration a of Beta(a, a): each augmented sequence of a batch is
        mixed with its neighbour in the (shuffled) batch, x = l x_i + (1 - l) x_j, and regressed onto
        the same mixture of their targets, l ~ Beta(a, a) per sequence. A regulariser: the student
        sees inputs between the training sequences. Not with ``contrast`` (a mixed query has no
        positive key). On N-UCLA at 0.4: 89.7 and 86.6 on seeds 0 and 1 against 89.0 and 89.4
        without it, kNN lower on both (docs/RESULTS.md, "Twenty-second round").
    consistent: False = each target is the teachers' features of the raw sequence, computed once;
        True = the teachers also run, every step, on the very input the student sees (the same
        augmentation draws, applied to each teacher's own preprocessing; mixed with ``mixup``), and
        the target moves by what that input changes in their features: target(raw) + T(seen) - T(raw).
        Without ``group_mean`` that is T(seen), consistent teaching ("function matching"); with it,
        the view-invariant group mean shifted by the augmentation's effect. Costs a teacher forward
        pass per step (1.5x the time on N-UCLA). Not with ``contrast``; every teacher must read
        sequences of the student's shape. On N-UCLA it lowers the student: 87.2 +- 1.4 over five seeds
        without the group mean, 86.2 on two with it, against 88.4 +- 0.9 with fixed targets, kNN lower
        too (docs/RESULTS.md, "Twenty-third round").
    relation: 0 = off; > 0 = add, with this weight, a relational term (the similarity distributions of
        CompRess / SEED): for each sequence of a batch, a softmax over the cosine similarities of its
        target to every other pretraining sequence's target, and the same over its student readout
        (unit length) against a memory bank of the student's readouts of those sequences (refreshed
        as each batch passes); the loss is the KL divergence of the student's from the teachers'.
        The student's feature space then keeps the teachers' neighbourhoods, not only a linear map
        onto them. Not with ``mixup`` or ``consistent`` (their targets have no fixed neighbours). On
        N-UCLA it lowers the student: 83.6 and 84.3 at weight 1, 87.1 and 87.1 at 0.1, against 89.0
        and 89.4 without it on the same two seeds (docs/RESULTS.md, "Twenty-fifth round").
    relation_tau: the temperature of both softmaxes (0.1: on N-UCLA's group-mean targets about 45% of
        a sequence's mass falls on its other camera's recording and 41% on the rest of its class).
    soup: 0 or 1 = one student; K >= 2 = a weight soup of K students: one student is trained for the
        first ``soup_branch`` epochs (the trunk, ``OUT/trunk``), then K students continue from that
        checkpoint to the end, student j with ``train.seed`` + 100 j (its own data order and
        augmentation draws; student 0 is the plain run of this seed), in ``OUT/student-J``; the
        run's encoder (and distillation head) is the average of their weights, BatchNorm statistics
        included: one network. Costs ``soup_branch`` + K (epochs - ``soup_branch``) epochs. Students
        that share a trunk stay close enough to average; students from different initialisations
        do not. A killed soup resumes member by member. On N-UCLA (the five-block student, four
        teachers, branch 20; configs/nucla-distill-soup.yaml has K 4): K 4 gives 89.2 +- 1.5 over
        seeds 0-4 and K 2 88.9 +- 1.2, against 88.4 +- 0.9 for the plain student. The soup of four
        always beats the mean of its students, not always the plain student (docs/RESULTS.md,
        "Twenty-seventh" and "Twenty-eighth round"); over seven seeds 89.4 +- 1.3 ("Twenty-ninth round").
        K 8 is no better than K 4: 91.2 and 89.0 against 91.2 and 89.7 on seeds 0 and 1 ("Thirty-second
        round"). ``skelcl average`` averages any of a soup's students by hand.
    soup_branch: the trunk's epochs, in [1, optim.epochs). On N-UCLA (two students, 100 epochs) 20
        is the best on average of 5, 10, 20 and 40: branched at 5 the average falls below both
        students (88.4 and 87.3 against 90.3 and 89.2 at 20), at 10 it is about their mean, at 40 it
        gets 89.3 on average against 89.8 (docs/RESULTS.md, "Thirty-third round").
    soup_workers: how many of a soup's students train at once, each in its own process (1: one
        after another). Each uses ``train.threads`` threads, or an even share of the cores when that
        is 0. The students and their average are the same either way (bit-identical on N-UCLA at
        one thread each); two students' 10 epochs take 153 s instead of 294 s on a 2-core CPU
        (docs/RESULTS.md, "Twenty-ninth round"). A Python script that calls it needs an
        ``if __name__ == "__main__":`` guard (the processes are spawned).
    soup_vary: [] = every student under the run's settings (they differ in their seed only); else
        one entry per student (at most ``soup``; missing entries = none): a dotted override or a list
        of them (``""`` = none) that student j trains under from the branch on, so the soup averages
        students trained differently, the recipe of model soups (Wortsman et al., 2022). Only what
        the branched checkpoint can take may differ: ``augment``, ``distill.mixup``, ``optim.lr``
        (the student's schedule scaled by new / old lr) and ``optim.weight_decay``. Example:
        ``--set 'distill.soup_vary=["", "distill.mixup=0.4"]'``. On N-UCLA no better than students
        of different seeds: five students (plain, mixup 0.4, weight decay 0.05, lr x2, shear 1.0)
        90.2 against 90.4 on two seeds, four 89.4 against 90.2 on three (docs/RESULTS.md, "Thirty-fourth round").
    whiten: 0 = the targets as computed; alpha in (0, 1] = flatten their spectrum after the group
        mean: each principal direction's singular value s becomes s^(1 - alpha), total variance kept
        (1 = whitened), so the regression weighs the weak directions more. Not with ``consistent``.
        On N-UCLA at 0.5 it lowers the student: 86.2 and 87.3 against 89.0 and 89.4 on seeds 0
        and 1, kNN 88.4 and 86.4 against 91.4 and 90.1 (docs/RESULTS.md, "Twenty-ninth round").
    recompute_bn: False = the BatchNorm statistics as training leaves them (a soup: the average of
        its students'); True = re-estimated once training ends, from the pretraining split's raw
        sequences read as features are (:func:`skelcl.probe.recompute_bn`, SWA's ``update_bn``),
        because an average of statistics is not the averaged network's own, and training's follow
        augmented batches. A soup re-estimates its average only (its students are the plain ones).
        On N-UCLA it does not help: the soup of four 90.9 and 89.4 against 91.2 and 89.7 on seeds 0
        and 1, the plain student 88.4 and 89.2 against 89.0 and 89.4 (docs/RESULTS.md, "Thirtieth round").
    dense: 0 = the regression of the pooled readout alone; > 0 = add, with this weight, a per-step
        regression: each teacher's hidden states (not only their pooling) are resampled onto
        ``dense_steps`` evenly spaced points of the sequence, standardised like the pooled targets
        (group mean included), and a second linear head asks the student's states, resampled the
        same way, for them, step by step. The student is then told *when* its teachers see what,
        not only their summary over the sequence. Needs an augmentation that keeps time in place
        (no ``reverse`` or ``crop``); not with ``contrast``, ``mixup`` or ``consistent``.
        On N-UCLA it lowers the student on average at every setting tried: 87.1 at 1.0 and 88.5 at 0.1 (15 steps),
        87.3 at 1.0 on 3 steps, against 89.2 without it (mean of seeds 0 and 1; docs/RESULTS.md,
        "Thirty-sixth round").
    dense_steps: the number of points of that common time grid (an LSTM teacher has one state per
        frame, a strided graph encoder one per few frames; both are resampled onto it).
    """

    teachers: list[str] = field(default_factory=list)
    group_mean: bool = True
    ema: float = 0.0
    contrast: float = 0.0
    mixup: float = 0.0
    consistent: bool = False
    relation: float = 0.0
    relation_tau: float = 0.1
    soup: int = 0
    soup_branch: int = 20
    soup_workers: int = 1
    soup_vary: list[Any] = field(default_factory=list)
    whiten: float = 0.0
    recompute_bn: bool = False
    dense: float = 0.0
    dense_steps: int = 15


@dataclass
class TrainConfig:
    """Run-level settings."""

    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    threads: int = 0
    tensorboard: bool = True


@dataclass
class ProbeConfig:
    """Linear evaluation (paper IV-B2) and the other protocols.

    representation: ``cae`` (query TAP), ``cae+`` (query TAP ++ key TAP), ``k`` (key TAP),
        ``cae_max`` (query TAP ++ temporal max of the query's hidden states),
        ``last_q`` / ``last_k`` (last hidden states).
    standardize: standardise features (train-split statistics) before the linear classifier.
    person_symmetric: average each two-person sample's features with those of the same sample with
        its persons swapped (see :func:`skelcl.probe.encode`).
    restarts: train the linear probe this many times from different seeds and average the
        classifiers (still one linear classifier; 1 = the paper's single run). See
        :func:`skelcl.probe.linear_eval`.
    both_directions: concatenate the representation of each sequence and of its time reversal
        (see :func:`skelcl.probe.encode`; width doubles). N-UCLA, ``cae_max``, seeds 0-4: see
        docs/RESULTS.md, "N-UCLA, sixth round".
    finetune_epochs: epochs of the semi-supervised protocol's fine-tuning step. None = the released
        code's 35 / 15 / 10 for 1% / 10% / 50% labels; any other fraction (1.0 = fine-tuning with
        every label, the "fine-tune" protocol of later papers) needs it set.
    finetune_lr: that step's SGD learning rate (released code: 0.01, constant).
    finetune_augment: fine-tune on the run's pretraining augmentations (``augment``) rather than on
        the raw sequences (the released code: raw).
    """

    representation: str = "cae"
    lr: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    epochs: int = 90
    milestones: list[int] = field(default_factory=lambda: [15, 35, 60, 75])
    gamma: float = 0.5
    batch_size: int = 32
    standardize: bool = False
    knn_k: int = 20
    seed: int = 0
    person_symmetric: bool = False
    both_directions: bool = False
    restarts: int = 1
    finetune_epochs: int | None = None
    finetune_lr: float = 0.01
    finetune_augment: bool = False


@dataclass
class Config:
    """Everything a run needs."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    augment: list[Any] = field(default_factory=lambda: ["reverse", "shear"])
    model: ModelConfig = field(default_factory=ModelConfig)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a float as YAML 1.2 does (YAML 1.1, PyYAML's default,
    needs a dot, ``1.0e-3``, and reads ``1e-3`` as a string)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML text (config files, sweep specs, ``--set`` values) with :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") if args and args[0] is not Any else v
                for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``extra`` wins); lists are replaced, not merged."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("preprocess", "options"):
            out[k] = merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def split_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)`` (the value is parsed as YAML, see :func:`load_yaml`)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=0.1"`` -> ``{"optim": {"lr": 0.1}}``."""
    key, value = split_override(text)
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def find_file(name: str | Path, folder: Path) -> Path | None:
    """``name`` if it is a file, else ``folder/name.yaml`` or ``folder/name`` if one exists, else None."""
    for cand in (Path(name), folder / f"{name}.yaml", folder / str(name)):
        if cand.is_file():
            return cand
    return None


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a bundled config (``sbu`` -> configs/sbu.yaml)."""
    found = find_file(path, CONFIG_DIR)
    if found:
        return found
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(path)!r} not found (bundled configs: {', '.join(known)})")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base:
        bpath = resolve_config_path(base if Path(base).is_absolute() or not (path.parent / base).exists()
                                    else path.parent / base)
        if bpath in seen:
            raise ConfigError(f"{path}: circular 'base' chain")
        data = merge(_read_yaml(bpath, seen + (bpath,)), data)
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                extra: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (with an optional ``base:`` to inherit from), then apply overrides."""
    data: dict[str, Any] = _read_yaml(resolve_config_path(path)) if path else {}
    if extra:
        data = merge(data, extra)
    return config_from_dict(apply_overrides(data, overrides or []))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``key.sub=value`` override merged in, in order."""
    for o in overrides:
        data = merge(data, parse_override(o))
    return data


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def replace_in(cfg: Config, **sections: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with some section fields replaced: ``replace_in(cfg, optim={"lr": 0.1})``."""
    return config_from_dict(merge(cfg.to_dict(), sections))


# Keys that may differ between a run and the call that finds or resumes it: they move a run (another machine,
# folder or device), they do not change its results.
NEUTRAL_KEYS = ("name", "train.threads", "train.device", "train.tensorboard", "data.root", "distill.soup_workers")
_MISSING = object()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def config_diff(a: dict[str, Any], b: dict[str, Any], ignore: Sequence[str] = NEUTRAL_KEYS) -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key: a -> b``. A key that one
    side lacks counts as its default (a run saved before the key existed)."""
    defaults = _flatten(Config().to_dict())
    fa, fb = _flatten(a), _flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        if k in ignore or any(k.startswith(i + ".") for i in ignore):
            continue
        va, vb = fa.get(k, defaults.get(k, _MISSING)), fb.get(k, defaults.get(k, _MISSING))
        if va != vb and not (isinstance(va, (int, float)) and isinstance(vb, (int, float)) and float(va) == float(vb)):
            out.append(f"{k}: {'(absent)' if va is _MISSING else va!r} -> {'(absent)' if vb is _MISSING else vb!r}")
    return out


def diff_summary(diff: Sequence[str], limit: int = 4) -> str:
    """The first ``limit`` entries of a :func:`config_diff`, joined for a one-line error message."""
    return "; ".join(diff[:limit]) + (" ..." if len(diff) > limit else "")
