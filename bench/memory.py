"""Peak memory of checking uploaded photos: today's `images.check_upload` against the old decode path.

Each case runs in a fresh child process (`python -m bench.memory CASE PATH UPLOADS PATH_KIND`), so one
case's memory cannot hide another's: the child warms up (Django, Pillow's plugins, one small photo
through the same path), resets its peak RSS to the current RSS (`/proc/self/clear_refs`), starts
UPLOADS threads at once, each checking the same photo, and reports its peak RSS (`VmHWM`) above that
idle point. The baseline is the decode path before issue 7 (full decode of every photo, EXIF
transpose on a copy, no byte budget, no semaphore), copied below and measured in the same run.

Targets (docs/operations.md#photo-memory): a 24-megapixel JPEG raises a web process's peak RSS by
under 300 MB; ten concurrent worst-case uploads stay under 1 GB in all.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1024 * 1024
# Concurrent uploads of the two big PNGs: 10 (the target's figure); BENCH_QUICK=1 runs 4 (~1 min, not 3).
UPLOADS = int(os.environ.get("BENCH_UPLOADS", "4" if os.environ.get("BENCH_QUICK") else "10"))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Make VmHWM the current RSS (Linux ≥ 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


def old_check_upload(data: bytes) -> tuple[int, int]:
    """The decode path before issue 7 (staging/images.py at e197d9f), for the baseline: decode every
    photo in full, then `exif_transpose` (a second full copy) and re-encode when EXIF rotates it."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    fmt = image.format
    image.load()
    if image.getexif().get(0x0112, 1) not in (None, 1):
        upright = ImageOps.exif_transpose(image)
        buffer = io.BytesIO()
        if fmt == "JPEG":
            upright.convert("RGB").save(buffer, "JPEG", quality=95)
        else:
            upright.save(buffer, fmt)
        image = upright
    return image.size


def new_check_upload(data: bytes) -> tuple[int, int]:
    from staging import images

    checked = images.check_upload(io.BytesIO(data))
    return checked.width, checked.height


def _child(path: str, uploads: int, kind: str) -> None:
    """Runs in the child process: warm up, reset the peak, check `uploads` copies at once, report."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagingsite.settings")
    django.setup()
    from staging.errors import ImageRejected
    from tests.fixtures.photos import image_bytes

    check = new_check_upload if kind == "new" else old_check_upload
    data = Path(path).read_bytes()
    for fmt in ("JPEG", "PNG", "WEBP"):  # load the plugins and code paths before the idle point
        check(image_bytes(fmt, (64, 48)))
    outcomes: list[str] = []
    barrier = threading.Barrier(uploads)

    def one() -> None:
        barrier.wait()
        try:
            width, height = check(data)
            outcomes.append(f"accepted {width}x{height}")
        except ImageRejected as exc:
            outcomes.append("refused: " + str(exc).split(" (", 1)[0])

    threads = [threading.Thread(target=one) for _ in range(uploads)]
    reset = _reset_peak()
    idle_kb = _status_kb("VmRSS") if reset else _status_kb("VmHWM")
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    print(json.dumps({"idle_kb": idle_kb, "peak_kb": peak_kb, "wall": wall, "outcomes": sorted(set(outcomes))}))


def _measure(path: Path, uploads: int, kind: str) -> dict[str, object]:
    env = {**os.environ, "LOG_LEVEL": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(path), str(uploads), kind],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({kind}, {path.name}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _photos(workdir: Path) -> list[tuple[str, Path, int]]:
    """(label, file, concurrent uploads) of each case."""
    from PIL import Image

    from tests.fixtures.photos import exif_with_orientation, png_bytes

    rotated = exif_with_orientation(6)
    noise = Image.effect_noise((6000, 4000), 40).convert("RGB")  # a photo's entropy, not a flat colour
    cases: list[tuple[str, bytes, int]] = []
    for label, exif in (("24 MP JPEG 6000x4000, EXIF-rotated", rotated), ("24 MP JPEG 6000x4000, upright", b"")):
        buffer = io.BytesIO()
        noise.save(buffer, "JPEG", quality=85, exif=exif)
        cases.append((label, buffer.getvalue(), 1))
    del noise
    monster = png_bytes(6300, 6300, bit_depth=16, color_type=6, exif=rotated, level=9)
    cases.append((f"issue 7's PNG: 6300x6300 16-bit RGBA, rotated ({len(monster) // 1024} KB)", monster, UPLOADS))
    biggest = png_bytes(6300, 6300, bit_depth=8, color_type=6, exif=rotated, level=9)
    cases.append(("largest accepted: 6300x6300 8-bit RGBA PNG, rotated", biggest, UPLOADS))
    found = []
    for index, (label, data, uploads) in enumerate(cases):
        path = workdir / f"case-{index}.img"
        path.write_bytes(data)
        found.append((label, path, uploads))
    return found


def run() -> None:
    from django.conf import settings

    workdir = Path(tempfile.mkdtemp(prefix="staging-bench-memory-"))
    print(
        "memory: peak RSS above idle of one process checking uploads at once "
        f"({settings.STAGING_MAX_CONCURRENT_DECODES} decode slots, decode budget "
        f"{settings.STAGING_MAX_DECODE_BYTES // MB} MB)"
    )
    print(
        f"  {'case':58} {'uploads':>7} {'old MB':>7} {'new MB':>7} {'new peak':>8} {'old s':>6} {'new s':>6}"
        "  new outcome"
    )
    for label, path, uploads in _photos(workdir):
        old = _measure(path, uploads, "old")
        new = _measure(path, uploads, "new")
        old_mb = (int(old["peak_kb"]) - int(old["idle_kb"])) / 1024
        new_mb = (int(new["peak_kb"]) - int(new["idle_kb"])) / 1024
        outcome = "; ".join(new["outcomes"])  # type: ignore[arg-type]
        new_peak = int(new["peak_kb"]) / 1024
        print(
            f"  {label:58} {uploads:>7} {old_mb:>7.0f} {new_mb:>7.0f} {new_peak:>8.0f} {old['wall']:>6.1f} "
            f"{new['wall']:>6.1f}  {outcome[:70]}"
        )
    print("  old/new MB: peak RSS above idle; new peak: the whole process (idle Django included), MB")
    print("  targets: a 24 MP JPEG raises the peak by < 300 MB; ten worst-case uploads < 1024 MB in all")


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), sys.argv[3])
