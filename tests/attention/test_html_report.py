"""report.html renders offline: figures embedded, no script, no external URL, text escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_lab.attention import html_report

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in {"src", "href", "data", "action"} and v]


def assert_offline(html: str) -> None:
    """No resource outside the file: every src/href is a data: URI, no script, no CSS url()."""
    parser = _Links()
    parser.feed(html)
    assert parser.urls and all(u.startswith("data:") for u in parser.urls), parser.urls[:3]
    assert not parser.tags & {"script", "link", "iframe"}
    assert "url(" not in html and "@import" not in html


def test_report_embeds_its_figures_and_escapes_text(tmp_path: Path):
    figure = tmp_path / "f.png"
    figure.write_bytes(PNG)
    text = "see https://example.com <b>now</b>"
    html = html_report.render(
        "t",
        [
            ("Findings", [html_report.findings_list([text])]),
            ("Tables", [pd.DataFrame({"a": [1.0]}), figure]),
            ("Words", [html_report.coloured_text(["good", "<bad>"], np.array([1.0, -0.5]))]),
        ],
    )
    assert_offline(html)
    assert "<b>now</b>" not in html and "&lt;b&gt;now&lt;/b&gt;" in html
    assert "&lt;bad&gt;" in html and "rgb(255, 0, 0)" in html and "rgb(127, 127, 255)" in html
