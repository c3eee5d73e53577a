"""Tables as GitHub-flavoured Markdown, for files a README can quote verbatim."""

from __future__ import annotations


def markdown_table(rows: list[dict[str, str]]) -> str:
    """``rows`` (dicts with the same keys, in column order) as a Markdown table.

    A ``|`` inside a cell is escaped; an empty ``rows`` gives an empty string.
    """
    if not rows:
        return ""
    header = list(rows[0])

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [line([row[k] for k in header]) for row in rows]
    return "\n".join(lines) + "\n"
