"""Text on a contact sheet: the font, the characters it can draw (others get an ASCII stand-in), and
text fitted to a width (word wrap, long words broken, "..." where text is cut)."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

from PIL import ImageFont

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def load_font(size: int) -> Font:
    """Pillow's default font at ``size`` px (scalable where Pillow has FreeType, else its bitmap font)."""
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ValueError):
        return ImageFont.load_default()


def _is_scalable(font: Font) -> bool:
    return isinstance(font, ImageFont.FreeTypeFont)


# Stand-ins for common characters the default font may lack (its embedded face covers little beyond ASCII).
_FALLBACKS = {
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2026": "...",
    "\u00b7": ".",
    "\u2022": "*",
    "\u00d7": "x",
    "\u2717": "x",
    "\u2718": "x",
    "\u2713": "v",
    "\u2714": "v",
    "\u2192": "->",
    "\u21d2": "=>",
    "\u2190": "<-",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u00a0": " ",
    "\u00df": "ss",
    "\u00e6": "ae",
    "\u00c6": "AE",
    "\u0153": "oe",
    "\u00f8": "o",
    "\u00d8": "O",
    "\u0142": "l",
    "\u0141": "L",
}


@functools.lru_cache(maxsize=8192)
def _has_glyph(font: Font, ch: str) -> bool:
    """Whether ``font`` draws ``ch`` as itself rather than as the "missing glyph" box."""
    if not _is_scalable(font):
        return " " <= ch <= "~"  # the old bitmap font: play safe with plain ASCII
    if " " <= ch <= "~":
        return True
    try:
        mask, missing = font.getmask(ch), font.getmask("\uffff")
    except Exception:
        return False
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def clean(text: str, font: Font) -> str:
    """Text the font can draw: control characters become spaces, characters without a glyph become an
    ASCII stand-in (accents dropped, dashes and quotes plain) or "?"."""
    out: list[str] = []
    for ch in str(text):
        if not ch.isprintable():
            out.append(" ")
        elif _has_glyph(font, ch):
            out.append(ch)
        elif ch in _FALLBACKS:
            out.append(_FALLBACKS[ch])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base and all(_has_glyph(font, c) for c in base) else "?")
    return "".join(out)


def line_height(font: Font) -> int:
    """The pixels one line of ``font`` text takes, spacing included."""
    left, top, right, bottom = font.getbbox("Ayg|")
    return int(bottom) + 3


def text_width(font: Font, text: str) -> float:
    """The width of ``text`` drawn in ``font``, in pixels."""
    return float(font.getlength(text)) if text else 0.0


def _break_word(word: str, font: Font, width: int) -> list[str]:
    """Split a word wider than ``width`` into pieces that fit."""
    pieces: list[str] = []
    current = ""
    for ch in word:
        if current and text_width(font, current + ch) > width:
            pieces.append(current)
            current = ch
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def _wrap(text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap of one line of text to ``width`` pixels; words too wide are broken."""
    words = text.split()
    if not words:
        return [""]
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if text_width(font, candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        if text_width(font, word) <= width:
            current = word
        else:
            *full, current = _break_word(word, font, width)
            lines.extend(full)
    lines.append(current)
    return lines


def ellipsize(text: str, font: Font, width: int) -> str:
    """``text`` cut short enough that it fits in ``width`` pixels with "..." appended."""
    while text and text_width(font, text + "...") > width:
        text = text[:-1]
    return text + "..."


def fit_lines(lines: Sequence[str], font: Font, width: int, max_lines: int) -> list[str]:
    """``lines`` made drawable, wrapped to ``width`` pixels, at most ``max_lines`` of them (the last
    ending in "..." when some were cut)."""
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(_wrap(clean(line, font), font, width))
    if len(wrapped) > max_lines:
        wrapped = wrapped[:max_lines]
        wrapped[-1] = ellipsize(wrapped[-1], font, width)
    return wrapped
