"""Figures: a saved figure is a complete PNG of the size asked for, written atomically and closed;
the image mosaic places, scales and separates its tiles exactly."""

import struct

import numpy as np
import pytest
import torch

from errprop.errors import ErrpropError
from errprop.plots import image_grid, plt, save_figure, save_samples_png

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's header, after checking the signature and the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")  # first and last chunk
    return struct.unpack(">II", data[16:24])


def test_save_figure_writes_a_png_of_the_asked_size_and_closes_it(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "new" / "f.png", dpi=50)  # the folder is created
    assert path == tmp_path / "new" / "f.png"
    assert png_size(path) == (200, 150)
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.png"]  # no temporary left behind
    pixels = plt.imread(path)  # decodes: a real picture, not just a header
    assert pixels.shape[:2] == (150, 200) and pixels.std() > 0


def test_save_figure_failure_names_the_file_keeps_the_old_one_and_closes(tmp_path):
    path = tmp_path / "f.png"
    save_figure(plt.figure(figsize=(1, 1)), path, dpi=20)
    before = path.read_bytes()
    fig = plt.figure()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    fig.savefig = broken
    with pytest.raises(ErrpropError, match="could not write .*f.png: No space left"):
        save_figure(fig, path)
    assert path.read_bytes() == before and not plt.fignum_exists(fig.number)


def test_image_grid_places_scales_and_separates_tiles():
    c, h, w = 1, 2, 3
    x = torch.stack([torch.full((c, h, w), v) for v in (-1.0, 0.0, 1.0, 2.0, -3.0)])
    grid = image_grid(x)  # nrow = ceil(√5) = 3, rows = 2
    assert grid.shape == (2 * (h + 1) + 1, 3 * (w + 1) + 1, c) and grid.dtype == np.uint8
    tiles = [grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w]
             for r in range(2) for k in range(3)]
    # −1 → 0, 0 → 128 (127.5 rounded), 1 → 255; outside [−1, 1] clipped
    assert [int(t.min()) for t in tiles[:5]] == [0, 128, 255, 255, 0]
    assert all(t.min() == t.max() for t in tiles[:5])
    assert tiles[5].max() == 0  # the missing sixth tile stays black
    gaps = np.ones(grid.shape[:2], bool)
    for r in range(2):
        for k in range(3):
            gaps[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = False
    assert grid[gaps].max() == 0  # 1-pixel black gaps between and around the tiles
    assert image_grid(x, nrow=5).shape == (h + 2, 5 * (w + 1) + 1, c)


def test_image_grid_keeps_colour_channels_apart():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0], x[0, 1], x[0, 2] = 1.0, -1.0, 0.0
    tile = image_grid(x)[1:3, 1:3]
    assert (tile[..., 0] == 255).all() and (tile[..., 1] == 0).all() and (tile[..., 2] == 128).all()


@pytest.mark.parametrize("x, size", [
    (torch.randn(200, 2), (600, 600)),  # 2-D points: a scatter (5 × 5 in at 120 dpi)
    (torch.rand(12, 1, 8, 8) * 2 - 1, (720, 720)),  # images: a grid (6 × 6 in)
    (torch.randn(12, 5), (720, 720)),  # other vectors: one row of pixels each
])
def test_save_samples_png(tmp_path, x, size):
    ref = torch.randn(100, 2) if x.shape[1:] == (2,) else None
    plt.close("all")  # (a figure another test module left open is not this function's)
    path = save_samples_png(x, tmp_path / "s.png", title="samples", reference=ref)
    assert png_size(path) == size
    assert plt.get_fignums() == []  # its own figure is closed
