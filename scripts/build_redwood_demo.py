"""Build the bundled demo corpus `src/vanishing_depth/data/redwood_demo/` from the Redwood living-room frames.

Source: /work/shared/data/open3d_redwood_livingroom1 (Augmented ICL-NUIM, CC BY 3.0; see SOURCES.md there):
26 RGB frames ``color/*.jpg`` with clean 16-bit millimetre depth ``depth_clean/*.png``. The corpus keeps the original
JPEG and PNG bytes (no re-encoding) and uses a fixed split: the first 22 frames in sorted order are ``train``, the
last 4 (00180, 00190, 00200, 00210) are ``test``. Rerunning replaces the parquet files and ATTRIBUTION.md.

Usage: python scripts/build_redwood_demo.py [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from vanishing_depth.data import build_corpus_from_folder, save_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path("/work/shared/data/open3d_redwood_livingroom1")
DEFAULT_OUT = REPO_ROOT / "src" / "vanishing_depth" / "data" / "redwood_demo"
SOURCE_NAME = "redwood_livingroom1"
INTRINSICS = (525.0, 525.0, 319.5, 239.5)  # PrimeSense default, as used by ICL-NUIM / Redwood
NUM_TRAIN = 22
EXPECTED_FRAMES = 26

ATTRIBUTION = """# Attribution: Redwood living-room demo corpus

The 26 RGB-D frames in `data/` (parquet, corpus schema of `vanishing_depth.data.schema`) are the
"Redwood living room 1" frames of the **Augmented ICL-NUIM** dataset, stored byte-for-byte as committed in the
Open3D repository's test data. They are synthetic (rendered): `image` is the RGB frame (640x480 JPEG), `depth` the
noise-free depth (16-bit PNG in millimetres, `depth_scale` 0.001). Camera intrinsics: fx = fy = 525,
cx = 319.5, cy = 239.5 (pixels).

- Augmented ICL-NUIM: S. Choi, Q.-Y. Zhou and V. Koltun, "Robust Reconstruction of Indoor Scenes", CVPR 2015.
- ICL-NUIM, on which it is based: A. Handa, T. Whelan, J. McDonald and A. J. Davison, "A Benchmark for RGB-D
  Visual Odometry, 3D Reconstruction and SLAM", ICRA 2014.
- Licence: ICL-NUIM is released under the Creative Commons Attribution 3.0 licence (CC BY 3.0,
  https://creativecommons.org/licenses/by/3.0/). The frames are redistributed here unchanged under that licence,
  with this attribution.
- Files taken from the Open3D repository (isl-org/Open3D, MIT-licensed code; the frames keep the dataset's terms):
  `examples/test_data/RGBD/color/00000-00004.jpg` at commit ed30e3b6, and
  `examples/test_data/reconstruction_system/livingroom1_clean_micro/{image,depth}/` at commit fbbe2e5f
  (RGB 00010-00210 and all clean depth maps).

The licence terms above were noted from memory of the dataset web pages and not re-checked; check them before any
redistribution beyond this repository.

Split (fixed): `train` = the first 22 frames in sorted order (00000-00004, 00010-00170), `test` = the last 4
(00180, 00190, 00200, 00210). Built by `scripts/build_redwood_demo.py`.
"""


def build(source: Path, out: Path) -> dict[str, Path]:
    rgb_dir, depth_dir = source / "color", source / "depth_clean"
    with tempfile.TemporaryDirectory() as cache_dir:  # no stale Arrow cache in the user's datasets cache
        corpus = build_corpus_from_folder(
            rgb_dir, depth_dir, "mm", SOURCE_NAME, intrinsics=INTRINSICS, match="stem", cache_dir=cache_dir
        )
        if len(corpus) != EXPECTED_FRAMES:
            raise ValueError(f"expected {EXPECTED_FRAMES} frames in {source}, found {len(corpus)}.")
        frame_ids = corpus["frame_id"]
        if frame_ids != sorted(frame_ids):
            raise ValueError(f"frames are not in sorted order: {frame_ids}")
        written = save_corpus(
            corpus,
            out,
            splits={"train": range(NUM_TRAIN), "test": range(NUM_TRAIN, EXPECTED_FRAMES)},
            overwrite=True,
        )
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the open3d_redwood_livingroom1 folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (replaced parquet files)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    written = build(args.source, args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    for split, path in written.items():
        print(f"{split}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"total size of {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
