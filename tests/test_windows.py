import pytest
import torch

from lgs_gpu.core.windows import axis_windows
from lgs_gpu.smoothing.backends.torch_path import collate, window_means

from helpers import membership_matrix


@pytest.mark.parametrize(
    "length, window_size, overlap, starts, extent",
    [
        (1, 15, 5, (0,), 1),
        (14, 15, 5, (0,), 14),
        (15, 15, 5, (0,), 15),
        (16, 15, 5, (0, 1), 15),
        (25, 15, 5, (0, 10), 15),  # 25 - 15 = 10 is a regular start: no duplicate last window
        (32, 15, 5, (0, 10, 17), 15),
        (299, 15, 5, tuple(range(0, 284, 10)) + (284,), 15),
        (10, 3, 0, (0, 3, 6, 7), 3),
        (6, 3, 2, (0, 1, 2, 3), 3),
    ],
)
def test_axis_windows_by_hand(length, window_size, overlap, starts, extent):
    windows = axis_windows(length, window_size, overlap)
    assert windows.starts == starts
    assert windows.extent == extent


@pytest.mark.parametrize("length", [1, 2, 14, 15, 16, 29, 30, 31, 224, 299, 300])
@pytest.mark.parametrize("window_size, overlap", [(15, 5), (8, 0), (5, 4), (1, 0)])
def test_every_pixel_is_covered_by_full_windows(length, window_size, overlap):
    windows = axis_windows(length, window_size, overlap)
    assert windows.extent == min(window_size, length)
    assert all(start + windows.extent <= length for start in windows.starts)
    assert list(windows.starts) == sorted(set(windows.starts))
    covered = torch.zeros(length, dtype=torch.bool)
    for start in windows.starts:
        covered[start : start + windows.extent] = True
    assert covered.all()
    assert windows.starts[-1] == length - windows.extent  # the last window is clamped to the border


@pytest.mark.parametrize("length, window_size, overlap", [(1, 15, 5), (37, 15, 5), (299, 15, 5), (20, 5, 4)])
def test_covering_runs_and_membership_agree(length, window_size, overlap):
    members = membership_matrix(length, window_size, overlap).bool()
    first, count = axis_windows(length, window_size, overlap).covering
    for pixel in range(length):
        covering = torch.nonzero(members[:, pixel]).flatten().tolist()
        assert covering == list(range(first[pixel], first[pixel] + count[pixel]))
    assert axis_windows(length, window_size, overlap).max_cover == max(count)


def test_axis_windows_rejects_empty_axis():
    with pytest.raises(ValueError, match="length"):
        axis_windows(0, 15, 5)


@pytest.mark.parametrize("length, window_size, overlap", [(1, 15, 5), (37, 15, 5), (299, 15, 5), (20, 5, 4), (40, 15, 10)])
def test_pixel_classes_group_pixels_with_the_same_windows(length, window_size, overlap):
    windows = axis_windows(length, window_size, overlap)
    class_of_pixel, class_first, class_count = windows.classes
    first, count = windows.covering
    for pixel in range(length):
        assert (class_first[class_of_pixel[pixel]], class_count[class_of_pixel[pixel]]) == (first[pixel], count[pixel])
    assert class_of_pixel == sorted(class_of_pixel) and len(set(zip(class_first, class_count, strict=True))) == len(class_first)
    assert len(class_first) <= 2 * windows.count


@pytest.mark.parametrize("height, width", [(1, 1), (16, 300), (299, 299), (37, 41)])
@pytest.mark.parametrize("window_size, overlap", [(15, 5), (5, 4), (20, 0)])
def test_window_means_and_collation_equal_the_membership_products(height, width, window_size, overlap):
    """The strided sums and the class-table collation against ``rows @ g @ cols^T`` with 0/1 matrices."""
    rows = membership_matrix(height, window_size, overlap)
    cols = membership_matrix(width, window_size, overlap)
    normalised = torch.rand(3, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    area = rows.sum(1)[0] * cols.sum(1)[0]
    torch.testing.assert_close(window_means(normalised, window_size, overlap), rows @ normalised @ cols.T / area)
    passing = torch.rand(3, rows.shape[0], cols.shape[0], generator=torch.Generator().manual_seed(1)) > 0.7
    expected = (rows.T @ passing.double() @ cols) > 0
    assert torch.equal(collate(passing, height, width, window_size, overlap), expected)
