"""scripts/benchlib.py: a benchmark section's tables are rewritten, its written reading is kept."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchlib import READING, write_section  # noqa: E402


def test_rewritten_section_keeps_its_reading(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text(f"# B\n\n## A\n\nold table\n\n{READING}\nWhat it shows.\n\n### sub\n\n## C\n\nc\n")
    write_section("## A", "## A\n\nnew table\n", doc)
    text = doc.read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index(READING) < text.index("What it shows.") < text.index("### sub")
    assert text.endswith("## C\n\nc\n")
    write_section("## A", f"## A\n\nnewer\n\n{READING}\nA new reading.\n", doc)  # a text with its own reading
    assert "What it shows." not in doc.read_text() and "A new reading." in doc.read_text()
    write_section("## D", "## D\n\nd\n", doc)  # a new section is appended
    assert doc.read_text().endswith("## D\n\nd\n")
