"""Resources bounded by the input, not by what a spec asks for: filter windows, median memory,
defend's batches, compiled programs for small images (issue 21, item 5)."""

from __future__ import annotations

import subprocess
import sys

import cpu_references as ref
import numpy as np
import pytest
import torch
from torchvision.io import write_png

import lgs_gpu.defenses.median as median_module
from lgs_gpu.app.cli import main
from lgs_gpu.app.defend import defend_files
from lgs_gpu.app.defend_inputs import group_batches
from lgs_gpu.app.resources import BYTES_PER_PIXEL, default_batch_memory
from lgs_gpu.defenses import ImageDefense, bilateral_filter, gaussian_filter, get, median_filter


class TestWindows:
    @pytest.mark.parametrize("spec", ["median:99999", "gaussian:601", "bilateral:1001"])
    def test_a_window_past_the_image_is_refused_with_the_bound(self, spec):
        with pytest.raises(ValueError, match=r"too large for a 299 x 200 image: at most 599"):
            get(spec)(torch.zeros(1, 3, 299, 200, dtype=torch.uint8))

    def test_the_largest_window_still_matches_scipy(self):
        image = np.random.default_rng(3).random((9, 6, 2))  # at most 2 x 9 + 1 = 19
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        assert np.array_equal(median_filter(tensor, 19).permute(1, 2, 0).numpy(), ref.scipy_median(image, 19))
        ours = gaussian_filter(tensor, 19, sigma=4.0).permute(1, 2, 0).numpy()
        assert np.abs(ours - ref.scipy_gaussian(image, 19, sigma=4.0)).max() < 1e-12
        bilateral_filter(tensor, 19)  # accepted
        with pytest.raises(ValueError, match="at most 19"):
            median_filter(tensor, 21)

    def test_small_windows_fit_any_image(self):
        image = np.random.default_rng(4).random((1, 1, 3))
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        assert np.array_equal(median_filter(tensor, 15).permute(1, 2, 0).numpy(), ref.scipy_median(image, 15))


class TestMedianTiles:
    @pytest.mark.parametrize("tile_values", [1, 700, 10**9], ids=["pixel tiles", "ragged tiles", "one tile"])
    @pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
    def test_tiles_give_scipy_exactly(self, monkeypatch, tile_values, dtype):
        monkeypatch.setattr(median_module, "TILE_VALUES", tile_values)
        image = np.random.default_rng(5).integers(0, 256, (2, 23, 31, 3)).astype(np.uint8)
        batch = torch.from_numpy(image).permute(0, 3, 1, 2).to(dtype)
        out = median_filter(batch, 7).permute(0, 2, 3, 1).numpy()
        for b in range(2):
            assert np.array_equal(out[b].astype(image.dtype if dtype == torch.uint8 else out.dtype),
                                  ref.scipy_median(image[b].astype(out.dtype), 7))  # fmt: skip

    def test_planes_one_by_one_when_one_pixel_of_each_would_not_fit(self, monkeypatch):
        monkeypatch.setattr(median_module, "TILE_VALUES", 2 * 25)  # a pixel of 6 planes is 150 values
        batch = torch.rand(2, 3, 9, 11, dtype=torch.float64)
        expected = np.stack([ref.scipy_median(image.permute(1, 2, 0).numpy(), 5) for image in batch])
        assert np.array_equal(median_filter(batch, 5).permute(0, 2, 3, 1).numpy(), expected)

    def test_tiles_keep_the_gradient(self, monkeypatch):
        x = torch.rand(1, 2, 12, 10, dtype=torch.float64, requires_grad=True)
        (whole,) = torch.autograd.grad(median_filter(x, 5).square().sum(), x)
        monkeypatch.setattr(median_module, "TILE_VALUES", 3 * 2 * 25)
        (tiled,) = torch.autograd.grad(median_filter(x, 5).square().sum(), x)
        assert torch.allclose(whole, tiled, rtol=0, atol=1e-12)  # the same selections; sums in another order

    def test_median_21_on_one_299_px_image_stays_small(self):
        # The issue measured 1.2 GB of peak memory for this; the unfolded stack alone is 473 MB.
        probe = (
            "import resource, torch; torch.set_num_threads(1); from lgs_gpu.defenses import get; "
            "x = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8); get('median:3')(x); "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; get('median:21')(x); "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)"
        )
        grown = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
        assert grown < 200, f"median:21 grew the peak memory by {grown} MiB"


class TestDefendBatchMemory:
    @pytest.fixture
    def same_size(self, tmp_path, photo_batch):
        folder = tmp_path / "in"
        folder.mkdir()
        for number in range(7):
            write_png(photo_batch[number % 4, :, number : number + 40, :56].contiguous(), str(folder / f"{number}.png"))
        return folder

    def test_batches_hold_what_fits_in_the_budget(self, tmp_path, same_size):
        recording = Recording(get("median:3"))
        budget = BYTES_PER_PIXEL * 40 * 56 * 3  # three 40 x 56 images
        defend_files([same_size], tmp_path / "out", defense=recording, batch_size=8, batch_memory=budget, progress=False)
        assert recording.shapes == [(3, 3, 40, 56), (3, 3, 40, 56), (1, 3, 40, 56)]

    def test_an_image_past_the_budget_is_defended_alone(self, tmp_path, same_size):
        recording = Recording(get("median:3"))
        summary = defend_files([same_size], tmp_path / "out", defense=recording, batch_memory=1, progress=False)
        assert recording.shapes == [(1, 3, 40, 56)] * 7 and len(summary.written) == 7

    def test_eight_80_megapixel_images_are_not_one_batch_by_default(self):
        batch_pixels = default_batch_memory("cpu") // BYTES_PER_PIXEL
        sizes = [(8000, 10000)] * 8
        batches = list(group_batches(sizes, lambda size: size, 8, 32, weight=lambda s: s[0] * s[1],
                                     max_weight=batch_pixels))  # fmt: skip
        assert max(len(batch) for batch in batches) * 8000 * 10000 * BYTES_PER_PIXEL <= max(
            default_batch_memory("cpu"), 8000 * 10000 * BYTES_PER_PIXEL
        )

    def test_the_cli_takes_gigabytes_and_refuses_nonsense(self, tmp_path, same_size, capsys):
        assert main(["defend", str(same_size), "-o", str(tmp_path / "out"), "--defense", "median:3",
                     "--batch-memory", "0.5"]) == 0  # fmt: skip
        assert main(["defend", str(same_size), "-o", str(tmp_path / "bad"), "--batch-memory", "0"]) == 2
        assert "--batch-memory must be a number of gigabytes > 0" in capsys.readouterr().err


class Recording(ImageDefense):
    """Another defense, recording the batch shapes it is called on."""

    name = "recording"

    def __init__(self, inner: ImageDefense) -> None:
        super().__init__()
        self.inner, self.shapes = inner, []

    @property
    def spec(self) -> str:
        return self.inner.spec

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


def test_the_write_queue_is_bounded_by_pixels_too(tmp_path, monkeypatch, photo_batch):
    import lgs_gpu.app.defend as defend_module

    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(6):
        write_png(photo_batch[number % 4, :, :40, :56].contiguous(), str(folder / f"{number}.png"))
    most, real = [0], defend_module.Writer._record_written

    def watching(self, most_in_flight, most_pixels):
        real(self, most_in_flight, most_pixels)
        most[0] = max(most[0], self.pixels_in_flight)

    monkeypatch.setattr(defend_module.Writer, "_record_written", watching)
    budget = BYTES_PER_PIXEL * 40 * 56  # one image a batch, four images' pixels in flight at most
    defend_files([folder], tmp_path / "out", defense="median:3", batch_memory=budget, progress=False)
    assert 0 < most[0] <= 4 * 40 * 56
