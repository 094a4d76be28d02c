"""Sources read exactly the rows asked for, from .npy, .npz (stored and compressed) and images."""

from __future__ import annotations

import io
import pickle
import resource
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.contract import InputContract
from service.scoring.errors import ScoringInputError
from service.scoring.sources import open_source

CONTRACT = InputContract(input_name="input", instance_shape=(8, 8, 1), data_format="channels_last")


@pytest.mark.parametrize("bounds", [(0, 5), (5, 37), (36, 37), (0, 37), (10, 10)])
def test_read_npy_rows_matches_array_slices(tmp_path: Path, rng: np.random.Generator,
                                            bounds: tuple[int, int]) -> None:
    x = rng.normal(size=(37, 8, 8, 1))
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy", CONTRACT)
    assert source.shape == x.shape and source.dtype == np.float64
    np.testing.assert_array_equal(source.read(*bounds), x[slice(*bounds)])


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_read_npz_member_matches_array_for_stored_and_compressed(
        tmp_path: Path, rng: np.random.Generator, save: object) -> None:
    x = rng.random((29, 8, 8, 1), dtype=np.float32)
    save(tmp_path / "x.npz", labels=np.arange(29), images=x)  # type: ignore[operator]
    source = open_source(tmp_path / "x.npz", CONTRACT, key="images")
    np.testing.assert_array_equal(source.read(0, 10), x[:10])
    np.testing.assert_array_equal(source.read(10, 29), x[10:])
    np.testing.assert_array_equal(source.read(3, 4), x[3:4])  # backwards: the stream restarts


def test_open_npz_without_key_raises_when_it_holds_several_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.ones((2, 8, 8, 1)), y=np.arange(2))
    with pytest.raises(ScoringInputError, match=r"holds 2 arrays \['x', 'y'\]; expected --key"):
        open_source(tmp_path / "x.npz", CONTRACT)


def test_open_npz_with_unknown_key_raises_listing_the_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.ones((2, 8, 8, 1)))
    with pytest.raises(ScoringInputError, match=r"--key: expected one of the arrays .* \['x'\], "
                                                r"received 'images'"):
        open_source(tmp_path / "x.npz", CONTRACT, key="images")


def test_open_source_raises_for_missing_path_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ScoringInputError, match="does not exist"):
        open_source(tmp_path / "absent.npy", CONTRACT)
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ScoringInputError, match="expected a .npy file, a .npz file or a folder"):
        open_source(tmp_path / "x.csv", CONTRACT)


def test_open_npy_raises_for_fortran_order_and_garbage(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 8, 8, 1))))
    with pytest.raises(ScoringInputError, match="Fortran-order"):
        open_source(tmp_path / "f.npy", CONTRACT)
    (tmp_path / "g.npy").write_bytes(b"not an array")
    with pytest.raises(ScoringInputError, match="header numpy cannot read"):
        open_source(tmp_path / "g.npy", CONTRACT)


def test_open_truncated_npy_raises_before_reading(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 8, 8, 1), dtype=np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-100])
    with pytest.raises(ScoringInputError, match="the 2,560 data bytes .* 2,460 bytes after the header"):
        open_source(tmp_path / "x.npy", CONTRACT)


def test_read_npy_truncated_after_opening_raises(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 8, 8, 1), dtype=np.float32))
    source = open_source(tmp_path / "x.npy", CONTRACT)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-100])
    np.testing.assert_array_equal(source.read(0, 5), np.ones((5, 8, 8, 1)))
    with pytest.raises(ScoringInputError, match="truncated"):
        source.read(5, 10)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_open_header_claiming_terabytes_in_a_small_file_raises_without_allocating(tmp_path: Path,
                                                                                  suffix: str) -> None:
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8, 8, 1)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    body = buffer.getvalue() + b"\x00" * 1024
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        path.write_bytes(body)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", body)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ScoringInputError, match=r"to hold the 256,000,000,000,000 data bytes"):
        open_source(path, CONTRACT)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100_000  # KiB: < 100 MB


def test_open_npy_of_python_objects_raises(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ScoringInputError, match="pickled data"):
        open_source(tmp_path / "x.npy", CONTRACT)


def test_open_image_folder_raises_when_it_has_no_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ScoringInputError, match="expected a folder with PNG or JPEG images"):
        open_source(tmp_path, CONTRACT)


def test_read_image_folder_scales_pixels_in_file_name_order(tmp_path: Path,
                                                            rng: np.random.Generator) -> None:
    pixels = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    for name, image in zip(["b.png", "c.PNG", "a.png"], pixels, strict=True):
        Image.fromarray(image, mode="L").save(tmp_path / name)
    source = open_source(tmp_path, CONTRACT)
    assert source.row_names == ("a.png", "b.png", "c.PNG")
    expected = pixels[[2, 0, 1]].astype(np.float32)[..., None] / np.float32(255)
    np.testing.assert_array_equal(source.read(0, 3), expected)


def test_read_image_folder_converts_rgb_to_gray_and_resizes(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "big.png")
    row = open_source(tmp_path, CONTRACT).read(0, 1)[0, ..., 0]
    # ITU-R 601 luma, then the mean of each 2x2 block; Pillow rounds both steps to 8 bits
    # (fixed-point luma), so allow 1.5 grey levels
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    expected = luma.reshape(8, 2, 8, 2).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(row, expected, atol=1.5 / 255)


def test_read_image_folder_lays_out_channels_first_and_applies_pixel_scale(
        tmp_path: Path, rng: np.random.Generator) -> None:
    contract = InputContract(input_name="input", instance_shape=(3, 4, 5), data_format="channels_first",
                             metadata={"lc2d.pixel_scale": "0.5"})
    rgb = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "x.png")
    row = open_source(tmp_path, contract).read(0, 1)[0]
    np.testing.assert_array_equal(row, rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(0.5))


def test_read_image_folder_decodes_jpeg_close_to_its_source(tmp_path: Path) -> None:
    flat = np.full((8, 8), 200, dtype=np.uint8)
    Image.fromarray(flat, mode="L").save(tmp_path / "x.jpg", quality=95)
    row = open_source(tmp_path, CONTRACT).read(0, 1)[0, ..., 0]
    np.testing.assert_allclose(row, 200 / 255, atol=2 / 255)


def test_read_image_folder_raises_naming_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    source = open_source(tmp_path, CONTRACT)
    with pytest.raises(ScoringInputError, match="broken.png.*Pillow cannot read"):
        source.read(0, 1)


def test_open_image_folder_raises_for_a_model_with_two_channels(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "x.png")
    contract = InputContract(input_name="input", instance_shape=(8, 8, 2))
    with pytest.raises(ScoringInputError, match="1, 3 or 4 channels"):
        open_source(tmp_path, contract)


@pytest.mark.parametrize("kind", ["npy", "npz-stored", "npz-compressed", "images"])
def test_every_source_pickles_closes_and_reads_again(tmp_path: Path, rng: np.random.Generator,
                                                     kind: str) -> None:
    pixels = rng.integers(0, 256, size=(6, 8, 8), dtype=np.uint8)
    x = pixels.astype(np.float32)[..., None] / np.float32(255)
    if kind == "images":
        for i, image in enumerate(pixels):
            Image.fromarray(image, mode="L").save(tmp_path / f"{i}.png")
        path = tmp_path
    elif kind == "npy":
        np.save(path := tmp_path / "x.npy", x)
    else:
        save = np.savez if kind == "npz-stored" else np.savez_compressed
        save(path := tmp_path / "x.npz", x=x)
    source = open_source(path, CONTRACT)
    np.testing.assert_array_equal(source.read(1, 3), x[1:3])  # opens its files
    copy = pickle.loads(pickle.dumps(source))  # what a Ray read task does
    np.testing.assert_array_equal(copy.read(2, 6), x[2:6])
    source.close()
    np.testing.assert_array_equal(source.read(0, 6), x)  # reopens after close
    source.close()
    copy.close()
