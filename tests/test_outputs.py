"""Output files checked before the work and written all or nothing (plc/outputs.py)."""

from __future__ import annotations

import os

import pytest

from plc.errors import UserError
from plc.outputs import StagedOutputs, check_output_folder, check_outputs


def test_an_output_that_is_an_input_is_refused_also_through_links(tmp_path):
    src = tmp_path / "in.wav"
    src.write_bytes(b"audio")
    (tmp_path / "soft.wav").symlink_to(src)
    os.link(src, tmp_path / "hard.wav")
    for out in (src, tmp_path / "soft.wav", tmp_path / "hard.wav", tmp_path / "sub" / ".." / "in.wav"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UserError, match="is the input"):
            check_outputs({"OUTPUT": out}, inputs=[src])
    check_outputs({"OUTPUT": tmp_path / "new.wav"}, inputs=[src, None])


def test_two_outputs_in_one_file_a_folder_and_a_missing_or_unwritable_folder_are_refused(tmp_path):
    out = tmp_path / "o.wav"
    with pytest.raises(UserError, match="is also OUTPUT"):
        check_outputs({"OUTPUT": out, "--stats": tmp_path / "." / "o.wav"})
    with pytest.raises(UserError, match="is a folder"):
        check_outputs({"--stats": tmp_path})
    with pytest.raises(UserError, match="does not exist"):
        check_outputs({"--stats": tmp_path / "nodir" / "s.json"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_outputs({"--stats": tmp_path / "file" / "s.json"})
    with pytest.raises(UserError, match="cannot write"):
        check_outputs({"OUTPUT": "/proc/o.wav"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the checks create nothing


def test_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_output_folder("--out", tmp_path / "f")
    with pytest.raises(UserError, match="not a folder"):
        check_output_folder("--out", tmp_path / "f" / "deeper")
    with pytest.raises(UserError, match="cannot write"):
        check_output_folder("--out", "/proc/new/folder")
    assert check_output_folder("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()


def test_staged_outputs_replace_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.json"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with StagedOutputs() as staged:
            staged.path(a).write_text("new a")
            staged.path(b).write_text("new b")
            raise RuntimeError("the work failed after writing")
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary files left
    with StagedOutputs() as staged:
        assert staged.path(a).suffix == ".txt" and staged.path(a).parent == tmp_path
        staged.path(a).write_text("new a")
        staged.path(b).write_text("new b")
        assert a.read_text() == "old a"  # nothing is replaced before the end
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert b.stat().st_mode & 0o777 == 0o666 & ~umask
