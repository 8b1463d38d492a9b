"""Text safety helpers and the foldable JSON lines of the state pane."""

from __future__ import annotations

from rich.cells import cell_len

from tui._json_lines import ancestors, json_lines, line_runs
from tui._text import clip, compact_json, fmt_duration, plain


def test_plain_never_parses_markup_and_shows_control_characters() -> None:
    t = plain("[bold red]x[/] :smile: \x1b[2J")
    assert t.plain == "[bold red]x[/] :smile: \\x1b[2J"
    assert not t.spans


def test_clip_respects_cell_widths() -> None:
    assert clip("abcdef", 4) == "abc…"
    assert clip("abc", 4) == "abc"
    wide = clip("日本語のテキスト", 7)
    assert cell_len(wide) <= 7 and wide.endswith("…")


def test_durations_pick_a_short_unit() -> None:
    assert [fmt_duration(n) for n in (850, 12_500, 3_200_000, 1_250_000_000)] == [
        "850 ns", "12.5 µs", "3.2 ms", "1.25 s",
    ]  # fmt: skip


def test_compact_json_is_one_clipped_line() -> None:
    assert compact_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert compact_json("x" * 100, 10).endswith("…")


DOC = {"applicant": {"name": "Ada", "score": 710}, "tags": ["a", "b"], "empty": {}, "n": None}


def test_every_value_has_a_line_and_containers_close() -> None:
    lines = json_lines(DOC)
    paths = [ln.path for ln in lines if ln.kind != "close"]
    assert paths == ["", "/applicant", "/applicant/name", "/applicant/score", "/tags", "/tags/0",
                     "/tags/1", "/empty", "/n"]  # fmt: skip
    assert sum(ln.kind == "close" for ln in lines) == 3  # document, applicant, tags


def test_folding_hides_a_subtree_behind_a_summary() -> None:
    lines = json_lines(DOC, folded={"/applicant"})
    folded = next(ln for ln in lines if ln.path == "/applicant")
    assert folded.folded and folded.text == "{… 2 keys}"
    assert not any(ln.path.startswith("/applicant/") for ln in lines)


def test_changes_mark_their_line_or_the_folded_container_holding_them() -> None:
    changes = {"/applicant/score": "changed", "/tags/1": "added"}
    open_lines = {
        ln.path: ln.change for ln in json_lines(DOC, changes=changes) if ln.kind != "close"
    }
    assert open_lines["/applicant/score"] == "changed" and open_lines["/tags/1"] == "added"
    folded = {ln.path: ln.change for ln in json_lines(DOC, folded={"/applicant"}, changes=changes)}
    assert folded["/applicant"] == "inner"


def test_keys_with_slashes_are_escaped_pointers_and_markup_stays_text() -> None:
    doc = {"a/b": {"[red]k[/]": "[link=x]v"}}
    lines = json_lines(doc)
    assert [ln.path for ln in lines if ln.kind != "close"] == ["", "/a~1b", "/a~1b/[red]k[~1]"]
    text = "".join(t for t, _ in line_runs(lines[2]))
    assert "[red]k[/]" in text and '"[link=x]v"' in text


def test_ancestors_walk_up_to_the_document() -> None:
    assert list(ancestors("/a/b/c")) == ["/a/b", "/a", ""]


def test_huge_documents_are_cut_with_a_note() -> None:
    lines = json_lines({"xs": list(range(1000))}, limit=100)
    assert len(lines) == 101 and "more than 100 lines" in lines[-1].text
