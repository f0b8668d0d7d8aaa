"""`layout.inside` resolves both paths: `..` and links are taken out before the comparison, so
`ck/../victim.txt` and a link out of `ck` are not inside `ck` (with `absolute()` they were)."""

from __future__ import annotations

from toolkit.io.layout import inside


def test_dotdot_out_of_the_folder_is_not_inside(tmp_path):
    ck = tmp_path / "ck"
    (ck / "sub").mkdir(parents=True)
    assert inside(ck / "sub" / "a.ckpt", ck) and inside(ck, ck)
    assert inside(ck / "sub" / ".." / "a.ckpt", ck)
    assert not inside(ck / ".." / "victim.txt", ck)
    assert not inside(f"{ck}/sub/../../victim.txt", ck)
    assert not inside(tmp_path, ck)


def test_links_are_followed_both_ways(tmp_path):
    ck, outside = tmp_path / "ck", tmp_path / "outside"
    ck.mkdir()
    outside.mkdir()
    (ck / "out").symlink_to(outside)
    (outside / "in").symlink_to(ck)
    assert not inside(ck / "out" / "victim.txt", ck)
    assert inside(outside / "in" / "last.ckpt", ck)
    (tmp_path / "ck-link").symlink_to(ck)
    assert inside(ck / "last.ckpt", tmp_path / "ck-link")


def test_a_value_that_is_no_path_lies_nowhere(tmp_path):
    assert not inside(f"{tmp_path}/a\0b", tmp_path)
    assert not inside(b"/etc/hostname", tmp_path)
    assert not inside(None, tmp_path)
