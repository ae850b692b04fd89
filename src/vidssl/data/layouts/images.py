"""``images`` layout: still images in class folders, the ImageNet / torchvision ``ImageFolder`` tree.

::

    ROOT/SPLIT/CLASS/*.JPEG    SPLIT among train/val/test (and their aliases), e.g. ImageNet-1K
    ROOT/SPLIT/*.JPEG          a split of unlabelled images (ImageNet's official flat val/ and test/)
    ROOT/CLASS/*.jpg           no split
    ROOT/*.png                 unlabelled images, no split

Extensions: :data:`~vidssl.data.decoders.image.IMAGE_EXTENSIONS` (any case). Each image becomes a
:class:`~vidssl.data.index.VideoRecord` (a one-frame "video", :attr:`~vidssl.data.index.Manifest.stills`),
labelled by its class folder; images without a class folder get label -1. Class indices come from the
sorted class-folder names of ALL splits together, so train and val agree on every label.

Wrong trees fail here, before anything trains (one-line :class:`~vidssl.errors.DataError`s):

* no image anywhere (e.g. ROOT one level too high or too low);
* a class folder with no image (a half-copied dataset would otherwise shift nothing but silently lose a
  class; ImageFolder refuses it too);
* videos among the images (they belong to ``format=folder``; a still would otherwise be read as a
  video or a video dropped unnoticed);
* a folder holding both class folders and loose images (which of them would be unlabelled is a guess).

Files with other extensions and folders nested inside class folders are left out and counted in one
warning. Hidden names (``.DS_Store``, macOS ``._x.JPEG`` resource forks) are ignored. Listing uses
``os.scandir`` (no ``stat`` per file where the file system reports types), so ImageNet's 1.28 M
files are listed in seconds; corrupt images are found by probing (``build_manifest``) and decoding
(skipped and reported in training, like corrupt videos).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vidssl.data.decoders.image import IMAGE_EXTENSIONS
from vidssl.data.index import SPLIT_NAMES, VIDEO_EXTENSIONS, VideoRecord
from vidssl.data.layouts.common import _rel
from vidssl.errors import DataError

__all__ = ["read_images", "is_image_name", "sniff_media"]

log = logging.getLogger(__name__)


def is_image_name(name: str) -> bool:
    """Whether a file name is a (non-hidden) image by its extension."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _is_video_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


class _Listing:
    """One folder's visible entries: sub-folders, images, videos, other files (each sorted by name)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.dirs: list[Path] = []
        self.images: list[Path] = []
        self.videos: list[Path] = []
        self.other: list[Path] = []
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise DataError(f"cannot list {folder}: {exc.strerror or exc}; check its permissions") from None
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if _is_dir(entry):
                self.dirs.append(path)
            elif not _is_file(entry):
                continue
            elif is_image_name(entry.name):
                self.images.append(path)
            elif _is_video_name(entry.name):
                self.videos.append(path)
            else:
                self.other.append(path)


def _mixed(folder: Path, videos: list[Path], images: int) -> DataError:
    return DataError(f"{folder} mixes {len(videos)} video(s) (e.g. {videos[0].name}) with {images} image(s); "
                     "keep videos and images in separate dataset roots (videos: format=folder, images: format=images)")


def _read_container(folder: Path, split: str | None, items: list, empty: list[Path], ignored: list[Path]) -> None:
    """Images of one split folder (or of ROOT without splits): class folders, or loose images (unlabelled)."""
    top = _Listing(folder)
    if top.videos:
        raise _mixed(folder, top.videos, len(top.images)) if top.images else DataError(
            f"{folder} holds videos (e.g. {top.videos[0].name}), not images; read it with format=folder (or auto)")
    if top.dirs and top.images:
        raise DataError(f"{folder} holds both class folders ({top.dirs[0].name}, ...) and {len(top.images)} loose "
                        f"image(s) (e.g. {top.images[0].name}); move the loose images into class folders or out of it")
    for image in top.images:  # a flat folder: unlabelled images (e.g. ImageNet's official val/)
        items.append((image, None, split))
    if top.images:
        log.info("%s: %d images without a class folder; they are unlabelled (label -1)", folder, len(top.images))
    ignored.extend(top.other)
    for class_dir in top.dirs:
        listing = _Listing(class_dir)
        if listing.videos:
            raise _mixed(class_dir, listing.videos, len(listing.images)) if listing.images else DataError(
                f"{class_dir} holds videos (e.g. {listing.videos[0].name}), not images; read this dataset with "
                "format=folder (or auto)")
        if not listing.images:
            empty.append(class_dir)
            continue
        items.extend((image, class_dir.name, split) for image in listing.images)
        ignored.extend(listing.other + listing.dirs)


def read_images(root: Path):
    """``ROOT/SPLIT/CLASS/*.jpg`` (SPLIT among train/val/test...), ``ROOT/SPLIT/*.jpg``, ``ROOT/CLASS/*.jpg``
    or ``ROOT/*.jpg``: records (one per image), class names (index = label) and ``[]`` (nothing is listed
    that could be missing). See the module docstring for what is refused."""
    top = _Listing(root)
    split_dirs = [d for d in top.dirs if d.name.lower() in SPLIT_NAMES]
    items: list[tuple[Path, str | None, str | None]] = []
    empty: list[Path] = []
    ignored: list[Path] = []
    if split_dirs:
        others = [d.name for d in top.dirs if d not in split_dirs]
        if others:
            log.warning("%s: folders %s are not splits (%s) and are not read", root, ", ".join(others[:5]),
                        "/".join(sorted(set(SPLIT_NAMES.values()))))
        for split_dir in split_dirs:
            _read_container(split_dir, SPLIT_NAMES[split_dir.name.lower()], items, empty, ignored)
    else:
        _read_container(root, None, items, empty, ignored)
    if empty:
        nested = " (it holds sub-folders: is ROOT one level too high?)" if _Listing(empty[0]).dirs else ""
        raise DataError(f"{len(empty)} class folder(s) hold no images, e.g. {empty[0]}{nested}; fill them in or remove "
                        f"them (images end in {', '.join(IMAGE_EXTENSIONS)})")
    if not items:
        raise DataError(f"{root} has no images (looked for ROOT/SPLIT/CLASS/*.jpg, ROOT/CLASS/*.jpg and ROOT/*.jpg with "
                        f"extensions {', '.join(IMAGE_EXTENSIONS)}); point ROOT at the folder that holds the images")
    if ignored:
        log.warning("%d file(s) or folder(s) inside %s are not images and are left out (first: %s)", len(ignored), root,
                    _rel(ignored[0], root))
    classes = sorted({c for _, c, _ in items if c is not None})
    index = {c: i for i, c in enumerate(classes)}
    records = [VideoRecord(_rel(image, root), index[cls] if cls is not None else -1, cls or "",
                           {1: split} if split else {}) for image, cls, split in items]
    return records, classes, []


def sniff_media(root: Path, folders: int = 8) -> set[str]:
    """What a folder tree holds, from a cheap look: ``{"image"}``, ``{"video"}``, both, or empty.

    Looks at ROOT's own files, then at the first files of up to ``folders`` sub-folders (split folders
    are looked into one level further, where the class folders are), for :func:`detect_format`.
    """
    found: set[str] = set()

    def note(listing: _Listing) -> None:
        if listing.images:
            found.add("image")
        if listing.videos:
            found.add("video")

    top = _Listing(root)
    note(top)
    looked = 0
    for sub in top.dirs:
        if looked >= folders:
            break
        listing = _Listing(sub)
        note(listing)
        looked += 1
        if sub.name.lower() in SPLIT_NAMES:
            for class_dir in listing.dirs[:folders]:
                note(_Listing(class_dir))
    return found
