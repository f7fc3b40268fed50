"""vlp.files: a generated block written between its markers, the rest of the file kept."""

import pytest

from vlp.files import replace_marked_block


def test_the_block_between_the_markers_is_replaced_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- table -->\nold\nrows\n<!-- /table -->\nafter <!-- table --> mention\n")
    replace_marked_block(readme, "table", "| a |\n| 1 |\n")
    assert readme.read_text() == (
        "intro\n<!-- table -->\n| a |\n| 1 |\n<!-- /table -->\nafter <!-- table --> mention\n"
    )
    replace_marked_block(readme, "table", "new")  # again: the same markers are found
    assert "<!-- table -->\nnew\n<!-- /table -->" in readme.read_text()


def test_missing_markers_name_the_file_and_change_nothing(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- /table --> before <!-- table -->\n")
    with pytest.raises(ValueError, match=r"README.md: no '<!-- table -->' \.\.\. '<!-- /table -->'"):
        replace_marked_block(readme, "table", "x")
    assert readme.read_text() == "<!-- /table --> before <!-- table -->\n"
