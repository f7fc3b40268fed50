"""Contact sheets: a PNG grid of examples with green/red frames for right/wrong answers."""

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlp.sheets import FRAME, PAD, SheetEntry, cell_boxes, draw_contact_sheet

THUMB = 64


def _picture(size, colour):
    """A blue/grey picture: no red or green in it, so those colours on the sheet come from the marks."""
    image = Image.new("RGB", size, (200, 200, 215))
    ImageDraw.Draw(image).ellipse((4, 4, size[0] - 5, size[1] - 5), fill=colour)
    return image


def _reddish(pixels):
    pixels = pixels.astype(int)
    return (pixels[..., 0] > 150) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)


def _greenish(pixels):
    pixels = pixels.astype(int)
    return (pixels[..., 1] > 110) & (pixels[..., 0] < 90) & (pixels[..., 2] < 100)


def _left_frame(array, box):
    x0, y0, x1, y1 = box
    return array[y0 + FRAME : y1 - FRAME, x0 : x0 + FRAME]


def _top_frame(array, box):
    x0, y0, x1, y1 = box
    return array[y0 : y0 + FRAME, x0 + FRAME : x1 - FRAME]


@pytest.fixture
def entries(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    _picture((80, 50), (30, 30, 160)).save(jpeg, format="JPEG")
    return [
        SheetEntry(
            [_picture((48, 48), (40, 60, 180))], ["Q: what colour?", "pred: blue (0.93)", "truth: blue"], True
        ),
        SheetEntry([jpeg], ["Q: how many circles are there?", "pred: 3 (0.41)", "truth: 2"], False),
        SheetEntry([_picture((30, 60), (90, 90, 120))], ["Q: is it a square?", "pred: no"], None),
        SheetEntry(
            [_picture((40, 40), (60, 60, 200)), str(jpeg)],
            ["The left image has more circles than the right.", "pred: true", "truth: true"],
            True,
        ),
        SheetEntry(
            [_picture((50, 40), (30 + 20 * i, 30, 200)) for i in range(5)],
            ["query: a blue circle", "R@1 miss, R@5 hit"],
            False,
            [False, True, None, False, False],
        ),
        SheetEntry([tmp_path / "missing.png"], ["an image that is not there"], None),
    ]


def test_sheet_is_a_png_with_green_and_red_frames(tmp_path, entries):
    out = draw_contact_sheet(
        entries, tmp_path / "sheets" / "dev.png", columns=3, thumb=THUMB, title="VQA dev"
    )
    assert out == tmp_path / "sheets" / "dev.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as opened:
        assert opened.format == "PNG"
        array = np.asarray(opened.convert("RGB"))
    boxes = cell_boxes(entries, columns=3, thumb=THUMB, title="VQA dev")
    assert len(boxes) == len(entries)
    assert max(box[2] for box in boxes) <= array.shape[1] and max(box[3] for box in boxes) <= array.shape[0]

    for index in (0, 3):  # right answers: a green frame, no red in it
        for frame in (_left_frame(array, boxes[index]), _top_frame(array, boxes[index])):
            assert _greenish(frame).all()
            assert not _reddish(frame).any()
    for index in (1, 4):  # wrong answers: a red frame, no green in it
        for frame in (_left_frame(array, boxes[index]), _top_frame(array, boxes[index])):
            assert _reddish(frame).all()
            assert not _greenish(frame).any()
    for index in (2, 5):  # neutral: neither colour anywhere in the cell
        x0, y0, x1, y1 = boxes[index]
        cell = array[y0:y1, x0:x1]
        assert not _reddish(cell).any() and not _greenish(cell).any()

    # The 5-image entry's strip carries its image_marks: one green border and red ones.
    x0, y0, x1, y1 = boxes[4]
    strip = array[y0 + FRAME + PAD : y0 + FRAME + PAD + THUMB, x0 + FRAME : x1 - FRAME]
    assert _greenish(strip).sum() > 20
    assert _reddish(strip).sum() >= 3 * _greenish(strip).sum()  # three red-marked images, one green
    # A wrong cell also gets a red "WRONG" badge below its images; a right cell a green one.
    for index, colour in ((1, _reddish), (0, _greenish)):
        x0, y0, x1, y1 = boxes[index]
        below = array[y0 + FRAME + PAD + THUMB : y1 - FRAME, x0 + FRAME : x1 - FRAME]
        assert colour(below).sum() > 50


def test_height_grows_with_the_number_of_rows(tmp_path):
    def entry(i):
        return SheetEntry([_picture((40, 40), (40, 40, 150 + i))], [f"example {i}", "pred: x"], i % 2 == 0)

    three = draw_contact_sheet([entry(i) for i in range(3)], tmp_path / "three.png", columns=3, thumb=THUMB)
    seven = draw_contact_sheet([entry(i) for i in range(7)], tmp_path / "seven.png", columns=3, thumb=THUMB)
    with Image.open(three) as a, Image.open(seven) as b:
        (w3, h3), (w7, h7) = a.size, b.size
    assert w3 == w7
    assert h7 > 2.5 * (h3 - 20)  # 3 rows against 1, less the margins
    boxes = cell_boxes([entry(i) for i in range(7)], columns=3, thumb=THUMB)
    assert len({box[1] for box in boxes}) == 3

    titled = draw_contact_sheet(
        [entry(i) for i in range(3)], tmp_path / "t.png", columns=3, thumb=THUMB, title="T"
    )
    with Image.open(titled) as c:
        assert c.size[0] == w3 and c.size[1] > h3


def test_long_text_wraps_instead_of_widening(tmp_path):
    short = [SheetEntry([_picture((40, 40), (40, 40, 160))], ["short"])]
    long_line = "a question that goes on and on " * 6 + "with_an_unbreakable_word_" * 4 + " café — ✓ 日本"
    long = [SheetEntry([_picture((40, 40), (40, 40, 160))], [long_line])]
    a = draw_contact_sheet(short, tmp_path / "short.png", thumb=THUMB)
    b = draw_contact_sheet(long, tmp_path / "long.png", thumb=THUMB)
    with Image.open(a) as sa, Image.open(b) as sb:
        assert sa.size[0] == sb.size[0]
        assert sb.size[1] > sa.size[1]


def test_unreadable_images_are_grey_boxes(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    sheet_entries = [
        SheetEntry([tmp_path / "nope.png"], ["missing file"], False),
        SheetEntry([broken, _picture((40, 40), (40, 40, 160))], ["corrupt file"], None, [None, True]),
    ]
    out = draw_contact_sheet(sheet_entries, tmp_path / "u.png", columns=2, thumb=THUMB)
    array = np.asarray(Image.open(out).convert("RGB")).astype(int)
    x0, y0, x1, y1 = cell_boxes(sheet_entries, columns=2, thumb=THUMB)[0]
    strip = array[y0 + FRAME + PAD : y0 + FRAME + PAD + THUMB, x0 + FRAME : x1 - FRAME]
    grey = (np.abs(strip - 160) <= 2).all(axis=-1)
    assert grey.sum() > THUMB * THUMB // 4


def test_empty_entries_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="at least one entry"):
        draw_contact_sheet([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_mismatched_image_marks_is_a_value_error(tmp_path):
    entry = SheetEntry([_picture((20, 20), (0, 0, 200))] * 2, ["x"], None, [True])
    with pytest.raises(ValueError, match="image_marks"):
        draw_contact_sheet([entry], tmp_path / "bad.png")


def test_unwritable_path_names_the_path(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    target = blocker / "sheet.png"
    entry = SheetEntry([_picture((20, 20), (0, 0, 200))], ["x"])
    with pytest.raises(OSError, match="sheet.png"):
        draw_contact_sheet([entry], target)


def test_write_is_atomic_and_overwrites(tmp_path):
    entry = SheetEntry([_picture((20, 20), (0, 0, 200))], ["x"], True)
    target = tmp_path / "out" / "deep" / "sheet.png"
    draw_contact_sheet([entry], target, thumb=THUMB)
    first = target.read_bytes()
    draw_contact_sheet([entry, entry], os.fspath(target), columns=1, thumb=THUMB)
    assert target.read_bytes() != first
    assert sorted(p.name for p in target.parent.iterdir()) == ["sheet.png"]  # no temp file left behind
