"""Contact sheets: one PNG grid of examples that a person looks at to judge a model.

``vlp evaluate --examples FILE.png`` calls :func:`draw_contact_sheet` with one :class:`SheetEntry` per
example: the image(s) the model saw (one for VQA/GQA/SNLI-VE, two for NLVR2, the top results for
retrieval) and a few text lines under them (question, prediction with its score, ground truth). A right
answer gets a green frame and a check mark, a wrong one a red frame and a "WRONG" badge with a cross, so
the failures stand out at a glance; ``image_marks`` puts a green/red border on each image of an entry
(which retrieved images are right).

Only Pillow and numpy are used. An image that cannot be read is drawn as a grey "unreadable" box rather
than failing the sheet; the PNG is written atomically (temp file in the same directory, then
``os.replace``), so a reader never sees a half-written sheet. Fitting the text (font, glyphs, wrapping)
is :mod:`vlp.sheet_text`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from vlp.files import replace_atomically
from vlp.sheet_text import Font, clean, ellipsize, fit_lines, line_height, load_font, text_width

__all__ = ["SheetEntry", "cell_boxes", "draw_contact_sheet"]

ImageSource = str | os.PathLike | Image.Image

# Colours (RGB).
BACKGROUND = (255, 255, 255)
CELL_BACKGROUND = (250, 250, 250)
TEXT = (20, 20, 20)
GREEN = (30, 150, 50)
RED = (210, 30, 30)
NEUTRAL_FRAME = (190, 190, 190)
UNREADABLE_BOX = (160, 160, 160)
UNREADABLE_TEXT = (60, 60, 60)
TITLE_BACKGROUND = (40, 44, 52)
TITLE_TEXT = (245, 245, 245)
WHITE = (255, 255, 255)

# Geometry (pixels).
MARGIN = 10  # around the whole sheet
GAP = 8  # between cells
FRAME = 4  # width of a right/wrong cell frame (a neutral cell gets a 1 px frame)
PAD = 6  # inside the frame, around the cell's content
THUMB_GAP = 4  # between the images of one entry
MARK = 3  # width of a per-image right/wrong border
MIN_TEXT_WIDTH = 150  # a cell is never narrower than this, so its text stays readable
MAX_LINES = 14  # wrapped text lines shown per entry; the rest is cut with "..."
FONT_SIZE = 13
TITLE_FONT_SIZE = 16


@dataclass
class SheetEntry:
    """One example on a contact sheet.

    ``images``: one image (VQA), two (NLVR2) or several (retrieval: the query's top results), as paths or
    PIL images. ``lines``: text under the images. ``correct``: True draws a green frame, False a red frame
    with a "WRONG" badge, None a neutral thin frame. ``image_marks``: one True/False/None per image for a
    green/red border around that image (None: no border).
    """

    images: list[ImageSource]
    lines: list[str]
    correct: bool | None = None
    image_marks: list[bool | None] | None = None


def _strip_units(entries: Sequence[SheetEntry]) -> int:
    """How many thumb widths the image strip of every cell gets.

    Up to 3 images get a full thumb each; more share 3 thumb widths until they would drop below half a
    thumb, past which the strip widens so each image keeps at least half a thumb.
    """
    most = max(max(len(entry.images), 1) for entry in entries)
    return min(most, max(3, math.ceil(most / 2)))


@dataclass
class _Layout:
    font: Font
    title_font: Font
    line_height: int
    title_height: int
    content_width: int
    strip_width: int
    cell_width: int
    wrapped: list[list[str]]
    row_heights: list[int]
    boxes: list[tuple[int, int, int, int]]
    size: tuple[int, int]


def _validate(entries: Sequence[SheetEntry], columns: int, thumb: int) -> None:
    if len(entries) == 0:
        raise ValueError("draw_contact_sheet needs at least one entry; got an empty list of examples")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if thumb < 16:
        raise ValueError(f"thumb must be at least 16 pixels, got {thumb}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, SheetEntry):
            raise TypeError(f"entry {index} is a {type(entry).__name__}, not a SheetEntry")
        if entry.image_marks is not None and len(entry.image_marks) != len(entry.images):
            raise ValueError(
                f"entry {index} has {len(entry.images)} images but {len(entry.image_marks)} image_marks"
            )


def _layout(entries: Sequence[SheetEntry], columns: int, thumb: int, title: str) -> _Layout:
    _validate(entries, columns, thumb)
    font = load_font(FONT_SIZE)
    title_font = load_font(TITLE_FONT_SIZE)
    text_line_height = line_height(font)
    title_height = line_height(title_font) + 2 * PAD + 4 if title else 0

    units = _strip_units(entries)
    strip_width = units * thumb + (units - 1) * THUMB_GAP
    content_width = max(strip_width, MIN_TEXT_WIDTH)
    cell_width = content_width + 2 * (FRAME + PAD)

    wrapped = [fit_lines(entry.lines, font, content_width, MAX_LINES) for entry in entries]

    def cell_height(index: int) -> int:
        badge = text_line_height + 4 if entries[index].correct is not None else 0
        text = len(wrapped[index]) * text_line_height if entries[index].lines else 0
        return 2 * (FRAME + PAD) + thumb + PAD + badge + text

    columns = min(columns, len(entries))
    rows = math.ceil(len(entries) / columns)
    row_heights = [
        max(cell_height(i) for i in range(row * columns, min((row + 1) * columns, len(entries))))
        for row in range(rows)
    ]

    boxes: list[tuple[int, int, int, int]] = []
    for index in range(len(entries)):
        row, col = divmod(index, columns)
        x0 = MARGIN + col * (cell_width + GAP)
        y0 = title_height + MARGIN + sum(row_heights[:row]) + row * GAP
        boxes.append((x0, y0, x0 + cell_width, y0 + row_heights[row]))

    width = 2 * MARGIN + columns * cell_width + (columns - 1) * GAP
    height = title_height + 2 * MARGIN + sum(row_heights) + (rows - 1) * GAP
    return _Layout(
        font,
        title_font,
        text_line_height,
        title_height,
        content_width,
        strip_width,
        cell_width,
        wrapped,
        row_heights,
        boxes,
        (width, height),
    )


def cell_boxes(
    entries: Sequence[SheetEntry], *, columns: int = 6, thumb: int = 128, title: str = ""
) -> list[tuple[int, int, int, int]]:
    """Where each entry's cell lies, ``(x0, y0, x1, y1)`` with x1/y1 exclusive, on the sheet that
    :func:`draw_contact_sheet` draws with the same arguments (the outermost ``FRAME`` pixels of a
    right/wrong cell are its green/red frame)."""
    return list(_layout(entries, columns, thumb, title).boxes)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I", "I;16", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(np.min(array)), float(np.max(array))
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _open_image(source: ImageSource) -> Image.Image | None:
    """The image as RGB, or None when it cannot be read (missing, corrupt, not an image, ...)."""
    try:
        if isinstance(source, Image.Image):
            image = source
        else:
            with Image.open(os.fspath(source)) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened) or opened
                image = image.copy()
        if image.width < 1 or image.height < 1:
            return None
        return _to_rgb(image)
    except Exception:  # an unreadable image must not fail the whole sheet
        return None


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale (up or down) keeping the aspect ratio so the image fits in ``width`` x ``height``."""
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    return image.resize(size, resample)


def _draw_unreadable(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], font: Font) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=UNREADABLE_BOX)
    draw.line((x0, y0, x1 - 1, y1 - 1), fill=(140, 140, 140), width=1)
    draw.line((x0, y1 - 1, x1 - 1, y0), fill=(140, 140, 140), width=1)
    label = "unreadable"
    while label and text_width(font, label) > x1 - x0 - 2:
        label = label[:-1]
    if label:
        tw = text_width(font, label)
        th = line_height(font)
        tx = x0 + (x1 - x0 - tw) / 2
        ty = y0 + (y1 - y0 - th) / 2
        draw.rectangle((tx - 2, ty, tx + tw + 2, ty + th), fill=(200, 200, 200))
        draw.text((tx, ty), label, fill=UNREADABLE_TEXT, font=font)


def _draw_images(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    entry: SheetEntry,
    x: int,
    y: int,
    layout: _Layout,
    thumb: int,
) -> None:
    sources = list(entry.images)
    count = max(len(sources), 1)
    slot_width = (layout.strip_width - (count - 1) * THUMB_GAP) // count
    slot_width = min(slot_width, thumb)
    used = count * slot_width + (count - 1) * THUMB_GAP
    x_start = x + (layout.content_width - used) // 2
    marks = entry.image_marks or [None] * len(sources)
    if not sources:
        _draw_unreadable(draw, (x_start, y, x_start + slot_width, y + thumb), layout.font)
        return
    for index, source in enumerate(sources):
        sx = x_start + index * (slot_width + THUMB_GAP)
        mark = marks[index]
        inset = MARK + 1 if mark is not None else 0
        inner_w, inner_h = slot_width - 2 * inset, thumb - 2 * inset
        image = _open_image(source)
        if image is None:
            w, h = inner_w, inner_h
            ix, iy = sx + inset, y + inset
            _draw_unreadable(draw, (ix, iy, ix + w, iy + h), layout.font)
        else:
            fitted = _fit(image, inner_w, inner_h)
            w, h = fitted.size
            ix = sx + inset + (inner_w - w) // 2
            iy = y + inset + (inner_h - h) // 2
            sheet.paste(fitted, (ix, iy))
        if mark is not None:
            colour = GREEN if mark else RED
            draw.rectangle(
                (ix - inset, iy - inset, ix + w + inset - 1, iy + h + inset - 1), outline=colour, width=MARK
            )


def _draw_badge(draw: ImageDraw.ImageDraw, correct: bool, x: int, y: int, layout: _Layout) -> None:
    """A coloured pill with a drawn check mark / cross (font-independent) and RIGHT / WRONG."""
    height = layout.line_height + 2
    label = "RIGHT" if correct else "WRONG"
    colour = GREEN if correct else RED
    icon = height - 6
    width = int(3 + icon + 4 + text_width(layout.font, label) + 6)
    draw.rounded_rectangle((x, y, x + width, y + height), radius=4, fill=colour)
    ix, iy = x + 4, y + 3
    if correct:
        draw.line(
            [(ix, iy + icon * 0.55), (ix + icon * 0.4, iy + icon), (ix + icon, iy)], fill=WHITE, width=2
        )
    else:
        draw.line((ix, iy, ix + icon, iy + icon), fill=WHITE, width=2)
        draw.line((ix, iy + icon, ix + icon, iy), fill=WHITE, width=2)
    draw.text((ix + icon + 4, y + 1), label, fill=WHITE, font=layout.font)


def _draw_title(
    draw: ImageDraw.ImageDraw, entries: Sequence[SheetEntry], title: str, layout: _Layout
) -> None:
    width = layout.size[0]
    draw.rectangle((0, 0, width - 1, layout.title_height - 1), fill=TITLE_BACKGROUND)
    right = sum(1 for entry in entries if entry.correct is True)
    wrong = sum(1 for entry in entries if entry.correct is False)
    summary = f"{len(entries)} shown"
    if right or wrong:
        summary += f"   {right} right   {wrong} wrong"
    summary_width = text_width(layout.title_font, summary)
    room = width - 2 * MARGIN - summary_width - 20
    text = clean(title, layout.title_font)
    if text_width(layout.title_font, text) > room:
        text = ellipsize(text, layout.title_font, max(room, 0))
    y = (layout.title_height - line_height(layout.title_font)) // 2
    draw.text((MARGIN, y), text, fill=TITLE_TEXT, font=layout.title_font)
    if room > 40:
        draw.text((width - MARGIN - summary_width, y), summary, fill=(190, 195, 205), font=layout.title_font)


def _render(entries: Sequence[SheetEntry], thumb: int, title: str, layout: _Layout) -> Image.Image:
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        _draw_title(draw, entries, title, layout)
    for entry, lines, (x0, y0, x1, y1) in zip(entries, layout.wrapped, layout.boxes, strict=True):
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=CELL_BACKGROUND)
        if entry.correct is None:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=NEUTRAL_FRAME, width=1)
        else:
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=GREEN if entry.correct else RED, width=FRAME)
        x = x0 + FRAME + PAD
        y = y0 + FRAME + PAD
        _draw_images(sheet, draw, entry, x, y, layout, thumb)
        y += thumb + PAD
        if entry.correct is not None:
            _draw_badge(draw, entry.correct, x, y, layout)
            y += layout.line_height + 4
        if entry.lines:
            for line in lines:
                draw.text((x, y), line, fill=TEXT, font=layout.font)
                y += layout.line_height
    return sheet


def _os_error(exc: OSError, path: Path) -> OSError:
    message = f"cannot write contact sheet {path}: {exc.strerror or exc}"
    return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def draw_contact_sheet(
    entries: Sequence[SheetEntry],
    path: str | os.PathLike,
    *,
    columns: int = 6,
    thumb: int = 128,
    title: str = "",
) -> Path:
    """Draw ``entries`` as a grid, ``columns`` cells wide, into the PNG ``path``; return its Path.

    Every cell has the same width: its images side by side (each fitted, aspect kept, in ``thumb`` px;
    an entry with more than 3 images shares about 3 thumb widths) above the entry's text wrapped to
    the cell width. A row is as tall as its tallest cell. ``title`` adds a bar on top with the number
    of examples and how many are right/wrong. The parent directory is created; the file is written
    atomically. Raises ValueError for no entries, OSError (naming the path) when it cannot be written.
    """
    layout = _layout(entries, columns, thumb, title)
    sheet = _render(entries, thumb, title, layout)

    target = Path(path)
    try:
        return replace_atomically(target, lambda temp: sheet.save(temp, format="PNG"), durable=True)
    except OSError as exc:
        raise _os_error(exc, target) from exc
