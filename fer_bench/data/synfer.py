"""SynFER: a procedural, FER2013-shaped synthetic dataset for tests, demos and smoke benchmarks.

Why it exists: fer-bench asks which encoder recognises fear and disgust best, and real FER data
cannot ship with the repository. SynFER reproduces the properties of FER2013 that matter for that
question, from a seed and in seconds: 48x48 grayscale faces, FER2013's split sizes (Training /
PublicTest / PrivateTest) and per-class imbalance (disgust ~1.5%), a little label noise, and --
the crucial part -- the *same confusions*: fear and disgust are genuinely harder than the rest.

Design
------
Each face is drawn from facial action unit (AU) intensities, following the FACS prototypes:

============  ==============================================  =================================
class         AUs (prototype)                                 what separates it
============  ==============================================  =================================
happy         6 cheek raise + 12 lip corner up (+ some 26)     strong, unique (corners up)
sad           1 inner brow up + 4 brows together + 15 corners  oblique brows, corners down
              down
surprise      1 + 2 brows up + 5 lids up + 26 jaw drop         strong, at high intensity
fear          1 + 2 + 4 + 5 + 20 lip stretch + 26              *only* the weak AU4 / AU20 cues
angry         4 brows lowered + 7 lid tighten + 23 lip press   strong AU4 / AU23
              (+ 5)
disgust       9 nose wrinkle + 10 upper lip up + 15, on top    *only* the weak AU9 / AU10 cues
              of lowered brows and tension (4, 7)
neutral       none                                             absence of action
============  ==============================================  =================================

Fear shares AU1+2+5+26 with surprise (and AU1+4 with sad) but at lower intensity, with heavy
per-sample jitter, and each fear face is blended part of the way (up to 70%) towards the surprise
or the sad prototype; its own cues (inner brows drawn down, AU4; lips stretched sideways, AU20)
are small relative to that variation, so many fear faces look like a mild surprise or a sad face.
Disgust carries angry's lowered brows and tension, is blended up to 40% towards angry, and differs
only by the nose wrinkle and upper-lip raise; being rare (~1.5%) it is also under-represented in
training. That is why a plain CNN recognises fear and disgust clearly worse than the other five
classes, as on FER2013 (where they have the lowest recall).

Rendering (torch, CPU, vectorised over chunks of 256 images, no per-image Python loop): each face
is drawn upright on a canonical canvas, every part a soft signed-distance shape (ellipses,
capsules, curves) computed only inside a fixed window that bounds it, with separable 1-D
coordinates -- background, hair, neck and clothing; the face oval with identity variation (face
size, skin tone, eye spacing, feature placement); eyes whose opening follows AU5/AU6/AU7;
two-segment brows moved by AU1/2/4, glabella furrows (AU4) and forehead lines (AU1/2); nose with
nostrils and wrinkle lines (AU9/10); nasolabial folds and cheek highlights (AU6/12); a mouth
curve whose corners follow AU12/AU15, width AU20/AU23, opening AU26 (dark interior, teeth) and
upper-lip raise AU10. One bilinear resampling then applies the pose (rotation +-15 degrees,
scale, shift); occluders (rectangles or hand-like blobs on ~10%), an illumination gradient,
contrast, blur and Gaussian noise follow in image space. No op reduces across pixels, and every
random draw comes from its own (seed, split, purpose) stream, so a seed gives bit-identical output
and changing the label noise changes only the relabelled faces.

Label noise keeps the FER2013 label counts exact: a `label_noise` fraction of images in each split
is *rendered* with a different expression than its label says (the annotator was wrong).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fer_bench.classes import CANONICAL
from fer_bench.data.dataset import SPLITS, FERDataset, Split

# Bump whenever the images produced for a given seed change (caches key on it).
GENERATOR_VERSION = 1

# FER2013 per-class counts (CANONICAL order) for Training / PublicTest / PrivateTest.
FER2013_COUNTS: dict[str, tuple[int, ...]] = {
    "train": (3995, 436, 4097, 7215, 4830, 3171, 4965),
    "val": (467, 56, 496, 895, 653, 415, 607),
    "test": (491, 55, 528, 879, 594, 416, 626),
}
FER2013_TOTAL = 35887
USAGE: dict[str, str] = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FOLDER: dict[str, str] = {"train": "train", "val": "test", "test": "test"}

AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 20, 23, 26)
_A = {au: i for i, au in enumerate(AUS)}

# Prototype AU intensities per class (CANONICAL order). Fear and disgust carry the shared AUs of
# their neighbours and only weak own cues (see the module docstring).
PROTOTYPES: dict[str, dict[int, float]] = {
    "angry": {4: 1.0, 5: 0.25, 7: 0.8, 23: 0.85, 9: 0.05, 15: 0.1},
    "disgust": {4: 0.7, 7: 0.55, 9: 0.65, 10: 0.6, 15: 0.35, 23: 0.15},
    "fear": {1: 0.7, 2: 0.5, 4: 0.3, 5: 0.7, 20: 0.35, 26: 0.45},
    "happy": {6: 0.8, 12: 1.0, 26: 0.25},
    "sad": {1: 0.75, 4: 0.6, 15: 0.8, 7: 0.1},
    "surprise": {1: 1.0, 2: 1.0, 5: 0.9, 26: 0.85},
    "neutral": {},
}
# Per-sample AU jitter (std); the distinguishing fear cues and fear's shared AUs jitter most.
JITTER = 0.12
JITTER_EXTRA: dict[str, dict[int, float]] = {
    "fear": {4: 0.25, 20: 0.25, 5: 0.25, 26: 0.3, 1: 0.2, 2: 0.25},
    "disgust": {9: 0.22, 10: 0.22, 4: 0.2},
}
# Fear and disgust faces are blended towards a neighbour's prototype (by up to `most`): many
# fear faces look like a mild surprise or a sad face, many disgust faces like anger.
BLEND: dict[str, tuple[tuple[str, ...], float]] = {
    "fear": (("surprise", "sad"), 0.7),
    "disgust": (("angry",), 0.4),
}
# Global intensity range per class: fear is a weaker display than surprise.
INTENSITY: dict[str, tuple[float, float]] = {"fear": (0.45, 1.05), "surprise": (0.8, 1.2)}
DEFAULT_INTENSITY = (0.55, 1.2)

_Num = torch.Tensor | float  # a per-image B x 1 x 1 tensor or a constant

_CHUNK = 256  # fixed (not thread-dependent) so the random stream, hence output, is stable


def _prototype_matrix() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    proto = torch.zeros(len(CANONICAL), len(AUS))
    jit = torch.full((len(CANONICAL), len(AUS)), JITTER)
    inten = torch.tensor([INTENSITY.get(c, DEFAULT_INTENSITY) for c in CANONICAL])
    for ci, c in enumerate(CANONICAL):
        for au, val in PROTOTYPES[c].items():
            proto[ci, _A[au]] = val
        for au, val in JITTER_EXTRA.get(c, {}).items():
            jit[ci, _A[au]] = val
    return proto, jit, inten


def _largest_remainder(total: int, weights: tuple[int, ...] | list[int]) -> list[int]:
    w = np.asarray(weights, dtype=np.float64)
    quota = total * w / w.sum()
    base = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return base.tolist()


def split_class_counts(n: int, test_n: int | None = None) -> dict[str, list[int]]:
    """Per split, per class (CANONICAL order) image counts: FER2013's, scaled to `n` images.
    `test_n` sizes the test split on its own (same class proportions; train and val keep their
    share of `n`): more test images tighten the intervals without adding training time.

    n = 35,887 gives FER2013's counts exactly. From n >= 500 on every class has >= 2 images in
    every split (taken from the split's largest class)."""
    if n < len(SPLITS) * len(CANONICAL):
        raise ValueError(f"n must be at least {len(SPLITS) * len(CANONICAL)}, got {n}")
    if test_n is not None and test_n < 2 * len(CANONICAL):
        raise ValueError(f"test_n must be at least {2 * len(CANONICAL)}, got {test_n}")
    sizes = _largest_remainder(n, [sum(FER2013_COUNTS[s]) for s in SPLITS])
    if test_n is not None:
        sizes[SPLITS.index("test")] = test_n
    out: dict[str, list[int]] = {}
    for s, size in zip(SPLITS, sizes, strict=True):
        counts = _largest_remainder(size, FER2013_COUNTS[s])
        if n >= 500:
            for c in range(len(counts)):
                while counts[c] < 2:
                    counts[int(np.argmax(counts))] -= 1
                    counts[c] += 1
        out[s] = counts
    return out


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _sample_params(g: torch.Generator, n: int) -> dict[str, torch.Tensor]:
    """Identity and nuisance parameters, one value per image. Pose and occluders are in image
    units (the image spans [-1, 1]), facial geometry in face units; y points down."""
    p: dict[str, torch.Tensor] = {}
    spec: list[tuple[str, float, float]] = [
        # pose / framing (pixel units)
        ("dx", -0.08, 0.08), ("dy", -0.06, 0.1), ("rot", -math.radians(15), math.radians(15)),
        ("scale", 1.0, 1.25),
        # identity
        ("fw", 0.56, 0.70), ("fh", 0.80, 0.94), ("skin", 0.32, 0.85), ("hair", 0.03, 0.75),
        ("hairline", -0.78, -0.52), ("bg", 0.0, 1.0), ("bg_gx", -0.3, 0.3), ("bg_gy", -0.3, 0.3),
        ("cloth", 0.0, 1.0), ("ex", 0.22, 0.285), ("ey", -0.2, -0.1), ("ew", 0.115, 0.145),
        ("eh", 0.045, 0.062), ("gaze", -0.03, 0.03), ("bgap", 0.11, 0.155),
        ("brow_t", 0.022, 0.036), ("brow_in", 0.085, 0.12), ("brow_out", 0.12, 0.17),
        ("arch", 0.0, 0.04), ("nose", 0.27, 0.35), ("mouth", 0.16, 0.22), ("mw", 0.16, 0.22),
        ("lip", 0.016, 0.03), ("lipc", 0.65, 0.9),
        # photometric
        ("ill_gx", -0.35, 0.35), ("ill_gy", -0.3, 0.3), ("contrast", 0.7, 1.25),
        ("bright", -0.12, 0.12), ("blur", 0.0, 1.7), ("noise", 0.004, 0.035),
        # occluders
        ("occ_x", -0.7, 0.7), ("occ_y", -0.6, 0.7), ("occ_w", 0.12, 0.45), ("occ_h", 0.1, 0.35),
        ("occ_tone", 0.0, 1.0), ("occ_ang", -math.pi, math.pi), ("occ_kind", 0.0, 1.0),
    ]
    for name, lo, hi in spec:
        p[name] = _u(g, n, lo, hi)
    for name in ("asym_brow_l", "asym_brow_r", "asym_mouth_l", "asym_mouth_r"):
        p[name] = 0.012 * torch.randn(n, generator=g)
    p["occ"] = (torch.rand(n, generator=g) < 0.10).float()
    return p


def _sample_aus(g: torch.Generator, expr: torch.Tensor) -> torch.Tensor:
    """AU intensities (N x len(AUS)) for rendered expressions `expr`: the class prototype, blended
    towards a neighbour for the ambiguous classes, scaled by a random intensity, plus jitter."""
    proto, jit, inten = _prototype_matrix()
    n = expr.shape[0]
    base = proto[expr]
    pick = torch.rand(n, generator=g)
    mix = torch.rand(n, generator=g)
    for cname, (neighbours, most) in BLEND.items():
        sel = expr == CANONICAL.index(cname)
        nb = torch.tensor([CANONICAL.index(x) for x in neighbours])
        which = nb[(pick * len(nb)).long().clamp_(max=len(nb) - 1)]
        m = (most * mix)[:, None]
        base = torch.where(sel[:, None], (1.0 - m) * base + m * proto[which], base)
    lo, hi = inten[expr, 0], inten[expr, 1]
    scale = lo + (hi - lo) * torch.rand(n, generator=g)
    noise = torch.randn(n, len(AUS), generator=g) * jit[expr]
    return (base * scale[:, None] + noise).clamp(0.0, 1.25)


def _bump(k2: torch.Tensor) -> torch.Tensor:
    """Smooth blob profile (1 - k^2)^2 on the unit disc: a cheap stand-in for exp(-k^2)."""
    return (1.0 - k2).clamp_(min=0.0).square_()


def _blur121(img: torch.Tensor) -> torch.Tensor:
    # Separable [1, 2, 1] / 4 with edge replication: element-wise only, hence deterministic.
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    h = (p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]) * 0.25
    return (h[:, :-2] + 2 * h[:, 1:-1] + h[:, 2:]) * 0.25


def _capsule(x: torch.Tensor, y: torch.Tensor, ax: _Num, ay: _Num, bx: _Num,
             by: _Num, r: _Num) -> torch.Tensor:
    """Signed distance to the segment a-b thickened by r. x varies along the last axis and y
    along the middle one, so the per-axis terms stay 1-D until they are combined."""
    pax, pay = x - ax, y - ay
    bax, bay = bx - ax, by - ay
    h = ((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-8)).clamp_(0.0, 1.0)
    return torch.hypot(pax - bax * h, pay - bay * h) - r


class _Canvas:
    """The canonical (upright, unit-scale) face canvas of a chunk. Faces are drawn here, part by
    part, each inside a fixed window that bounds the part over all parameter and AU ranges; the
    pose is applied afterwards by one resampling. Coordinates are separable (u along columns,
    v along rows), so most shape terms are computed on 1-D tensors."""

    R = 1.1  # half extent in face units: holds the whole head (jaw drop and hair included)

    def __init__(self, b: int, size: int) -> None:
        self.m = m = int(round(size * 1.2))  # a bit denser than the output at the largest scale
        self.inv_pw = m / (2.0 * self.R)  # canvas pixels per face unit
        self.lin = (torch.arange(m, dtype=torch.float32) + 0.5) / self.inv_pw - self.R
        self.img = torch.empty(b, m, m)

    def window(self, u0: float, u1: float, v0: float, v1: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u 1x1xW, v 1xHx1, image view B x H x W) for the face-unit box [u0,u1] x [v0,v1]."""
        def idx(lo: float, hi: float) -> slice:
            a = max(0, math.floor((lo + self.R) * self.inv_pw))
            return slice(a, min(self.m, math.ceil((hi + self.R) * self.inv_pw)))
        rows, cols = idx(v0, v1), idx(u0, u1)
        return (self.lin[cols].view(1, 1, -1), self.lin[rows].view(1, -1, 1),
                self.img[:, rows, cols])

    def cov(self, d: torch.Tensor) -> torch.Tensor:
        """Antialiased coverage of {d < 0}."""
        return (0.5 - d * self.inv_pw).clamp_(0.0, 1.0)


def _paint(img: torch.Tensor, mask: torch.Tensor, colour: _Num) -> None:
    img.add_((colour - img) * mask)


_Param = Callable[[str], torch.Tensor]


def _per_image(p: dict[str, torch.Tensor], b: int) -> _Param:
    """Accessor for a chunk's per-image parameters, shaped B x 1 x 1 to broadcast over pixels."""
    return lambda name: p[name].view(b, 1, 1)


def _draw_face(cv: _Canvas, p: dict[str, torch.Tensor], au: dict[int, torch.Tensor]) -> None:
    """Draw background, head and all facial parts of a chunk onto the canonical canvas, back to
    front (each part paints over the ones before it)."""
    c = _per_image(p, cv.img.shape[0])
    for part in (_draw_head, _draw_brows, _draw_eyes, _draw_nose, _draw_mouth):
        part(cv, c, au)


def _draw_head(cv: _Canvas, c: _Param, au: dict[int, torch.Tensor]) -> None:
    skin, fw, fh = c("skin"), c("fw"), c("fh")
    # Background, hair (behind the head), neck, clothing, face.
    u, v, img = cv.window(-cv.R, cv.R, -cv.R, cv.R)
    img.copy_((c("bg") + c("bg_gx") * u) + c("bg_gy") * v)
    k_hair = (u / (fw + 0.07)) ** 2 + ((v + 0.06) / (fh + 0.05)) ** 2
    _paint(img, cv.cov((k_hair.sqrt_() - 1.0) * fw), c("hair"))
    _paint(img, cv.cov(torch.maximum(u.abs() - 0.55 * fw, 0.25 - v)), skin * 0.8)
    k_cloth = (u / 1.25) ** 2 + ((v - fh - 0.55) / 0.5) ** 2
    _paint(img, cv.cov((k_cloth.sqrt_() - 1.0) * 0.5), c("cloth"))
    # The jaw drop (AU26) lengthens the lower half; shading darkens towards the rim.
    ry = torch.where(v > 0, fh * (1.0 + 0.1 * au[26]), fh)
    k2 = (u / fw) ** 2 + (v / ry) ** 2
    face = cv.cov((k2.sqrt() - 1.0) * fw).mul_(cv.cov(c("hairline") - v))
    _paint(img, face, skin * (1.1 - 0.25 * k2))


def _draw_brows(cv: _Canvas, c: _Param, au: dict[int, torch.Tensor]) -> None:
    skin, ex, ey = c("skin"), c("ex"), c("ey")
    by_r = ey - c("bgap") + c("asym_brow_r")
    by_l = ey - c("bgap") + c("asym_brow_l")
    # Brow region: forehead lines (AU1/AU2), brows (AU1/2/4), glabella furrows (AU4).
    u, v, img = cv.window(-0.56, 0.56, -0.75, 0.05)
    ua = u.abs()
    by = torch.where(u < 0, by_l, by_r)
    fl = (torch.maximum(au[1], au[2]) - 0.25).clamp(min=0.0) * 0.45 * skin
    for i in range(2):
        d = torch.maximum((v + 0.15 * u * u - (by - 0.13 - 0.065 * i)).abs() - 0.009, ua - 0.26)
        img.sub_(fl * cv.cov(d))
    # Inner end raised by AU1, lowered and pulled to the midline by AU4; outer end by AU2.
    ui = c("brow_in") - 0.05 * au[4]
    vi = by - 0.11 * au[1] + 0.09 * au[4]
    uo = ex + c("brow_out")
    vo = by + 0.03 - 0.11 * au[2] + 0.015 * au[4]
    um = 0.5 * (ui + uo)
    vm = by - c("arch") - 0.06 * au[1] - 0.08 * au[2] + 0.04 * au[4]
    bt = c("brow_t")
    d_brow = torch.minimum(_capsule(ua, v, ui, vi, um, vm, bt), _capsule(ua, v, um, vm, uo, vo, bt))
    _paint(img, cv.cov(d_brow), torch.minimum(c("hair"), skin * 0.45))
    d = torch.maximum((ua - 0.035).abs() - 0.008, (v - by - 0.06).abs() - 0.05)
    img.sub_((au[4] - 0.15).clamp(min=0.0) * 0.4 * skin * cv.cov(d))


def _draw_eyes(cv: _Canvas, c: _Param, au: dict[int, torch.Tensor]) -> None:
    skin, ex, ey, ew, eh = c("skin"), c("ex"), c("ey"), c("ew"), c("eh")
    dark = skin * 0.35
    # Eye region: socket shade, cheek raise (AU6) highlight, eyes.
    u, v, img = cv.window(-0.56, 0.56, -0.42, 0.26)
    du, dv = u.abs() - ex, v - ey
    img.sub_(0.12 * skin * _bump((du / (1.5 * ew)) ** 2 + ((dv + 0.04) / 0.1) ** 2))
    img.add_(0.15 * skin * au[6] * _bump(((du + 0.02) / 0.15) ** 2 + ((dv - 0.21) / 0.09) ** 2))
    # Upper lid raised by AU5; both lids narrowed by AU7 (tighten) and AU6 (cheek push).
    hu = (eh * (1.0 + 0.95 * au[5] - 0.55 * au[7] - 0.35 * au[6])).clamp(min=0.006)
    hl = (eh * (0.75 + 0.2 * au[5] - 0.45 * au[7] - 0.55 * au[6])).clamp(min=0.004)
    h = torch.where(dv < 0, hu, hl)
    # Distance ~ f / |grad f| for f = k^2 - 1 stays thin at the eye corners however narrow the
    # eye; it is never below the bounding-box distance (the estimate is poor far away).
    ew2, h2 = ew * ew, h * h
    d_eye = ((du * du / ew2 - 1.0) + dv * dv / h2) / (
        2.0 * (du * du / (ew2 * ew2) + dv * dv / (h2 * h2)).sqrt() + 1e-4)
    d_eye = torch.maximum(d_eye, torch.maximum(du.abs() - ew, dv.abs() - h))
    _paint(img, cv.cov(d_eye - 0.02), dark)  # lids and lashes
    eye = cv.cov(d_eye)
    _paint(img, eye, 0.45 + 0.5 * skin)  # sclera
    _paint(img, cv.cov(torch.hypot(du - c("gaze"), dv - 0.004) - 0.055).mul_(eye), 0.1)  # iris


def _draw_nose(cv: _Canvas, c: _Param, au: dict[int, torch.Tensor]) -> None:
    skin, ey = c("skin"), c("ey")
    dark = skin * 0.35
    # Nose: side lines, shadow under the tip, nostrils raised by AU9/AU10, wrinkles (AU9).
    ny = ey + c("nose")
    u, v, img = cv.window(-0.16, 0.16, -0.19, 0.37)
    ua = u.abs()
    img.sub_(0.12 * skin * cv.cov(_capsule(ua, v, 0.05, ey + 0.06, 0.075, ny - 0.03, 0.006)))
    img.sub_(0.12 * skin * _bump((u / 0.11) ** 2 + ((v - ny - 0.035) / 0.04) ** 2))
    nu = 0.055 + 0.02 * au[9]
    nv = ny - 0.03 * au[9] - 0.02 * au[10]
    k_n = ((ua - nu) / 0.034) ** 2 + ((v - nv) / 0.02) ** 2
    _paint(img, cv.cov((k_n.sqrt_() - 1.0) * 0.02), dark)
    dw = v - (ey + 0.06)
    r = dw / 0.04
    rows = torch.maximum((r - r.round()).abs() * 0.04 - 0.012, (dw - 0.06).abs() - 0.07)
    d = torch.maximum(rows, ua - 0.085)  # three short creases across the bridge
    img.sub_((au[9] - 0.1).clamp(min=0.0) * 0.8 * skin * cv.cov(d))


def _draw_mouth(cv: _Canvas, c: _Param, au: dict[int, torch.Tensor]) -> None:
    skin = c("skin")
    ny = c("ey") + c("nose")
    # Mouth: corners up (AU12) / down (AU15), width (AU20 stretch, AU23 press), opening (AU26),
    # upper-lip raise (AU10) opening the top of the mouth; nasolabial folds (AU6/9/10/12).
    u, v, img = cv.window(-0.5, 0.5, 0.0, 0.9)
    ua = u.abs()
    my = ny + c("mouth")
    mw = c("mw") * (1.0 + 0.4 * au[20] + 0.2 * au[12] - 0.25 * au[23] - 0.05 * au[15])
    lift = 0.1 * au[12] - 0.085 * au[15] - 0.015 * au[20]
    lift_s = lift + torch.where(u < 0, c("asym_mouth_l"), c("asym_mouth_r"))
    fold = (0.45 * au[6] + 0.5 * au[12] + 0.45 * au[9] + 0.4 * au[10] - 0.15).clamp(0.0, 1.0)
    d = _capsule(ua, v, 0.1, ny - 0.01, mw + 0.035, my - lift + 0.02, 0.008)
    img.sub_(fold * 0.35 * skin * cv.cov(d))
    t2 = (ua / mw).clamp(max=1.0) ** 2
    w = 1.0 - t2
    line = my - lift_s * t2 - 0.03 * au[10] * w  # 1-D (along u)
    opening = 0.16 * au[26] * (1.0 - 0.7 * au[23])
    top = line - (0.25 * opening + 0.05 * au[10]) * w
    bot = line + (0.75 * opening + 0.01 * au[20]) * w
    lt = c("lip") * (1.0 - 0.75 * au[23])
    d_lip = torch.maximum(torch.maximum(top - 0.8 * lt - v, v - bot - 1.2 * lt), ua - mw * 1.03)
    _paint(img, cv.cov(d_lip), skin * c("lipc"))
    d_in = torch.maximum(torch.maximum(top - 0.011 - v, v - bot - 0.011), ua - mw)
    inner = cv.cov(d_in)
    _paint(img, inner, 0.06)
    d_teeth = torch.maximum(torch.maximum(top - v, v - top - 0.035), ua - 0.8 * mw)
    shows = (opening + 0.04 * au[10] > 0.02).float()
    _paint(img, cv.cov(d_teeth).mul_(inner).mul_(shows), 0.5 + 0.3 * skin)


def _render(p: dict[str, torch.Tensor], a: torch.Tensor, size: int,
            g: torch.Generator) -> torch.Tensor:
    """Render one chunk: params (B each), AUs (B x len(AUS)) -> uint8 B x size x size."""
    b = a.shape[0]
    c = _per_image(p, b)
    cv = _Canvas(b, size)
    _draw_face(cv, p, {k: a[:, i].view(b, 1, 1) for i, k in enumerate(AUS)})

    # Pose: each output pixel samples the canvas at its face coordinates (inverse rotation,
    # scale, shift); beyond the canvas the border (background, neck, clothing) extends.
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    py, px = lin.view(1, size, 1), lin.view(1, 1, size)
    x, y = px - c("dx"), py - c("dy")
    inv = 1.0 / (c("scale") * cv.R)  # to grid_sample's [-1, 1] canvas coordinates
    cos, sin = torch.cos(c("rot")) * inv, torch.sin(c("rot")) * inv
    grid = torch.stack((cos * x + sin * y, cos * y - sin * x), dim=-1)
    img = F.grid_sample(cv.img[:, None], grid, mode="bilinear", padding_mode="border",
                        align_corners=False)[:, 0]

    # Occluders on a subset: a rectangle or a hand-like blob (palm + four fingers).
    idx = p["occ"].nonzero().flatten()
    if idx.numel() > 0:
        q = {k: p[k][idx].view(-1, 1, 1) for k in p if k.startswith("occ_")}
        ox, oy = px - q["occ_x"], py - q["occ_y"]
        ca, sa = torch.cos(q["occ_ang"]), torch.sin(q["occ_ang"])
        ru, rv = ca * ox + sa * oy, ca * oy - sa * ox
        ow = q["occ_w"]
        rect = torch.maximum(ru.abs() - ow, rv.abs() - q["occ_h"])
        hand = (((ru / ow) ** 2 + (rv / (0.8 * ow)) ** 2).sqrt() - 1.0) * 0.8 * ow
        for f in range(4):
            off = (f - 1.5) * 0.45 * ow
            hand = torch.minimum(hand, _capsule(ru, rv, off, -0.5 * ow, 1.15 * off, -1.9 * ow,
                                                0.2 * ow))
        d = torch.where(q["occ_kind"] < 0.5, rect, hand)
        m = (0.5 - d * (size / 2.0)).clamp_(0.0, 1.0)
        sub = img[idx]
        _paint(sub, m, q["occ_tone"] * (1.0 + 0.2 * rv))
        img[idx] = sub

    # Photometric nuisances: illumination gradient, contrast/brightness, blur, sensor noise.
    img.mul_((1.0 + c("ill_gx") * px) + c("ill_gy") * py)
    img.sub_(0.5).mul_(c("contrast")).add_(0.5 + c("bright"))
    b1 = _blur121(img)
    b2 = _blur121(b1)
    bw = c("blur")
    img = torch.where(bw < 1.0, img + (b1 - img) * bw, b1 + (b2 - b1) * (bw - 1.0))
    img.add_(c("noise") * torch.randn(b, size, size, generator=g))
    return img.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def generate(n: int = FER2013_TOTAL, seed: int = 0, label_noise: float = 0.03,
             size: int = 48, test_n: int | None = None) -> FERDataset:
    """A SynFER dataset of `n` grayscale `size` x `size` faces with FER2013's splits and class
    balance. Deterministic: the same arguments give bit-identical images and labels."""
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    counts = split_class_counts(n, test_n)
    # Rendering is many small element-wise kernels: torch's intra-op threads gain little on them
    # and, when another process holds a core, slow them down >10x (measured on 2 cores). So each
    # chunk runs single-threaded and chunks run in parallel on Python threads (ops release the
    # GIL). Chunks are independent, so the output does not depend on the thread count.
    workers = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        splits = _generate_splits(counts, seed, label_noise, size, workers)
    finally:
        torch.set_num_threads(workers)
    meta = {"n": n, "seed": seed, "label_noise": label_noise, "size": size,
            "generator_version": GENERATOR_VERSION}
    if test_n is not None:
        meta["test_n"] = test_n
    return FERDataset(name="synfer", classes=CANONICAL, splits=splits, meta=meta)


def _stream(seed: int, *key: int) -> torch.Generator:
    """An independent random stream per (seed, split, purpose[, chunk]): changing one knob (e.g.
    the label noise) leaves everything else -- labels, identities, poses -- as it was."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def _generate_splits(counts: dict[str, list[int]], seed: int, label_noise: float, size: int,
                     workers: int) -> dict[str, Split]:
    k = len(CANONICAL)
    splits: dict[str, Split] = {}
    jobs: list[Callable[[], None]] = []
    for si, s in enumerate(SPLITS):
        labels = torch.repeat_interleave(torch.arange(k), torch.tensor(counts[s]))
        labels = labels[torch.randperm(labels.numel(), generator=_stream(seed, si, 0))]
        # The rendered expression differs from the label on a label_noise fraction.
        g = _stream(seed, si, 1)
        expr = labels.clone()
        n_noisy = round(label_noise * labels.numel())
        noisy = torch.randperm(labels.numel(), generator=g)[:n_noisy]
        expr[noisy] = (labels[noisy] + torch.randint(1, k, (n_noisy,), generator=g)) % k
        aus = _sample_aus(_stream(seed, si, 2), expr)
        params = _sample_params(_stream(seed, si, 3), labels.numel())
        images = torch.empty(labels.numel(), 1, size, size, dtype=torch.uint8)
        for ci, lo in enumerate(range(0, labels.numel(), _CHUNK)):
            def job(sl: slice = slice(lo, lo + _CHUNK), key: tuple[int, ...] = (si, 4, ci),
                    out: torch.Tensor = images, a: torch.Tensor = aus,
                    p: dict[str, torch.Tensor] = params) -> None:
                chunk = {name: t[sl] for name, t in p.items()}
                out[sl, 0] = _render(chunk, a[sl], size, _stream(seed, *key))
            jobs.append(job)
        splits[s] = Split(images=images, labels=labels.to(torch.int64))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(job) for job in jobs]:
                f.result()
    else:
        for job in jobs:
            job()
    return splits


def _check_fer(ds: FERDataset) -> None:
    if tuple(ds.classes) != CANONICAL:
        raise ValueError(f"FER2013 files need the canonical 7 classes, got {ds.classes}")
    for s in ds.splits.values():
        if s.images.shape[1] != 1:
            raise ValueError("FER2013 files hold grayscale images (1 channel)")


def _pixel_strings(images: np.ndarray) -> list[bytes]:
    """Each image as b'v v v ...' (row-major, no padding), formatted without a Python loop over
    pixels: three digit bytes and a space per value, unused leading digits masked out."""
    v = images.reshape(len(images), -1).astype(np.int16)
    chars = np.stack([48 + v // 100, 48 + v // 10 % 10, 48 + v % 10, np.full_like(v, 32)], -1)
    keep = np.stack([v >= 100, v >= 10, np.ones_like(v, bool), np.ones_like(v, bool)], -1)
    keep[:, -1, 3] = False  # no trailing space
    flat = chars.astype(np.uint8)[keep].tobytes()
    ends = np.cumsum(keep.reshape(len(v), -1).sum(1)).tolist()
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def write_fer2013_csv(ds: FERDataset, path: str | Path) -> Path:
    """Write `ds` as a `fer2013.csv` (`emotion,pixels,Usage`; emotion = index in CANONICAL, which
    is FER2013's label order): train -> Training, val -> PublicTest, test -> PrivateTest, in that
    order."""
    _check_fer(ds)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(b"emotion,pixels,Usage\n")
        for s in SPLITS:
            if s not in ds.splits:
                continue
            sp = ds.splits[s]
            usage = f",{USAGE[s]}\n".encode()
            for lo in range(0, len(sp), 1024):  # bounded working memory
                labels = sp.labels[lo:lo + 1024].tolist()
                pixels = _pixel_strings(sp.images[lo:lo + 1024].numpy())
                fh.writelines(b"%d,%s%s" % (lab, px, usage)
                              for lab, px in zip(labels, pixels, strict=True))
    return path


def write_folder(ds: FERDataset, root: str | Path) -> Path:
    """Write `ds` as the FER2013 folder variant: `root/train/<class>/Training_<k>.jpg` and
    `root/test/<class>/{PublicTest,PrivateTest}_<k>.jpg` (grayscale JPEG, quality 95);
    `<k>` is unique across the whole dataset (the image's row in `write_fer2013_csv`)."""
    _check_fer(ds)
    root = Path(root)
    for folder in ("train", "test"):
        for cname in CANONICAL:
            (root / folder / cname).mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[np.ndarray, Path]] = []
    k = 0
    for s in SPLITS:
        if s not in ds.splits:
            continue
        sp = ds.splits[s]
        for label, im in zip(sp.labels.tolist(), sp.images[:, 0].numpy(), strict=True):
            jobs.append((im, root / FOLDER[s] / CANONICAL[label] / f"{USAGE[s]}_{k}.jpg"))
            k += 1

    def save(job: tuple[np.ndarray, Path]) -> None:
        Image.fromarray(job[0]).save(job[1], quality=95)

    # PIL releases the GIL while encoding, so threads speed this up.
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        list(pool.map(save, jobs))
    return root
