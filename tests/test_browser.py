"""Self-test of tests/browser.py: a real headless Chromium renders a tiny self-contained page."""

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from browser import render, require_browser  # noqa: E402


def _png_data_uri() -> str:
    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1, 2], [1, 0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_render_sees_text_tables_and_decoded_images(tmp_path):
    require_browser()
    html = tmp_path / "report.html"
    html.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>tiny report</title></head><body>"
        "<h1>Error propagation</h1>"
        "<p id='verdict'>Verdict: errors compound</p>"
        "<table><tr><th>step</th><th>gap</th></tr><tr><td>1</td><td>0.1</td></tr>"
        "<tr><td>2</td><td>0.3</td></tr></table>"
        f"<img alt='good' src='{_png_data_uri()}'>"
        "<img alt='broken' src='data:image/png;base64,AAAA'>"
        "</body></html>"
    )
    page = render(html)

    assert page.verdict == "Verdict: errors compound"
    assert "Error propagation" in page.text and "0.3" in page.text
    assert page.title == "tiny report"
    assert page.table_rows == 3
    good, broken = page.images
    assert good.src_prefix.startswith("data:image/png;base64,") and good.decoded
    assert (good.natural_width, good.natural_height) == (100, 75)
    assert not broken.decoded and broken.natural_width == 0
    assert page.external_requests == []
    assert page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
