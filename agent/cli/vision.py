"""``dairy-edge vision eartag IMAGE...``: read ear-tag numbers in image files.

The same reader as the live pipeline (``EartagReader``), so what this prints
is what the agent would read. One JSON line per image:

    {"image": "PATH", "tags": [{"number": "2386", "confidence": 0.97, "box": [x, y, w, h]}]}

or ``{"image": "PATH", "error": "..."}`` for a file that cannot be read as an
image; the others are still processed and the exit status is then 1.

``agent.cli.main`` calls ``add_vision_parser(subparsers)``; each leaf sets
``func`` (``run_vision``), which returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.config.model import EartagConfig, ModelsConfig
from agent.errors import ConfigError
from agent.vision.eartag.detect import DetParams
from agent.vision.eartag.frame import EartagReader, ReaderParams
from agent.vision.eartag.models import open_eartag_runners
from agent.vision.eartag.register import HerdRegister

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 12 MP phone photo fits; a header claiming more is refused
MAX_SIDE = 16_384


class ImageRefused(ValueError):
    """The file is not an image this command reads; the message says why."""


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first SOFn marker, without decoding."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageRefused("corrupt JPEG: marker expected")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            if i + 9 > len(data):
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker == 0xDA:  # scan before any frame header
            break
        i += 2 + length
    raise ImageRefused("truncated or corrupt JPEG: no frame header")


def _jpeg_scan_start(data: bytes) -> int:
    """Offset of the main image's first scan (SOS), walking the top-level markers
    so an EXIF thumbnail's own markers are skipped; 0 when not found."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker == 0xDA:
            return i
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
    return 0


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from the header only, so a file claiming
    50,000 x 50,000 pixels is refused before anything is allocated."""
    if len(data) == 0:
        raise ImageRefused("empty file (0 bytes)")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageRefused("truncated or corrupt PNG: no IHDR header")
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:3] == b"\xff\xd8\xff":
        w, h = _jpeg_size(data)
        return "jpeg", w, h
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return "bmp", abs(w), abs(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
        elif chunk == b"VP8 ":
            w, h = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
        elif chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        else:
            raise ImageRefused("corrupt WebP header")
        return "webp", w, h
    raise ImageRefused("not an image this command reads (JPEG, PNG, BMP or WebP)")


def load_image(path: Path) -> np.ndarray:
    """A BGR image, or ``ImageRefused`` saying what is wrong with the file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageRefused(f"file is {size} bytes, more than {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as err:
        raise ImageRefused(f"cannot read the file: {err.strerror or err}") from err
    kind, w, h = image_size(data)
    if w <= 0 or h <= 0:
        raise ImageRefused(f"{kind} header gives an empty size {w} x {h}")
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        raise ImageRefused(f"{kind} header claims {w} x {h} pixels, more than this command "
                           f"reads ({MAX_PIXELS:,} pixels, {MAX_SIDE} per side); "
                           "scale the image down first")
    if kind == "jpeg" and data.find(b"\xff\xd9", _jpeg_scan_start(data)) < 0:
        # libjpeg fills a cut-off file with grey and calls it a warning: refuse it here.
        # (In the scan 0xFF is always stuffed, so FFD9 there can only be the end;
        # bytes some phones append after it do not matter.)
        raise ImageRefused("truncated JPEG: no end-of-image marker; copy the file again")
    if kind == "png" and b"IEND" not in data[-64:]:
        raise ImageRefused("truncated PNG: no IEND chunk; copy the file again")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # OpenCV turns a photo upright by its EXIF orientation: width and height may swap.
    if image is None or sorted(image.shape[:2]) != sorted((h, w)):
        raise ImageRefused(f"corrupt {kind}: OpenCV could not decode it")
    return image


def _regex(text: str) -> str:
    """argparse type: a regular expression that compiles (else a usage error)."""
    import re

    try:
        re.compile(text)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"not a regular expression: {err}") from err
    return text


def _tag_json(reading: Any, register: HerdRegister | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": reading.number,
        "confidence": round(float(reading.confidence), 4),
        "box": [int(v) for v in reading.box],
    }
    if register is not None:
        animal = register.by_tag(reading.number)
        out["animal_id"] = animal.animal_id if animal else None
        out["in_register"] = animal is not None
    return out


def run_vision(args: argparse.Namespace) -> int:
    """Read every image; one JSON line each on stdout. 0 when all were read, 1
    when any image failed, 2 when the models or the register cannot be used."""
    eartag = EartagConfig()
    try:
        models = ModelsConfig(dir=args.models_dir or ModelsConfig().dir, threads=args.threads)
        det, rec = open_eartag_runners(models.dir, models.threads)
        register = HerdRegister.load(args.herd) if args.herd else None
    except (ConfigError, ValueError) as err:
        print(f"dairy-edge vision eartag: {err}", file=sys.stderr)
        return 2
    min_conf = eartag.min_confidence if args.min_confidence is None else args.min_confidence
    params = ReaderParams(min_confidence=min_conf,
                          det=DetParams(max_side=args.det_max_side),
                          refine_text_px=args.refine_text_px)
    reader = EartagReader(det, rec, args.tag_pattern or eartag.tag_pattern, params)
    failed = False
    for name in args.images:
        line: dict[str, Any] = {"image": str(name)}
        try:
            image = load_image(Path(name))
        except ImageRefused as err:
            line["error"] = str(err)
            failed = True
        else:
            readings = [r for r in reader.read(image) if r.number is not None]
            line["tags"] = [_tag_json(r, register) for r in readings]
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


_HELP = """\
Read the printed management number of every ear tag in each image, with the
models and code of the live pipeline. Images may be whole barn frames with
several cows, or crops around one tag. One JSON line per image:

  {"image": "PATH", "tags": [{"number": "2386", "confidence": 0.97, "box": [x, y, w, h]}]}

box is in pixels of the original image; tags is empty when nothing could be
read with confidence (a wrong number is worse than none). A file that is not
an image, is cut off, or claims more than 40 megapixels gets
{"image": "PATH", "error": "..."} and the exit status is 1.

Example:
  dairy-edge vision eartag frame.jpg crops/*.png --herd herd.csv
"""


_MILK_HELP = """\
Classify the milk in a sample cup or sight glass in each image, with the model
and code of the live pipeline: white balance from the reference card in view
(see docs/milk.md), then normal, blood, colostrum, watery or clots. One JSON
line per image:

  {"image": "PATH", "class": "normal", "confidence": 0.93, "scores": {...}}

With --details the line also has "details" (white-balance gains, whether the
card was found, where the milk was found). No card in view: the class is still
given, but the confidence is at most 0.5. No milk found: "class" is null and
"error" says why. A file that is not an image gets {"image": "PATH", "error":
"..."}. The exit status is 1 when any image failed or had no milk, else 0.

Example:
  dairy-edge vision milk cup-LF.jpg samples/*.png
"""


def run_milk(args: argparse.Namespace) -> int:
    """``vision milk``: one JSON line per image; 0 all classified, 1 any failed,
    2 when the model cannot be used."""
    from agent.vision.milk import MilkClassifier, open_milk_runner

    try:
        models = ModelsConfig(dir=args.models_dir or ModelsConfig().dir, threads=args.threads)
        runner = open_milk_runner(models.dir, models.threads)
    except (ConfigError, ValueError) as err:
        print(f"dairy-edge vision milk: {err}", file=sys.stderr)
        return 2
    classifier = MilkClassifier(lambda: runner)
    failed = False
    for name in args.images:
        line: dict[str, Any] = {"image": str(name)}
        try:
            result = classifier.check(load_image(Path(name)))
        except (ImageRefused, ValueError) as err:
            line["error"] = str(err)
            failed = True
        else:
            line.update({"class": result.result, "confidence": result.confidence,
                         "scores": result.scores})
            if result.result is None:
                line["error"] = result.details.get("error", "no milk found")
                failed = True
            if args.details:
                line["details"] = result.details
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def add_vision_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``vision`` (with ``eartag`` and ``milk``) to a top-level argparse subparsers
    object."""
    vision = subparsers.add_parser("vision", help="run the vision models on image files",
                                   description="Run the vision models on image files.")
    sub = vision.add_subparsers(dest="vision_command", metavar="ACTION", required=True)
    eartag = sub.add_parser("eartag", help="read ear-tag numbers in images",
                            description=_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    eartag.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, BMP or WebP files")
    eartag.add_argument("--herd", type=Path, metavar="FILE",
                        help="herd register CSV (animal id, tag number, EID): adds animal_id "
                        "and in_register to each tag")
    eartag.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="folder with manifest.json (default: the bundled models/)")
    eartag.add_argument("--threads", type=int, default=1, metavar="N",
                        help="threads per model (default 1, like the gateway)")
    eartag.add_argument("--min-confidence", type=float, default=None, metavar="X",
                        help="report a number only at or above this confidence (0-1; default "
                        "the config's vision.eartag.min_confidence, 0.9)")
    eartag.add_argument("--tag-pattern", default=None, metavar="REGEX", type=_regex,
                        help=r"the farm's tag format (default ^[0-9]{1,6}$)")
    eartag.add_argument("--det-max-side", type=int, default=DetParams().max_side, metavar="PX",
                        help="longest side the text detector sees (default %(default)s, as the "
                        "live agent; 1280 finds more small tags at about twice the cost)")
    eartag.add_argument("--refine-text-px", type=float, default=ReaderParams().refine_text_px,
                        metavar="PX", help="two stages: the detector sees the frame at "
                        "--det-max-side only to find text, then full-resolution windows scaled "
                        "so text is PX tall (default 0: one stage, as the live agent)")
    eartag.set_defaults(func=run_vision)
    from agent.cli.bcs import add_bcs_parser  # here: agent.cli.bcs imports this module

    add_bcs_parser(sub)
    milk = sub.add_parser("milk", help="classify milk colour and consistency in images",
                          description=_MILK_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    milk.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, BMP or WebP files")
    milk.add_argument("--models-dir", type=Path, metavar="DIR",
                      help="folder with manifest.json (default: the bundled models/)")
    milk.add_argument("--threads", type=int, default=1, metavar="N",
                      help="threads for the model (default 1, like the gateway)")
    milk.add_argument("--details", action="store_true",
                      help="add the white balance and where the milk was found to each line")
    milk.set_defaults(func=run_milk)
    return vision


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m agent.cli.vision eartag IMAGE...``."""
    parser = argparse.ArgumentParser(prog="dairy-edge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_vision_parser(sub)
    args = parser.parse_args(["vision", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
