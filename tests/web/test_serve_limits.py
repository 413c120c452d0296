"""limits.py: the frame header read before a browser's JPEG is decoded."""

import numpy as np
import pytest

from web import limits


def test_jpeg_size_reads_the_frame_header():
    """The frame header is found past other segments; a PNG or a truncated file is refused."""
    cv2 = pytest.importorskip("cv2")
    image = np.zeros((48, 64, 3), np.uint8)
    assert limits.jpeg_size(cv2.imencode(".jpg", image)[1].tobytes()) == (64, 48)
    with pytest.raises(limits.ServeError):
        limits.jpeg_size(cv2.imencode(".png", image)[1].tobytes())
    with pytest.raises(limits.ServeError):
        limits.jpeg_size(b"\xff\xd8\xff\xe0\x00\x10JFIF")
