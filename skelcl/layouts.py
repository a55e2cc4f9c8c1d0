"""Joint layouts: joint names, the bone list, the centre joint and left/right pairs.

Every dataset declares one. The centre joint (the middle of the spine) is what coordinates are
centred on (paper IV-B3); bones drive the stick-figure plots and bone-length checks; the left/right
pairs (shoulders, hips) define the body's facing direction for optional view alignment.
All indices are 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class JointLayout:
    """A skeleton's joint layout.

    Attributes:
        name: registry name (``ntu25``, ``kinect20``, ``sbu15`` or a user's own).
        joints: joint names, length V.
        bones: (child, parent) index pairs.
        centre: index of the middle-spine joint used for centring.
        left_right: (left, right) index pairs (shoulders first, then hips) that span the body's
            left-right axis.
    """

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    centre: int
    left_right: tuple[tuple[int, int], ...] = field(default=())

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def __post_init__(self) -> None:
        v = len(self.joints)
        if not 0 <= self.centre < v:
            raise ValueError(f"layout {self.name!r}: centre joint {self.centre} is outside 0..{v - 1}")
        for a, b in tuple(self.bones) + tuple(self.left_right):
            if not (0 <= a < v and 0 <= b < v):
                raise ValueError(f"layout {self.name!r}: joint pair ({a}, {b}) is outside 0..{v - 1}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "joints": list(self.joints),
            "bones": [list(b) for b in self.bones],
            "centre": self.centre,
            "left_right": [list(p) for p in self.left_right],
        }

    @staticmethod
    def from_dict(d: dict) -> "JointLayout":
        return JointLayout(
            name=str(d["name"]),
            joints=tuple(d["joints"]),
            bones=tuple((int(a), int(b)) for a, b in d["bones"]),
            centre=int(d["centre"]),
            left_right=tuple((int(a), int(b)) for a, b in d.get("left_right", ())),
        )


def _one_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


NTU25 = JointLayout(
    name="ntu25",
    joints=(
        "spine_base", "spine_mid", "neck", "head",
        "shoulder_left", "elbow_left", "wrist_left", "hand_left",
        "shoulder_right", "elbow_right", "wrist_right", "hand_right",
        "hip_left", "knee_left", "ankle_left", "foot_left",
        "hip_right", "knee_right", "ankle_right", "foot_right",
        "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
    ),
    bones=_one_based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ]),
    centre=1,
    left_right=((4, 8), (12, 16)),
)

# Kinect v1 (20 joints), as in N-UCLA and MSR datasets.
KINECT20 = JointLayout(
    name="kinect20",
    joints=(
        "hip_center", "spine", "shoulder_center", "head",
        "shoulder_left", "elbow_left", "wrist_left", "hand_left",
        "shoulder_right", "elbow_right", "wrist_right", "hand_right",
        "hip_left", "knee_left", "ankle_left", "foot_left",
        "hip_right", "knee_right", "ankle_right", "foot_right",
    ),
    bones=_one_based([
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
        (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ]),
    centre=1,
    left_right=((4, 8), (12, 16)),
)

# SBU Kinect Interaction (15 joints, OpenNI order).
SBU15 = JointLayout(
    name="sbu15",
    joints=(
        "head", "neck", "torso",
        "shoulder_left", "elbow_left", "hand_left",
        "shoulder_right", "elbow_right", "hand_right",
        "hip_left", "knee_left", "foot_left",
        "hip_right", "knee_right", "foot_right",
    ),
    bones=_one_based([
        (1, 2), (2, 3), (4, 2), (5, 4), (6, 5), (7, 2), (8, 7), (9, 8), (10, 3), (11, 10),
        (12, 11), (13, 3), (14, 13), (15, 14),
    ]),
    centre=2,
    left_right=((3, 6), (9, 12)),
)

LAYOUTS: dict[str, JointLayout] = {l.name: l for l in (NTU25, KINECT20, SBU15)}


def get_layout(name: str) -> JointLayout:
    """Look a layout up by name; the error lists the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown joint layout {name!r}; known: {', '.join(sorted(LAYOUTS))} "
                         "(or give a custom one with custom_layout())") from None


def custom_layout(num_joints: int, centre: int, bones: list[tuple[int, int]] | None = None,
                  name: str = "custom", left_right: list[tuple[int, int]] | None = None) -> JointLayout:
    """A user's own layout from a joint count, a centre joint and (optionally) bones, 0-based."""
    return JointLayout(
        name=name,
        joints=tuple(f"j{i}" for i in range(num_joints)),
        bones=tuple((int(a), int(b)) for a, b in (bones or [])),
        centre=int(centre),
        left_right=tuple((int(a), int(b)) for a, b in (left_right or [])),
    )
