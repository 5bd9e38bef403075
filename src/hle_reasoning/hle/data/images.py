"""The one place an HLE image is opened: decoded from its data URI, bounded in pixels.

Validation, training, local answering (and anything else that needs the pixels) open images
through :func:`open_image` / :func:`check_image`. An image larger than ``max_image_pixels``
(``conf/base/parameters.yml``; 50 M by default, several times the largest real HLE figure) is
refused by name, never resized: a 20,000 x 20,000 PNG of a few hundred KB (a "decompression
bomb") would otherwise take gigabytes to decode, and cannot be the question's real figure.
Pillow's own bomb check (``DecompressionBombError``, and its warning, raised as an error here)
is caught too, so no Pillow error type reaches the caller: each is an :class:`ImageProblem`.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import struct
import warnings

from PIL import Image

# The default of the ``max_image_pixels`` parameter; the environment variable carries a run's
# value to the worker processes it starts.
DEFAULT_MAX_PIXELS = 50_000_000
ENV_VAR = "HLE_MAX_IMAGE_PIXELS"
PARAMETER = "max_image_pixels"


class ImageProblem(ValueError):
    """An image that cannot be used: not a data URI, not decodable, or too large."""


def max_pixels() -> int:
    """The run's pixel limit (:func:`set_max_pixels`, else the default)."""
    try:
        return int(os.environ.get(ENV_VAR, DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """Set the run's limit (the ``max_image_pixels`` parameter), for this process and the worker
    processes it starts."""
    if limit is None:
        os.environ.pop(ENV_VAR, None)
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"{PARAMETER} must be a positive integer (got {limit!r})")
    os.environ[ENV_VAR] = str(limit)


def decode_image(data_uri: str) -> bytes:
    """Bytes of an HLE image given as ``data:image/<fmt>;base64,<payload>``."""
    if not isinstance(data_uri, str):
        raise ImageProblem(f"expected a data URI string, got {type(data_uri).__name__}")
    header, sep, payload = data_uri.partition(",")
    if not sep or not header.startswith("data:image/") or ";base64" not in header:
        raise ImageProblem("expected a data URI 'data:image/<format>;base64,<payload>'")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageProblem(f"base64 payload does not decode ({exc})") from exc


def _opened(data: bytes, limit: int) -> Image.Image:
    """The image, opened lazily (header only) and checked against ``limit`` pixels."""
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if width * height > limit:
        img.close()
        raise ImageProblem(
            f"{width} x {height} = {width * height:,} pixels, more than "
            f"{PARAMETER} = {limit:,} (conf/base/parameters.yml): not a plausible figure "
            "(a decompression bomb?); replace the image at the source, or raise "
            f"{PARAMETER} if it is real"
        )
    return img


def _guarded(action, data_uri: str, limit: int | None):
    limit = max_pixels() if limit is None else limit
    data = decode_image(data_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _opened(data, limit) as img:
                return action(img)
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(
            f"more pixels than {PARAMETER} = {limit:,} allows (Pillow: {exc}): not a plausible "
            f"figure (a decompression bomb?); replace the image at the source, or raise "
            f"{PARAMETER} if it is real"
        ) from None
    except (  # Pillow: OSError/ValueError on damaged data, SyntaxError on corrupt PNGs, ...
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        struct.error,
        MemoryError,
    ) as exc:
        raise ImageProblem(f"not a decodable image ({type(exc).__name__}: {exc})") from None


def check_image(data_uri: str, limit: int | None = None) -> tuple[int, int]:
    """The size of the image in ``data_uri`` after decoding it whole, or :class:`ImageProblem`."""

    def decode(img: Image.Image) -> tuple[int, int]:
        img.load()
        return img.size

    return _guarded(decode, data_uri, limit)


def open_image(data_uri: str, limit: int | None = None) -> Image.Image:
    """The decoded RGB image in ``data_uri``, or :class:`ImageProblem` (never resized)."""
    return _guarded(lambda img: img.convert("RGB"), data_uri, limit)
