"""Every index reader on generated layouts, auto-detection, manifests and the errors users see."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from vidssl.data import index as index_module
from vidssl.data.decode import VideoInfo
from vidssl.data.index import (MANIFEST_NAME, Manifest, VideoRecord, build_manifest, check_annotations,
                               detect_format, load_manifest)
from vidssl.errors import DataError


@pytest.fixture()
def place(videos):
    """Copy a fixture video (with audio) to ``root/rel`` and return the path."""

    def _place(root: Path, rel: str, source: str = "av") -> Path:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(videos[source], target)
        return target

    return _place


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def make_ucf(root: Path, place) -> None:
    for cls in ("Archery", "Bowling"):
        for g in (1, 2):
            place(root / "UCF-101", f"{cls}/v_{cls}_g{g:02d}_c01.avi")
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 1\nBowling/v_Bowling_g02_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\nBowling/v_Bowling_g01_c01.avi\n")
    (lists / "trainlist02.txt").write_text("Archery/v_Archery_g01_c01.avi 1\nBowling/v_Bowling_g01_c01.avi 2\n")
    (lists / "testlist02.txt").write_text("Archery/v_Archery_g02_c01.avi\nBowling/v_Bowling_g02_c01.avi\n")


def test_folder_layout_with_splits(tmp_path, place):
    for split in ("train", "val"):
        for cls in ("dog", "cat"):
            place(tmp_path, f"{split}/{cls}/{cls}_{split}.mp4")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not a video")
    manifest = build_manifest(tmp_path, probe=False)
    assert manifest.format == "folder" and manifest.class_names == ["cat", "dog"]
    assert len(manifest) == 4 and manifest.folds == [1]
    train = manifest.subset("train")
    assert {(r.path, r.label, r.label_name) for r in train.records} == {("train/cat/cat_train.mp4", 0, "cat"),
                                                                         ("train/dog/dog_train.mp4", 1, "dog")}
    assert len(manifest.subset("validation").records) == 2  # split names are normalised
    with pytest.raises(DataError, match="no 'test' videos") as excinfo:
        manifest.subset("test")
    one_line_error(excinfo)


def test_folder_layout_without_splits(tmp_path, place):
    place(tmp_path, "jump/a.mp4")
    place(tmp_path, "run/b.mkv")
    manifest = build_manifest(tmp_path)
    assert [r.label_name for r in manifest.records] == ["jump", "run"] and manifest.folds == []
    assert all(r.info is not None and r.info.num_frames == 50 for r in manifest.records)
    assert len(manifest.subset(None)) == 2


def test_csv_lists(tmp_path, place):
    place(tmp_path, "videos/swim/a.mp4")
    place(tmp_path, "videos/swim/b.mp4")
    place(tmp_path, "videos/climb/c.mp4")
    (tmp_path / "train.csv").write_text("videos/swim/a.mp4 1\nvideos/climb/c.mp4 0\n")
    (tmp_path / "val.csv").write_text("videos/swim/b.mp4,1\nvideos/swim/gone.mp4 1\n")
    assert detect_format(tmp_path) == "csv"
    manifest = build_manifest(tmp_path, probe=False)
    assert manifest.class_names == ["climb", "swim"] and manifest.missing == ["videos/swim/gone.mp4"]
    assert {r.path: (r.label, r.splits[1]) for r in manifest.records} == {
        "videos/swim/a.mp4": (1, "train"), "videos/climb/c.mp4": (0, "train"), "videos/swim/b.mp4": (1, "val")}


def test_csv_malformed_line(tmp_path, place):
    place(tmp_path, "a.mp4")
    (tmp_path / "train.csv").write_text("a.mp4 0\na.mp4 notanumber\n")
    with pytest.raises(DataError, match=r"train.csv line 2: expected 'PATH LABEL'") as excinfo:
        build_manifest(tmp_path, probe=False)
    one_line_error(excinfo)
    (tmp_path / "train.csv").write_text("\n")
    with pytest.raises(DataError, match="list no videos"):
        build_manifest(tmp_path, probe=False)


def test_ucf101_official_lists(tmp_path, place):
    make_ucf(tmp_path, place)
    assert detect_format(tmp_path) == "ucf101"
    manifest = build_manifest(tmp_path)
    assert manifest.class_names == ["Archery", "Bowling"] and manifest.folds == [1, 2]
    record = next(r for r in manifest.records if r.path.endswith("v_Archery_g01_c01.avi"))
    assert record.path == "UCF-101/Archery/v_Archery_g01_c01.avi" and record.label == 0
    assert record.splits == {1: "test", 2: "train"} and record.info.has_audio
    assert {r.label_name for r in manifest.subset("test", fold=2).records} == {"Archery", "Bowling"}
    with pytest.raises(DataError, match="fold 3 is not in this dataset"):
        manifest.subset("train", fold=3)


def test_ucf101_malformed_and_inconsistent_lists(tmp_path, place):
    make_ucf(tmp_path, place)
    lists = tmp_path / "ucfTrainTestlist"
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 1\nthis line is wrong\n")
    with pytest.raises(DataError, match=r"trainlist01.txt line 2: expected 'CLASS/FILE'.*fix or remove") as excinfo:
        build_manifest(tmp_path, probe=False)
    one_line_error(excinfo)
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g02_c01.avi 2\n")
    with pytest.raises(DataError, match="disagrees with classInd.txt"):
        build_manifest(tmp_path, probe=False)
    (lists / "trainlist01.txt").write_text("Rowing/v_Rowing_g02_c01.avi 1\n")
    with pytest.raises(DataError, match="class 'Rowing' is not in classInd.txt"):
        build_manifest(tmp_path, probe=False)
    (lists / "classInd.txt").write_text("1 Archery\nBowling\n")
    with pytest.raises(DataError, match="classInd.txt line 2: expected 'INDEX CLASSNAME'"):
        build_manifest(tmp_path, probe=False)


def test_ucf101_lists_pointing_nowhere(tmp_path, place):
    make_ucf(tmp_path, place)
    shutil.rmtree(tmp_path / "UCF-101")
    with pytest.raises(DataError, match="none of the videos listed") as excinfo:
        build_manifest(tmp_path, probe=False)
    one_line_error(excinfo)


def test_hmdb51_split_files(tmp_path, place):
    for cls in ("brush_hair", "cartwheel"):
        for i in range(3):
            place(tmp_path / "videos", f"{cls}/{cls}_{i}.avi")
        splits = tmp_path / "testTrainMulti_7030_splits"
        splits.mkdir(exist_ok=True)
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_0.avi 1\n{cls}_1.avi 2 \n{cls}_2.avi 0\n")
        (splits / f"{cls}_test_split2.txt").write_text(f"{cls}_0.avi 2\n{cls}_1.avi 1\n{cls}_2.avi 1\n")
    assert detect_format(tmp_path) == "hmdb51"
    manifest = build_manifest(tmp_path, probe=False)
    assert manifest.class_names == ["brush_hair", "cartwheel"] and manifest.folds == [1, 2]
    record = next(r for r in manifest.records if r.path.endswith("cartwheel_2.avi"))
    assert record.path == "videos/cartwheel/cartwheel_2.avi" and record.label == 1
    assert record.splits == {1: "unused", 2: "train"}
    assert len(manifest.subset("train", 1)) == 2 and len(manifest.subset("test", 1)) == 2
    (splits / "cartwheel_test_split1.txt").write_text("cartwheel_0.avi 3\n")
    with pytest.raises(DataError, match=r"cartwheel_test_split1.txt line 1: expected 'VIDEO 0\|1\|2'") as excinfo:
        build_manifest(tmp_path, probe=False)
    one_line_error(excinfo)


def test_kinetics_csv_nested_and_flat(tmp_path, place):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"passing American football (in game)",abc,10,20,train,0\n'
        "abseiling,def,0,10,train,0\n"
        "abseiling,gone,5,15,train,0\n"
    )
    (tmp_path / "annotations" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,ghi,30,40,validate\n")
    place(tmp_path, "train/passing American football (in game)/abc_000010_000020.mp4")
    place(tmp_path, "train/abseiling/def_000000_000010.mp4")
    place(tmp_path, "ghi_000030_000040.mp4")  # flat
    assert detect_format(tmp_path) == "kinetics"
    manifest = build_manifest(tmp_path, probe=False)
    assert manifest.class_names == ["abseiling", "passing American football (in game)"]
    assert manifest.missing == ["gone_000005_000015"]
    by_id = {Path(r.path).name[:3]: r for r in manifest.records}
    assert by_id["abc"].label == 1 and by_id["abc"].splits == {1: "train"}
    assert by_id["ghi"].splits == {1: "val"} and by_id["ghi"].path == "ghi_000030_000040.mp4"


def test_wrong_root_file_root_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist; check the path") as excinfo:
        build_manifest(tmp_path / "nope")
    one_line_error(excinfo)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        build_manifest(tmp_path / "file.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is empty or has no recognisable dataset layout") as excinfo:
        build_manifest(empty)
    one_line_error(excinfo)
    (empty / "classA").mkdir()
    with pytest.raises(DataError, match="has no videos in class folders"):
        build_manifest(empty)
    with pytest.raises(DataError, match="unknown dataset format 'xyz'"):
        build_manifest(empty, format="xyz")


def test_loose_videos_need_class_folders(tmp_path, place):
    place(tmp_path, "a.mp4")
    with pytest.raises(DataError, match="no class folders"):
        build_manifest(tmp_path)


def test_manifest_roundtrip_cache_and_unreadable(tmp_path, place, videos, monkeypatch):
    place(tmp_path, "a/x.mp4")
    place(tmp_path, "b/y.mp4", source="noaudio")
    (tmp_path / "b" / "broken.mp4").write_text("not a video")
    manifest = build_manifest(tmp_path)
    assert (tmp_path / MANIFEST_NAME).is_file()
    [bad] = manifest.unreadable()
    assert bad.path == "b/broken.mp4" and "not a readable video" in bad.error
    loaded = load_manifest(tmp_path)
    assert loaded.to_dict() == manifest.to_dict()
    silent = next(r for r in loaded.records if r.path == "b/y.mp4")
    assert silent.info.num_frames == 30 and not silent.info.has_audio

    def fail(*args, **kwargs):
        raise AssertionError("probed again although the files did not change")

    monkeypatch.setattr("vidssl.data.decode.probe", fail)
    again = build_manifest(tmp_path)  # every probe comes from the cache
    assert again.to_dict() == manifest.to_dict()


def test_manifest_out_path_and_load_errors(tmp_path, place):
    root = tmp_path / "data"
    place(root, "a/x.mp4")
    out = tmp_path / "elsewhere" / "m.json"
    build_manifest(root, out=out)
    assert out.is_file() and not (root / MANIFEST_NAME).exists()
    assert len(load_manifest(out)) == 1
    with pytest.raises(DataError, match="no manifest in .*run `vidssl data index"):
        load_manifest(root)
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(tmp_path / "missing.json")
    out.write_text("{not json")
    with pytest.raises(DataError, match="is unreadable") as excinfo:
        load_manifest(out)
    one_line_error(excinfo)


def test_moved_dataset_keeps_working(tmp_path, place):
    place(tmp_path / "old", "a/x.mp4")
    build_manifest(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    manifest = load_manifest(tmp_path / "new")
    assert manifest.root == str((tmp_path / "new").resolve())
    assert Path(manifest.resolve(manifest.records[0])).is_file()


def test_readers_dict_is_plain():
    assert set(index_module.READERS) == {"folder", "csv", "ucf101", "hmdb51", "kinetics", "movienet", "movienet_keyframes",
                                         "images"}
    data = Manifest(root="/r", class_names=["a"], records=[]).to_dict()
    assert json.loads(json.dumps(data))["class_names"] == ["a"]


def test_demo_dataset_is_detected_as_ucf101(demo_manifest):
    assert demo_manifest.format == "ucf101" and demo_manifest.folds == [1, 2, 3]
    assert demo_manifest.num_classes >= 8 and not demo_manifest.unreadable()
    assert all(r.info.has_audio and r.info.fps == 25 for r in demo_manifest.records)
    train, test = demo_manifest.subset("train", 1), demo_manifest.subset("test", 1)
    assert len(train) + len(test) == len(demo_manifest)


def test_read_only_root_keeps_the_manifest_in_memory(tmp_path, place, monkeypatch, caplog):
    place(tmp_path, "a/x.mp4")

    def refuse(self, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Manifest, "save", refuse)
    manifest = build_manifest(tmp_path)  # root not writable: warn, still return the manifest
    assert len(manifest) == 1 and "pass out=" in caplog.text
    with pytest.raises(DataError, match="cannot write the manifest to .*choose another --out"):
        build_manifest(tmp_path, out=tmp_path / "m.json")


# ---------------------------------------------------------------------------------------------
# annotations


def probed(num_frames: int) -> VideoInfo:
    return VideoInfo(duration=num_frames / 25, fps=25.0, num_frames=num_frames, width=64, height=48,
                     has_audio=False, frames_counted=True)


def test_annotated_record_roundtrips_through_the_manifest(tmp_path):
    annotations = {
        "shots": [[0, 12], [12, 30], [31, 50]],
        "shot_labels": [0, 1, -1],
        "captions": [{"start": 0.0, "end": 1.5, "text": "a man opens a door"}],
        "imdb_id": "tt0000001",  # any other key a reader attaches is kept as it is
    }
    records = [VideoRecord("movies/tt0000001.mp4", 0, "film", {1: "train"}, info=probed(50), annotations=annotations),
               VideoRecord("movies/plain.mp4", 0, "film", {1: "test"}, info=probed(50))]
    manifest = Manifest(root=str(tmp_path), class_names=["film"], records=records, format="folder")
    path = manifest.save(tmp_path / "m.json")
    written = json.loads(path.read_text())["records"]
    assert written[0]["annotations"] == annotations and "annotations" not in written[1]  # empty: not written
    loaded = load_manifest(path)
    assert loaded.records[0].annotations == annotations and loaded.records[1].annotations == {}
    assert loaded.to_dict() == manifest.to_dict()


def test_manifest_written_before_annotations_still_loads(tmp_path):
    old = {"version": 1, "root": str(tmp_path), "format": "folder", "class_names": ["a"], "missing": [],
           "records": [{"path": "a/x.mp4", "label": 0, "label_name": "a", "splits": {}, "info": probed(50).to_dict(),
                        "error": None, "size": 10, "mtime": 1.0}]}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(old))
    [record] = load_manifest(tmp_path).records
    assert record.annotations == {} and record.info.num_frames == 50
    assert record.to_dict() == old["records"][0]  # and it is saved as it was


BAD_ANNOTATIONS = [
    ({"shots": [[0, 10.5]]}, "shot 0 is [0, 10.5], not a [start_frame, end_frame) pair of ints"),
    ({"shots": [[0, 10, 20]]}, "shot 0 is [0, 10, 20], not a [start_frame, end_frame) pair of ints"),
    ({"shots": "0-10"}, "'shots' must be a list of [start_frame, end_frame) pairs"),
    ({"shots": [[10, 10]]}, "shot 0 [10, 10) does not have 0 <= start < end"),
    ({"shots": [[-5, 10]]}, "shot 0 [-5, 10) does not have 0 <= start < end"),
    ({"shots": [[0, 10], [5, 20]]}, "shot 1 [5, 20) overlaps or comes before the previous shot"),
    ({"shots": [[10, 20], [0, 5]]}, "shot 1 [0, 5) overlaps or comes before the previous shot"),
    ({"shots": [[0, 30], [30, 51]]}, "shot 1 [30, 51) ends past the video's 50 frames"),
    ({"shots": [[0, 10], [10, 20]], "shot_labels": [1]}, "shot_labels has 1 entries for 2 shots"),
    ({"shot_labels": [0]}, "shot_labels has 1 entries for 0 shots"),
    ({"shots": [[0, 10], [10, 20]], "shot_labels": [0, 2]}, "shot_labels[1] is 2, not 1"),
    ({"shots": [[0, 10]], "shot_labels": [True]}, "shot_labels[0] is True, not 1"),
]


@pytest.mark.parametrize("annotations, problem", BAD_ANNOTATIONS)
def test_bad_annotations_name_the_video_and_the_problem(tmp_path, annotations, problem):
    record = VideoRecord("movies/tt0000001.mp4", info=probed(50), annotations=annotations)
    expected = re.escape(f"annotations of movies/tt0000001.mp4: {problem}")
    with pytest.raises(DataError, match=expected) as excinfo:
        check_annotations(record)
    one_line_error(excinfo)
    # Loading a manifest checks every record; the message also names the manifest.
    path = Manifest(root=str(tmp_path), class_names=[], records=[record]).save(tmp_path / "m.json")
    with pytest.raises(DataError, match=re.escape(f"manifest {path}: ") + expected):
        load_manifest(path)


def test_shots_are_not_checked_against_an_unknown_frame_count():
    check_annotations(VideoRecord("x.mp4", annotations={"shots": [[0, 10_000]], "shot_labels": [-1]}))
    check_annotations(VideoRecord("x.mp4"))
    with pytest.raises(DataError, match=r"annotations of x\.mp4 must be a mapping"):
        check_annotations(VideoRecord("x.mp4", annotations=[[0, 10]]))
