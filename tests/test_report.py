"""The report writer: Markdown and one self-contained, escaped HTML page."""

import base64
import re

from errprop.report import Report


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)


def test_markdown_and_html_carry_the_same_blocks_in_order(tmp_path):
    _png(tmp_path / "a.png")
    rep = (Report("t <1>").verdict("SA wins at `5` steps\nEP: no difference").heading("h")
           .text("see `x.json` & <b>not bold</b>").table(["a", "b"], [[1, 0.123456], ["<i>", None]])
           .image("a.png", "cap"))
    md = rep.write(tmp_path).read_text()
    page = (tmp_path / "report.html").read_text()
    assert md.index("**Verdict.**") < md.index("## h") < md.index("| a | b |") < md.index("![cap](a.png)")
    assert "| 1 | 0.1235 |" in md and "| <i> | None |" in md
    # HTML: the verdict first, text escaped (no injected tags), `code` spans, the image inline
    assert page.index('id="verdict"') < page.index("<h2>h</h2>")
    assert "<b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page and "&lt;i&gt;" in page
    assert "<code>x.json</code>" in page and "<code>5</code>" in page and "t &lt;1&gt;" in page
    src = re.search(r'<img src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(src) == (tmp_path / "a.png").read_bytes()
    assert "a.png" not in page.split("<img", 1)[1].split(">", 1)[0]  # no file reference left
