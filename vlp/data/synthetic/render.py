"""Rendering a scene to pixels with Pillow.

Each scene is drawn 4x larger and box-downsampled (anti-aliased edges), with a little jitter of each
object's colour from the render stream and Gaussian sensor noise from a numpy stream, so the same seed
always gives the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from vlp.data.synthetic.config import part_rng
from vlp.data.synthetic.scenes import Scene
from vlp.data.synthetic.vocabulary import COLOUR_RGB


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "cross":
        w = 0.36 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
            (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
            (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise ValueError(f"no polygon for shape {shape!r}")


def render_scene(scene: Scene, seed: int) -> Image.Image:
    """Draw the scene 4x larger and downsample (anti-aliased edges), then add a little sensor noise."""
    scale = 4
    big = scene.size * scale
    rng = part_rng(seed, "render", scene.index)
    canvas = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        base = COLOUR_RGB[obj.colour]
        fill = tuple(min(255, max(0, c + rng.randint(-14, 14))) for c in base)
        outline = tuple(int(c * 0.6) for c in fill)
        cx, cy, r = obj.cx * scale, obj.cy * scale, obj.radius * scale
        width = max(1, scale // 2)
        if obj.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        elif obj.shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
        else:
            draw.polygon(_shape_polygon(obj.shape, cx, cy, r), fill=fill, outline=outline, width=width)
    image = canvas.resize((scene.size, scene.size), Image.Resampling.BOX)
    noise = np.random.default_rng([seed, 17, scene.index]).normal(0.0, 3.0, (scene.size, scene.size, 1))
    pixels = np.asarray(image, dtype=np.float32) + noise.astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
