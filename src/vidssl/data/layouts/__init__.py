"""Dataset layout readers: ``root -> (records, class_names, missing)``, one module per layout.

Layouts read (``format=`` of :func:`vidssl.data.index.build_manifest`):

* ``folder``: ``ROOT/SPLIT/CLASS/*.mp4`` (SPLIT e.g. train/val/test), or ``ROOT/CLASS/*.mp4``
  (no split).
* ``csv``: ``ROOT/{train,val,test}.csv`` with lines ``path label`` (PySlowFast / FGKVMemPred
  lists; space, tab or comma separated; paths relative to ROOT; absolute or ``../`` paths outside ROOT
  only with ``--allow-outside-root``).
* ``ucf101``: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` (N = 1..3), in ROOT or
  one folder below (e.g. ``ucfTrainTestlist/``); videos under ROOT (or ``ROOT/UCF-101``).
* ``hmdb51``: ``<class>_test_splitN.txt`` (lines ``video 1|2|0``: 1 = train, 2 = test,
  0 = unused), in ROOT or one folder below; videos in ``<class>/`` folders.
* ``movienet``: MovieNet-SSeg (``anno/anno.*.ndjson`` + frame tables + keyframes; :mod:`.movienet`), read
  from the movies under ``videos/``; ``movienet_keyframes``: the same tree read from its keyframes (one
  folder per movie, each read as one video of keyframes; picked by auto-detection when there are no movies).
* ``kinetics``: CSVs with header ``label,youtube_id,time_start,time_end,split``; a video is
  ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ROOT (split/class folders or flat).
* ``images``: still images, ``ROOT/SPLIT/CLASS/*.JPEG`` (ImageNet, torchvision ``ImageFolder``),
  ``ROOT/CLASS/*.jpg``, or flat folders of unlabelled images (:mod:`.images`). Its records are one-frame
  videos (``Manifest.stills``), e.g. BEVT's image stream.

A reader takes the resolved dataset root (a :class:`~pathlib.Path`) and returns the
:class:`~vidssl.data.index.VideoRecord` list, the class names (index = label) and the listed
paths missing on disk. Mistakes the user can fix raise :class:`~vidssl.errors.DataError`
with a one-line message. :func:`detect_format` picks the layout of a root.

The readers import the record model from :mod:`vidssl.data.index`; ``index`` imports this
package only when it is used (``build_manifest`` and the ``detect_format``/``READERS``
re-exports), so either can be imported first.
"""

from __future__ import annotations

import os

from vidssl.data.index import SPLIT_NAMES, _check_root
from vidssl.data.layouts.common import _find, _is_video
from vidssl.data.layouts.csv_lists import read_csv_lists
from vidssl.data.layouts.folder import read_folder
from vidssl.data.layouts.hmdb51 import _HMDB_RE, read_hmdb51
from vidssl.data.layouts.images import read_images, sniff_media
from vidssl.data.layouts.kinetics import KINETICS_COLUMNS, _kinetics_csvs, read_kinetics
from vidssl.data.layouts.movienet import (
    has_movie_files,
    is_movienet,
    read_movienet_keyframes_layout,
    read_movienet_layout,
)
from vidssl.data.layouts.ucf101 import read_ucf101
from vidssl.errors import DataError

__all__ = [
    "LAYOUTS",
    "detect_format",
    "read_folder",
    "read_csv_lists",
    "read_ucf101",
    "read_hmdb51",
    "read_kinetics",
    "read_images",
    "KINETICS_COLUMNS",
]

# Plain dict of readers: format name -> reader(root) -> (records, class names, missing).
LAYOUTS = {
    "folder": read_folder,
    "csv": read_csv_lists,
    "ucf101": read_ucf101,
    "hmdb51": read_hmdb51,
    "kinetics": read_kinetics,
    "movienet": read_movienet_layout,
    "movienet_keyframes": read_movienet_keyframes_layout,
    "images": read_images,
}


def detect_format(root: str | os.PathLike) -> str:
    """The layout of ROOT: movienet > ucf101 > hmdb51 > kinetics > csv > images / folder (first that matches).

    Class folders (or a flat folder) of still images are ``images``, of videos ``folder``; a tree whose
    first folders hold both is a :class:`DataError` (``read_images`` then refuses any video it meets)."""
    root = _check_root(root)
    if is_movienet(root):  # anno/anno.*.ndjson (MovieNet-SSeg, BaSSL): its movies, or its keyframes as released
        return "movienet" if has_movie_files(root) else "movienet_keyframes"
    if _find(root, "classInd.txt"):
        return "ucf101"
    if any(_HMDB_RE.match(p.name) for p in _find(root, "*_test_split*.txt")):
        return "hmdb51"
    if _kinetics_csvs(root):
        return "kinetics"
    if any(p.stem.lower() in SPLIT_NAMES for p in root.glob("*.csv")):
        return "csv"
    media = sniff_media(root)
    if media == {"image", "video"}:
        raise DataError(f"{root} holds both videos and images; pass format=folder to read only its videos, or keep "
                        "the images in a root of their own (format=images)")
    if media == {"image"}:
        return "images"
    if any(d.is_dir() and not d.name.startswith(".") for d in root.iterdir()):
        return "folder"
    if any(_is_video(p) for p in root.iterdir()):
        raise DataError(f"{root} holds videos but no class folders or split files; put each class in its own folder "
                        "(ROOT/CLASS/*.mp4) or add split lists")
    raise DataError(f"{root} is empty or has no recognisable dataset layout; expected class folders, "
                    "UCF101/HMDB51 split files, a Kinetics CSV or train.csv/val.csv lists")
