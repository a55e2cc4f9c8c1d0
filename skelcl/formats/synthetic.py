"""Reader: ``synthetic`` — procedurally generated skeleton actions on the NTU-25 layout.

The default dataset of ``skelcl demo`` and of the tests: no files, no downloads, generated in well
under a second, bit-identical for the same options. Each sample is one of 15 actions (12 by one
person, 3 by two interacting persons) performed by one of 10 simulated subjects seen from one of 3
camera views.

How a sample is made:

* a subject is a rest skeleton whose bone lengths are the base lengths times an overall height
  factor and a per-bone factor, plus a personal style (amplitude and tempo factors);
* an action drives a small set of joint angles over normalised time ``u`` in [0, 1] (torso pitch and
  lean, upper-arm / forearm / thigh / shin elevation and forward swing, body yaw, translation) with
  sinusoids and smoothsteps inside a randomly placed activity window; a sample draws its own window,
  number of cycles, phase and amplitude;
* forward kinematics places every joint as parent + bone length x unit direction, so bone lengths are
  constant over time (exactly, before noise); feet are kept on the ground;
* a camera with a random yaw (the ``view`` bin), a small pitch and a small translation maps the scene
  to camera coordinates (y up, metres, Kinect-like: x grows to the sensor's left, z away from it);
  Gaussian jitter (``noise``) plays the sensor.

Classes share body parts and differ in direction and timing (wave vs. circle with the same hand,
punch vs. handshake, squat vs. jump vs. bow, walk in place vs. approach), so that a linear classifier on
raw coordinates is far from perfect and learned representations have room to help. No class is the
time reversal of another (reverse augmentation would make such a pair identical). Every sequence
starts from a relaxed stance, so the first frame says little about the class.

Views: the camera yaw is uniform in [-max_yaw, max_yaw] (default +-90 degrees) split into 3 equal
bins, view 1 being the most negative; ``xview`` tests on view 1, so it measures extrapolation to
unseen viewpoints (``Preprocess(view_align=True)`` removes most of the gap).

Measured with the defaults (seed 0, standardised logistic regression, test top-1): flattened first
frame 13 % (xsub) / 13 % (xview); whole sequence 72 % / 36 %; whole sequence with view_align 84 % / 87 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..layouts import NTU25
from ..store import Preprocess, SkeletonDataset, to_canonical
from . import register_format

# --- joints (NTU-25, 0-based) ------------------------------------------------------------------------
_J = {name: i for i, name in enumerate(NTU25.joints)}
LEFT, RIGHT = 0, 1  # side index into the (…, 2) angle arrays; side sign s = +1 left, -1 right
_SIGN = (1.0, -1.0)

# FK edges (child, parent, base length in metres); one per layout bone.
_EDGES: tuple[tuple[str, str, float], ...] = (
    ("spine_mid", "spine_base", 0.24), ("spine_shoulder", "spine_mid", 0.24),
    ("neck", "spine_shoulder", 0.07), ("head", "neck", 0.13),
    ("shoulder_left", "spine_shoulder", 0.17), ("elbow_left", "shoulder_left", 0.28),
    ("wrist_left", "elbow_left", 0.25), ("hand_left", "wrist_left", 0.07),
    ("thumb_left", "hand_left", 0.05), ("handtip_left", "thumb_left", 0.05),
    ("shoulder_right", "spine_shoulder", 0.17), ("elbow_right", "shoulder_right", 0.28),
    ("wrist_right", "elbow_right", 0.25), ("hand_right", "wrist_right", 0.07),
    ("thumb_right", "hand_right", 0.05), ("handtip_right", "thumb_right", 0.05),
    ("hip_left", "spine_base", 0.09), ("knee_left", "hip_left", 0.42),
    ("ankle_left", "knee_left", 0.40), ("foot_left", "ankle_left", 0.10),
    ("hip_right", "spine_base", 0.09), ("knee_right", "hip_right", 0.42),
    ("ankle_right", "knee_right", 0.40), ("foot_right", "ankle_right", 0.10),
)
_E = {child: i for i, (child, _, _) in enumerate(_EDGES)}
_BASE_LEN = np.array([length for _, _, length in _EDGES])
_GROUND = [_J["ankle_left"], _J["foot_left"], _J["ankle_right"], _J["foot_right"]]

NUM_SUBJECTS = 10
XSUB_TRAIN = (1, 2, 3, 4, 5, 6)  # subjects; 7-10 test
NUM_VIEWS = 3
XVIEW_TRAIN = (2, 3)  # views; view 1 tests (as NTU's cross-view: cameras 2, 3 train, camera 1 tests)
# sample k of every class gets subject _SUBJECT_CYCLE[k % 10] and view 1 + k % 3: with two or more
# samples per class both splits of both protocols contain every class.
_SUBJECT_CYCLE = (1, 7, 2, 8, 3, 9, 4, 10, 5, 6)


# --- small vectorised helpers --------------------------------------------------------------------------
def _smooth(x: np.ndarray) -> np.ndarray:
    """Smoothstep 3x^2 - 2x^3 of x clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _mix(a: np.ndarray, b: np.ndarray | float, e: np.ndarray) -> np.ndarray:
    return a + (b - a) * e


def _limb(alpha: np.ndarray, fwd: np.ndarray, sign: float) -> np.ndarray:
    """Unit direction (…, 3) in the body frame (x to the person's left, y up, z forward).

    ``alpha`` rotates a hanging limb outward in the frontal plane (0 down, pi/2 sideways, pi up;
    beyond pi it crosses the midline); the result is then rotated about the lateral axis by ``fwd``
    (a hanging limb swings forward for fwd > 0, a raised one tilts backward).
    """
    sa, ca = np.sin(alpha), np.cos(alpha)
    return np.stack([sign * sa, -ca * np.cos(fwd), ca * np.sin(fwd)], axis=-1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rot_y(a: np.ndarray) -> np.ndarray:
    """Rotations about y, (…, 3, 3); +pi/2 maps the forward axis z onto x."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


# --- pose parameters and forward kinematics ---------------------------------------------------------
@dataclass
class _Pose:
    """Joint angles of one person over time; scalars (n, T), sided arrays (n, T, 2) [left, right].

    pitch / lean: torso forward / sideways tilt; head: extra head pitch; yaw: body turn about y;
    fwd: walking distance along the body's initial forward axis; lift: height above the ground (m);
    ua, uf / fa, ff: upper-arm / forearm (alpha, fwd) as in :func:`_limb`; ta, tf / sa, sf: thigh /
    shin likewise.
    """

    pitch: np.ndarray
    lean: np.ndarray
    head: np.ndarray
    yaw: np.ndarray
    fwd: np.ndarray
    lift: np.ndarray
    ua: np.ndarray
    uf: np.ndarray
    fa: np.ndarray
    ff: np.ndarray
    ta: np.ndarray
    tf: np.ndarray
    sa: np.ndarray
    sf: np.ndarray


def _forward_kinematics(pose: _Pose, bone: np.ndarray) -> np.ndarray:
    """Joint positions (n, T, 25, 3) in the body frame, spine base above the origin, feet on y = 0.

    Args:
        pose: joint angles.
        bone: (n, 24) bone lengths in ``_EDGES`` order.
    """
    n, t = pose.pitch.shape
    x = np.zeros((n, t, NTU25.num_joints, 3))
    L = bone[:, None, :, None]  # (n, 1, 24, 1)
    ex = np.array([1.0, 0.0, 0.0])
    ey = np.array([0.0, 1.0, 0.0])
    ez = np.array([0.0, 0.0, 1.0])

    def put(child: str, parent: str, direction: np.ndarray) -> None:
        x[:, :, _J[child]] = x[:, :, _J[parent]] + L[:, :, _E[child]] * direction

    cl, sl = np.cos(pose.lean), np.sin(pose.lean)
    up = np.stack([sl, cl * np.cos(pose.pitch), cl * np.sin(pose.pitch)], -1)
    hp = pose.pitch + pose.head
    head_up = np.stack([sl, cl * np.cos(hp), cl * np.sin(hp)], -1)
    put("spine_mid", "spine_base", up)
    put("spine_shoulder", "spine_mid", up)
    put("neck", "spine_shoulder", up)
    put("head", "neck", head_up)
    for side, name in ((LEFT, "left"), (RIGHT, "right")):
        s = _SIGN[side]
        put(f"shoulder_{name}", "spine_shoulder", _unit(s * ex - 0.15 * up))
        put(f"elbow_{name}", f"shoulder_{name}", _limb(pose.ua[..., side], pose.uf[..., side], s))
        fore = _limb(pose.fa[..., side], pose.ff[..., side], s)
        put(f"wrist_{name}", f"elbow_{name}", fore)
        put(f"hand_{name}", f"wrist_{name}", fore)
        put(f"thumb_{name}", f"hand_{name}", _unit(fore + 0.8 * ez - 0.4 * s * ex))
        put(f"handtip_{name}", f"thumb_{name}", fore)
        put(f"hip_{name}", "spine_base", np.broadcast_to(_unit(s * ex - 0.35 * ey), up.shape))
        put(f"knee_{name}", f"hip_{name}", _limb(pose.ta[..., side], pose.tf[..., side], s))
        shin = _limb(pose.sa[..., side], pose.sf[..., side], s)
        put(f"ankle_{name}", f"knee_{name}", shin)
        put(f"foot_{name}", f"ankle_{name}", _unit(ez + 0.3 * shin))
    ground = -x[:, :, _GROUND, 1].min(-1)  # (n, T): lift so that the lowest foot joint touches y = 0
    x[..., 1] += (ground + pose.lift)[..., None]
    return x


# arm habits in rest poses: probabilities and (ua, uf, fa, ff) of none / hip / chest / behind the back
_HABIT_P = np.array([0.55, 0.15, 0.15, 0.15])
_HABIT_ANGLES = tuple(np.array(v) for v in ((0.0, 0.55, 0.1, 0.1), (0.0, -0.3, 0.3, -0.4),
                                            (0.0, -1.0, -0.9, -0.6), (0.0, 0.3, 1.4, -0.6)))


# --- the generation context: one class, n samples ---------------------------------------------------
class _Ctx:
    """Random draws and time axes for ``n`` samples of one class (all arrays (n, T) or (n, 1))."""

    def __init__(self, rng: np.random.Generator, u: np.ndarray, amp: np.ndarray, tempo: np.ndarray) -> None:
        self.rng = rng
        self.u = u  # (n, T) normalised time, 0 at the first frame, 1 at the last valid frame
        self.n = u.shape[0]
        self.amp = amp  # (n, 1) amplitude factor (sample x subject style)
        self.tempo = tempo  # (n, 1) subject tempo factor for cycle counts

    def uni(self, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, size=(self.n, 1))

    def coin(self, p: float = 0.5) -> np.ndarray:
        return (self.rng.random((self.n, 1)) < p).astype(float)

    def cycles(self, lo: float, hi: float) -> np.ndarray:
        return self.uni(lo, hi) * self.tempo

    def window(self, ramp: tuple[float, float] = (0.12, 0.25)) -> tuple[np.ndarray, np.ndarray]:
        """Local phase P in [0, 1] over a random activity window and its envelope E (0 at both ends)."""
        width = self.uni(0.45, 1.0)  # the action takes 45-100 % of the sequence
        a = self.uni(0.0, 1.0) * (1.0 - width)
        b = a + width
        r = self.uni(*ramp)
        p = np.clip((self.u - a) / (b - a), 0.0, 1.0)
        p = p + self.uni(-0.12, 0.12) * np.sin(np.pi * p)  # uneven speed inside the window
        return p, _smooth(p / r) * _smooth((1.0 - p) / r)

    def rest(self) -> _Pose:
        """A relaxed standing pose with per-sample variation and a slow idle sway."""
        n, t = self.u.shape
        u = self.u

        def sway(amp: float, sided: bool = False) -> np.ndarray:
            shape = (n, 1, 2) if sided else (n, 1)
            f = self.rng.uniform(0.3, 1.2, size=shape)
            ph = self.rng.uniform(0, 2 * np.pi, size=shape)
            uu = u[..., None] if sided else u
            return amp * np.sin(2 * np.pi * f * uu + ph)

        def sided(lo: float, hi: float) -> np.ndarray:
            return self.rng.uniform(lo, hi, size=(n, 1, 2))

        zeros = np.zeros((n, t))
        ua = 0.12 + sided(-0.05, 0.12) + sway(0.04, True)
        uf = sided(-0.12, 0.15) + sway(0.05, True)
        fa = ua - 0.05
        ff = uf + sided(0.05, 0.4)
        # a habit per arm: none, hand on the hip, hand at the chest, hand behind the back; actions that
        # use the arm override it, the others leave it in place
        habit = np.searchsorted(np.cumsum(_HABIT_P), self.rng.random((n, 1, 2)))
        has = habit > 0
        ua, uf, fa, ff = (np.where(has, table[habit] + sided(-0.1, 0.1), value)
                          for table, value in zip(_HABIT_ANGLES, (ua, uf, fa, ff)))
        ta = 0.05 + sided(-0.02, 0.06)
        tf = sided(-0.05, 0.12)
        return _Pose(
            pitch=self.uni(-0.05, 0.12) + sway(0.03),
            lean=self.uni(-0.05, 0.05) + sway(0.03),
            head=self.uni(-0.1, 0.25) + sway(0.05),
            yaw=self.uni(-0.35, 0.35) + sway(0.05),
            fwd=zeros.copy(), lift=zeros.copy(),
            ua=ua + zeros[..., None], uf=uf + zeros[..., None],
            fa=fa + zeros[..., None], ff=ff + zeros[..., None],
            ta=ta + zeros[..., None], tf=tf + zeros[..., None],
            sa=ta + zeros[..., None], sf=tf - sided(0.0, 0.12) + zeros[..., None],
        )


# Each action returns the poses of person 1 and (for interactions) person 2, and the distance
# between the two at the start (metres). Angles are in radians.
_Action = Callable[[_Ctx], tuple[_Pose, "_Pose | None", "np.ndarray | None"]]


def _raise_arm_side(p: _Pose, side: int, c: _Ctx, e: np.ndarray) -> None:
    """Upper arm up sideways, from low (elbow near the waist) to above the shoulder, slightly forward."""
    p.ua[..., side] = _mix(p.ua[..., side], c.uni(0.5, 1.8), e)
    p.uf[..., side] = _mix(p.uf[..., side], c.uni(0.0, 0.6), e)


def _wave(side: int) -> _Action:
    def act(c: _Ctx) -> tuple[_Pose, None, None]:
        p = c.rest()
        ph, e = c.window()
        k, phase = c.cycles(2.0, 4.0), c.uni(0, 2 * np.pi)
        _raise_arm_side(p, side, c, e)
        swing = 0.45 * c.amp * np.sin(2 * np.pi * k * ph + phase)  # side to side in the frontal plane
        p.fa[..., side] = _mix(p.fa[..., side], np.pi - 0.3 + swing, e)
        p.ff[..., side] = _mix(p.ff[..., side], c.uni(-0.3, 0.0), e)
        return p, None, None

    return act


def _circle_right(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    k, phase = c.cycles(1.5, 3.0), c.uni(0, 2 * np.pi)
    turn = c.coin() * 2 - 1  # clockwise or anticlockwise
    front = c.coin(0.4)  # circles with the arm stretched forward instead of raised sideways
    w = 2 * np.pi * k * ph + phase
    cw, sw = 0.35 * c.amp * np.cos(w), 0.45 * c.amp * turn * np.sin(w)
    side_ua, side_uf = c.uni(0.5, 1.8), c.uni(0.0, 0.6)
    front_uf = c.uni(0.9, 1.5)
    targets = {
        "ua": front * 0.2 + (1 - front) * side_ua,
        "uf": front * front_uf + (1 - front) * side_uf,
        "fa": front * (0.15 + cw) + (1 - front) * (np.pi - 0.35 + cw),
        "ff": front * (front_uf + sw) + (1 - front) * (-0.15 + sw),
    }
    for name, target in targets.items():
        arr = getattr(p, name)
        arr[..., RIGHT] = _mix(arr[..., RIGHT], target, e)
    return p, None, None


def _raise_both(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    _, e = c.window(ramp=(0.25, 0.45))
    top = c.uni(1.5, 2.95)  # shoulder height to overhead
    plane = c.uni(-0.45, 0.1)  # raised overhead in a plane tilted forward (< 0) or backward
    for s in (LEFT, RIGHT):
        p.ua[..., s] = _mix(p.ua[..., s], top, e)
        p.uf[..., s] = _mix(p.uf[..., s], plane, e)
        p.fa[..., s] = _mix(p.fa[..., s], top + 0.1, e)
        p.ff[..., s] = _mix(p.ff[..., s], plane, e)
    return p, None, None


def _pulses(ph: np.ndarray, k: np.ndarray, sharp: float = 2.0) -> np.ndarray:
    """k smooth pulses 0 -> 1 -> 0 over ph in [0, 1]."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * k * ph)) ** sharp


def _guard(p: _Pose, sides: Sequence[int], e: np.ndarray) -> None:
    """Elbows bent back, fists in front of the chest."""
    for s in sides:
        p.ua[..., s] = _mix(p.ua[..., s], 0.25, e)
        p.uf[..., s] = _mix(p.uf[..., s], -0.35, e)
        p.fa[..., s] = _mix(p.fa[..., s], 0.1, e)
        p.ff[..., s] = _mix(p.ff[..., s], 1.3, e)


def _punch(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    k = np.round(c.uni(0.5, 3.49)).clip(1, 3)  # 1-3 punches
    _guard(p, (LEFT, RIGHT), e * c.coin(0.6))
    q = _pulses(ph, k) * e
    reach = np.pi / 2 - 0.2 + 0.15 * c.amp
    p.ua[..., RIGHT] = _mix(p.ua[..., RIGHT], 0.15, q)
    p.uf[..., RIGHT] = _mix(p.uf[..., RIGHT], reach, q)
    p.fa[..., RIGHT] = _mix(p.fa[..., RIGHT], 0.1, q)
    p.ff[..., RIGHT] = _mix(p.ff[..., RIGHT], reach, q)
    p.pitch = p.pitch + 0.12 * q
    return p, None, None


def _kick(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    k = np.round(c.uni(0.5, 2.49)).clip(1, 2)
    q = _pulses(ph, k, 1.5) * e
    height = c.uni(0.6, 1.1) + 0.3 * c.amp
    p.tf[..., RIGHT] = _mix(p.tf[..., RIGHT], height, q)
    p.sf[..., RIGHT] = p.tf[..., RIGHT] - 1.1 * np.sin(np.pi * q)  # knee chambers, then extends
    p.pitch = p.pitch - 0.15 * q
    for s in (LEFT, RIGHT):
        p.ua[..., s] = p.ua[..., s] + 0.35 * q
    return p, None, None


def _squat(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    _, e = c.window(ramp=(0.25, 0.45))
    depth = c.amp * c.uni(0.5, 1.15)
    arms_forward = c.coin()
    for s in (LEFT, RIGHT):
        p.tf[..., s] = _mix(p.tf[..., s], 1.3 * depth, e)
        p.sf[..., s] = _mix(p.sf[..., s], -0.55 * depth, e)
        fwd = arms_forward * 1.35 + (1 - arms_forward) * 0.3
        p.uf[..., s] = _mix(p.uf[..., s], fwd, e)
        p.ff[..., s] = _mix(p.ff[..., s], fwd + 0.2, e)
    p.pitch = _mix(p.pitch, 0.45 * depth, e)
    return p, None, None


def _jump(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window(ramp=(0.05, 0.12))
    k = np.round(c.uni(0.5, 2.49)).clip(1, 2)
    cyc = (ph * k) % 1.0  # each jump: crouch, flight, landing crouch
    crouch = np.exp(-((cyc - 0.22) / 0.1) ** 2) + np.exp(-((cyc - 0.8) / 0.1) ** 2)
    air = np.clip(np.sin(np.pi * (cyc - 0.38) / 0.26), 0, None) * ((cyc > 0.38) & (cyc < 0.64))
    crouch, air = crouch * e, air * e
    p.lift = p.lift + 0.25 * c.amp * air
    for s in (LEFT, RIGHT):
        p.tf[..., s] = p.tf[..., s] + 0.9 * crouch + 0.25 * air
        p.sf[..., s] = p.sf[..., s] - 0.5 * crouch - 0.15 * air
        p.uf[..., s] = p.uf[..., s] - 0.6 * crouch + 2.2 * c.amp * air  # swing back, then up
        p.ff[..., s] = p.ff[..., s] - 0.5 * crouch + 2.4 * c.amp * air
    p.pitch = p.pitch + 0.35 * crouch
    return p, None, None


def _gait(p: _Pose, c: _Ctx, ph: np.ndarray, e: np.ndarray, k: np.ndarray, knee_lift: float,
          swing: float, arm: float) -> None:
    """Alternating leg motion: knee lifts (``knee_lift``) and fore-aft thigh swing (``swing``)."""
    phase = c.uni(0, 2 * np.pi)
    for s, shift in ((LEFT, 0.0), (RIGHT, np.pi)):
        w = np.sin(2 * np.pi * k * ph + phase + shift)
        up = np.clip(w, 0, None) ** 1.5
        p.tf[..., s] = p.tf[..., s] + e * (knee_lift * c.amp * up + swing * c.amp * w)
        p.sf[..., s] = p.sf[..., s] + e * (swing * c.amp * w - (0.3 * knee_lift + 1.2 * swing) * up)
        p.uf[..., 1 - s] = p.uf[..., 1 - s] + e * arm * c.amp * w  # opposite arm swings with the leg
        p.ff[..., 1 - s] = p.ff[..., 1 - s] + e * (arm * c.amp * w + 0.3)


def _walk_in_place(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    _gait(p, c, ph, e, c.cycles(1.5, 3.0), knee_lift=1.0, swing=0.0, arm=0.4)
    return p, None, None


def _bow(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    _, e = c.window(ramp=(0.25, 0.45))
    p.pitch = _mix(p.pitch, c.uni(0.3, 0.6) + 0.4 * c.amp, e)
    p.head = p.head + 0.3 * e
    together = c.coin(0.4)  # hands folded in front vs. hanging
    for s in (LEFT, RIGHT):
        p.fa[..., s] = _mix(p.fa[..., s], p.fa[..., s] - 0.5 * together, e)
        p.ff[..., s] = _mix(p.ff[..., s], p.ff[..., s] + 0.5 * together, e)
    return p, None, None


def _turn_around(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    direction = c.coin() * 2 - 1
    p.yaw = p.yaw + direction * np.pi * c.uni(0.75, 1.1) * _smooth(ph)
    _gait(p, c, ph, e, c.cycles(1.5, 2.5), knee_lift=0.35, swing=0.0, arm=0.1)
    return p, None, None


def _clap(c: _Ctx) -> tuple[_Pose, None, None]:
    p = c.rest()
    ph, e = c.window()
    k, phase = c.cycles(2.0, 5.0), c.uni(0, 2 * np.pi)
    together = 0.5 + 0.5 * np.cos(2 * np.pi * k * ph + phase)
    height = c.uni(0.3, 1.8)  # in front of the belly to above the head
    for s in (LEFT, RIGHT):
        p.ua[..., s] = _mix(p.ua[..., s], 0.15, e)
        p.uf[..., s] = _mix(p.uf[..., s], height, e)
        p.fa[..., s] = _mix(p.fa[..., s], -0.25 - 0.5 * c.amp * together, e)
        p.ff[..., s] = _mix(p.ff[..., s], height + 0.75, e)
    return p, None, None


def _approach(c: _Ctx) -> tuple[_Pose, _Pose, np.ndarray]:
    p, q = c.rest(), c.rest()
    ph, e = c.window(ramp=(0.08, 0.15))
    _gait(p, c, ph, e, c.cycles(1.5, 3.0), knee_lift=0.2, swing=0.45, arm=0.35)
    p.fwd = c.uni(1.0, 1.6) * ph
    return p, q, c.uni(2.6, 3.2)


def _handshake(c: _Ctx) -> tuple[_Pose, _Pose, np.ndarray]:
    p, q = c.rest(), c.rest()
    ph, e = c.window()
    k, phase = c.cycles(2.0, 4.0), c.uni(0, 2 * np.pi)
    shake = 0.2 * c.amp * np.sin(2 * np.pi * k * ph + phase)
    for person in (p, q):
        person.ua[..., RIGHT] = _mix(person.ua[..., RIGHT], 0.12, e)
        person.uf[..., RIGHT] = _mix(person.uf[..., RIGHT], 0.55 + 0.5 * shake, e)
        person.fa[..., RIGHT] = _mix(person.fa[..., RIGHT], -0.15, e)
        person.ff[..., RIGHT] = _mix(person.ff[..., RIGHT], 1.3 + shake, e)
        person.pitch = person.pitch + 0.1 * e
    return p, q, c.uni(0.9, 1.15)


def _push(c: _Ctx) -> tuple[_Pose, _Pose, np.ndarray]:
    p, q = c.rest(), c.rest()
    ph, e = c.window()
    _guard(p, (LEFT, RIGHT), e)
    hit = c.uni(0.3, 0.5)
    thrust = _smooth((ph - hit + 0.12) / 0.12) * (1 - _smooth((ph - hit - 0.15) / 0.2)) * e
    for s in (LEFT, RIGHT):
        p.uf[..., s] = _mix(p.uf[..., s], 1.35, thrust)
        p.ff[..., s] = _mix(p.ff[..., s], 1.5, thrust)
        p.ua[..., s] = _mix(p.ua[..., s], 0.1, thrust)
    p.pitch = p.pitch + 0.25 * thrust
    # the other person is knocked back: leans back, steps back with one leg, arms fly up
    react = _smooth((ph - hit) / 0.15) * (1 - _smooth((ph - hit - 0.35) / 0.25)) * c.amp
    leg = (c.coin() > 0).astype(int)[:, 0]
    idx = np.arange(c.n)
    q.pitch = q.pitch - 0.35 * react
    q.tf[idx, :, leg] = q.tf[idx, :, leg] - 0.45 * react[idx]
    q.sf[idx, :, leg] = q.sf[idx, :, leg] - 0.55 * react[idx]
    for s in (LEFT, RIGHT):
        q.uf[..., s] = q.uf[..., s] + 0.7 * react
        q.ff[..., s] = q.ff[..., s] + 1.0 * react
    q.fwd = -0.5 * react
    return p, q, c.uni(0.7, 0.85)


@dataclass(frozen=True)
class SyntheticClass:
    key: str
    name: str
    persons: int
    action: _Action


CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("wave_right", "wave right hand", 1, _wave(RIGHT)),
    SyntheticClass("wave_left", "wave left hand", 1, _wave(LEFT)),
    SyntheticClass("circle_right", "circle right hand", 1, _circle_right),
    SyntheticClass("raise_both", "raise both arms", 1, _raise_both),
    SyntheticClass("punch", "punch forward", 1, _punch),
    SyntheticClass("kick", "kick forward", 1, _kick),
    SyntheticClass("squat", "squat", 1, _squat),
    SyntheticClass("jump", "jump", 1, _jump),
    SyntheticClass("walk_in_place", "walk in place", 1, _walk_in_place),
    SyntheticClass("bow", "bow", 1, _bow),
    SyntheticClass("turn_around", "turn around", 1, _turn_around),
    SyntheticClass("clap", "clap hands", 1, _clap),
    SyntheticClass("approach", "approach another person", 2, _approach),
    SyntheticClass("handshake", "shake hands", 2, _handshake),
    SyntheticClass("push", "push another person", 2, _push),
)
CLASS_KEYS = tuple(cl.key for cl in CLASSES)


# --- subjects, cameras, assembling samples ------------------------------------------------------------
def _subjects(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-subject bone lengths (S, 24), amplitude style (S,) and tempo style (S,); subject s at row s-1."""
    rng = np.random.default_rng([seed, 1_000_003])
    height = rng.uniform(0.86, 1.14, size=(NUM_SUBJECTS, 1))
    per_bone = rng.uniform(0.93, 1.07, size=(NUM_SUBJECTS, len(_EDGES)))
    amp = rng.uniform(0.85, 1.15, size=NUM_SUBJECTS)
    tempo = rng.uniform(0.85, 1.15, size=NUM_SUBJECTS)
    return _BASE_LEN[None] * height * per_bone, amp, tempo


def _place(pose: _Pose, bone: np.ndarray, facing: np.ndarray, base_x: np.ndarray) -> np.ndarray:
    """Scene coordinates (n, T, 25, 3) of one person facing ``facing`` (radians about y) at x = base_x."""
    body = _forward_kinematics(pose, bone)
    rot = _rot_y(facing + pose.yaw)  # (n, T, 3, 3)
    scene = np.einsum("ntij,ntvj->ntvi", rot, body)
    heading = np.concatenate([np.sin(facing), np.cos(facing)], axis=1)  # (n, 2): x, z of forward
    scene[..., 0] += (base_x + pose.fwd * heading[:, :1])[..., None]
    scene[..., 2] += (pose.fwd * heading[:, 1:])[..., None]
    return scene


def _generate_class(ci: int, seed: int, n: int, frames_range: tuple[int, int], noise: float,
                    max_yaw: float, bodies: np.ndarray, style_amp: np.ndarray,
                    style_tempo: np.ndarray) -> dict[str, Any]:
    """All samples of class ``CLASSES[ci]``: a list of (T_i, 2, 25, 3) arrays plus subject and view."""
    spec = CLASSES[ci]
    rng = np.random.default_rng([seed, ci])  # keyed by the class, so a class subset gives the same data
    k = np.arange(n)
    subject = np.array(_SUBJECT_CYCLE)[k % NUM_SUBJECTS]
    view = 1 + k % NUM_VIEWS
    lengths = rng.integers(frames_range[0], frames_range[1] + 1, size=n)
    tmax = int(lengths.max())
    u = np.minimum(np.arange(tmax)[None, :] / np.maximum(lengths[:, None] - 1, 1), 1.0)
    amp = rng.uniform(0.75, 1.25, size=(n, 1)) * style_amp[subject - 1, None]
    ctx = _Ctx(rng, u, amp, style_tempo[subject - 1, None])
    p1, p2, distance = spec.action(ctx)

    # camera: yaw inside the view's bin, small pitch, height and offset
    bin_width = 2 * max_yaw / NUM_VIEWS
    yaw = -max_yaw + bin_width * (view - 1 + rng.uniform(0, 1, size=n))
    pitch = rng.uniform(-10, 10, size=n)
    cam_rot = _rot_x(np.deg2rad(pitch)) @ _rot_y(np.pi + np.deg2rad(yaw))  # (n, 3, 3)
    cam_t = np.stack([rng.uniform(-0.3, 0.3, n), -rng.uniform(0.7, 1.1, n), rng.uniform(2.6, 3.6, n)], -1)

    x = np.zeros((n, tmax, 2, NTU25.num_joints, 3))
    if p2 is None:
        x[:, :, 0] = _place(p1, bodies[subject - 1], np.zeros((n, 1)), np.zeros((n, 1)))
    else:
        # the partner is another subject of the same split half (no test body leaks into training)
        train = np.isin(subject, XSUB_TRAIN)
        first = np.where(train, 1, len(XSUB_TRAIN) + 1)  # subjects of a half are first..first+size-1
        size = np.where(train, len(XSUB_TRAIN), NUM_SUBJECTS - len(XSUB_TRAIN))
        partner = first + (subject - first + rng.integers(1, size)) % size
        half = distance / 2
        x[:, :, 0] = _place(p1, bodies[subject - 1], np.full((n, 1), np.pi / 2), -half)
        x[:, :, 1] = _place(p2, bodies[partner - 1], np.full((n, 1), -np.pi / 2), half)
    x = np.einsum("nij,ntmvj->ntmvi", cam_rot, x) + cam_t[:, None, None, None, :]
    if p2 is None:
        x[:, :, 1] = 0.0
    if noise > 0:
        m = 1 if p2 is None else 2
        x[:, :, :m] += rng.normal(0.0, noise, size=x[:, :, :m].shape)
    return {"seqs": [x[i, : lengths[i]] for i in range(n)], "subject": subject, "view": view}


def _parse_classes(classes: Any) -> list[int]:
    if classes is None or classes == "" or classes == "all":
        return list(range(len(CLASSES)))
    if isinstance(classes, (int, np.integer)) or (isinstance(classes, str) and classes.strip().isdigit()):
        k = int(classes)
        if not 2 <= k <= len(CLASSES):
            raise ConfigError(f"synthetic: option classes={k} must be between 2 and {len(CLASSES)}")
        return list(range(k))
    names = [s.strip() for s in classes.split(",")] if isinstance(classes, str) else [str(s) for s in classes]
    bad = [s for s in names if s not in CLASS_KEYS]
    if bad:
        raise ConfigError(f"synthetic: unknown class(es) {bad}; known: {', '.join(CLASS_KEYS)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError("synthetic: option classes must name at least 2 distinct classes")
    return [CLASS_KEYS.index(s) for s in names]


def _parse_range(value: Any) -> tuple[int, int]:
    try:
        parts = [int(v) for v in (value.replace("-", ",").split(",") if isinstance(value, str) else value)]
        lo, hi = parts
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic: option frames_range must be two integers MIN,MAX, got {value!r}") from None
    if not 2 <= lo <= hi:
        raise ConfigError(f"synthetic: option frames_range must satisfy 2 <= MIN <= MAX, got {lo},{hi}")
    return lo, hi


def _number(name: str, value: Any, kind: type, lo: float, hi: float) -> Any:
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"synthetic: option {name} must be a {kind.__name__}, got {value!r}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"synthetic: option {name} must be in [{lo}, {hi}], got {v}")
    return v


DEFAULTS: dict[str, Any] = {"classes": None, "per_class": 48, "seed": 0, "frames_range": (40, 64),
                            "noise": 0.01, "max_yaw": 90.0}


def generate(classes: Any = None, per_class: int = 48, seed: int = 0, frames_range: Any = (40, 64),
             noise: float = 0.01, max_yaw: float = 90.0) -> dict[str, Any]:
    """Generate raw variable-length sequences (before :func:`~skelcl.store.to_canonical`).

    Args:
        classes: None / "all" for all 15 classes, an int k for the first k, or class keys (a list or a
            comma-separated string; see ``CLASS_KEYS``). Labels follow the given order.
        per_class: samples per class (>= 2, so that every split holds every class).
        seed: dataset seed (>= 0); the same options give bit-identical data.
        frames_range: (min, max) sequence length in frames, drawn uniformly per sample.
        noise: standard deviation (metres) of the Gaussian jitter added to every present joint.
        max_yaw: camera yaw range in degrees, [-max_yaw, max_yaw], split into 3 view bins (1 lowest).

    Returns:
        dict with ``seqs`` (list of (T_i, 2, 25, 3) float64), ``labels``, ``subject``, ``view``,
        ``names`` (arrays of length N) and ``class_names``.
    """
    chosen = _parse_classes(classes)
    per_class = _number("per_class", per_class, int, 2, 100_000)
    seed = _number("seed", seed, int, 0, 2**63 - 1)
    noise = _number("noise", noise, float, 0.0, 1.0)
    max_yaw = _number("max_yaw", max_yaw, float, 0.0, 180.0)
    lo_hi = _parse_range(frames_range)
    bodies, style_amp, style_tempo = _subjects(seed)
    seqs: list[np.ndarray] = []
    labels, subject, view, names = [], [], [], []
    for label, ci in enumerate(chosen):
        out = _generate_class(ci, seed, per_class, lo_hi, noise, max_yaw, bodies, style_amp, style_tempo)
        seqs += out["seqs"]
        labels.append(np.full(per_class, label))
        subject.append(out["subject"])
        view.append(out["view"])
        names += [f"syn_c{ci:02d}_s{k:04d}" for k in range(per_class)]
    return {
        "seqs": seqs,
        "labels": np.concatenate(labels).astype(np.int64),
        "subject": np.concatenate(subject).astype(np.int64),
        "view": np.concatenate(view).astype(np.int64),
        "names": np.array(names),
        "class_names": [CLASSES[ci].name for ci in chosen],
    }


_OPTIONS_HELP = {
    "classes": f"all (default), a count k (first k), or comma-separated keys: {', '.join(CLASS_KEYS)}",
    "per_class": "samples per class (default 48)",
    "seed": "dataset seed (default 0); same options give bit-identical data",
    "frames_range": "MIN,MAX frames per raw sequence (default 40,64)",
    "noise": "Gaussian jitter in metres (default 0.01)",
    "max_yaw": "camera yaw range +-degrees, 3 view bins (default 90)",
}


@register_format(
    "synthetic",
    "procedurally generated NTU-25 actions: 15 classes (3 two-person), 10 subjects, 3 views; no files",
    ("xsub", "xview"),
    Preprocess(frames=48, persons=2, length_mode="resample", centre="joint"),
    needs_root=False,
    options=_OPTIONS_HELP,
)
def read_synthetic(root: str | None, pre: Preprocess, *, skip_bad: bool = False, **options: Any) -> SkeletonDataset:
    """Generate the synthetic dataset (``root`` and ``skip_bad`` are ignored).

    Protocols: ``xsub`` trains on subjects 1-6 and tests on 7-10; ``xview`` trains on views 2, 3 and
    tests on view 1. Meta: name ("syn_c03_s0007": class 3, sample 7 of that class), subject, view,
    setup (0) and set (0).
    """
    layout = options.pop("layout", None)
    if layout not in (None, "", NTU25.name):
        raise ConfigError(f"synthetic: the data uses layout {NTU25.name!r}, not {layout!r}")
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"synthetic: unknown option(s) {unknown}; known: {', '.join(DEFAULTS)}")
    raw = generate(**{**DEFAULTS, **options})
    x, lengths = to_canonical(raw["seqs"], NTU25, pre)
    n = len(raw["seqs"])
    subject, view = raw["subject"], raw["view"]
    xsub_tr = np.isin(subject, XSUB_TRAIN)
    xview_tr = np.isin(view, XVIEW_TRAIN)
    return SkeletonDataset(
        x=x, lengths=lengths, labels=raw["labels"], layout=NTU25,
        meta={"name": raw["names"], "subject": subject, "view": view,
              "setup": np.zeros(n, np.int64), "set": np.zeros(n, np.int64),
              "frames": np.asarray([s.shape[0] for s in raw["seqs"]], dtype=np.int64)},
        class_names=raw["class_names"],
        protocols={"xsub": (np.flatnonzero(xsub_tr), np.flatnonzero(~xsub_tr)),
                   "xview": (np.flatnonzero(xview_tr), np.flatnonzero(~xview_tr))},
        name="synthetic",
    )
