"""Serving the page: the login, the files it hands out, folder settings locked on the network.

The running app is tested in test_browser.py (a login, forbidden paths, a downloaded m4b)."""

from __future__ import annotations

import json
import os

import pytest

from audiobook.errors import AudiobookError
from audiobook.serving import ServedFiles, blocked_paths, parse_login, serving_for
from backend import Backend


def test_only_the_network_asks_for_a_login():
    local = serving_for()
    assert (local.host, local.share, local.auth, local.network) == ("127.0.0.1", False, None, False)
    listen = serving_for(listen=True)
    assert listen.host == "0.0.0.0" and listen.network and listen.generated
    assert listen.password in listen.login_line() and serving_for(listen=True).password != listen.password
    share = serving_for(share=True, auth="ann:pass:with:colons")
    assert share.host == "127.0.0.1" and share.network and share.auth == [("ann", "pass:with:colons")]
    assert "--auth" in share.login_line() and share.password not in share.login_line()
    assert serving_for(auth="ann:pw").auth == [("ann", "pw")]  # a login on 127.0.0.1 too, when asked


@pytest.mark.parametrize("text", ["", "ann", "ann:", ":pw", "  :pw"])
def test_a_bad_login_is_refused(text):
    with pytest.raises(AudiobookError, match=r"^--auth takes USER:PASSWORD"):
        parse_login(text)


def test_served_copies_are_finished_files_only(tmp_path):
    book = tmp_path / "output" / "Harbour"
    (book / "chunks").mkdir(parents=True)
    m4b = book / "Harbour.m4b"
    m4b.write_bytes(b"first")
    served = ServedFiles(tmp_path / "served")

    copy = served(m4b)
    assert copy.startswith(str(tmp_path / "served")) and open(copy, "rb").read() == b"first"
    assert served(str(m4b)) == copy  # the same file is one copy
    assert served.owned(copy) == copy and served.owned(str(m4b)) is None and served.owned("/etc/passwd") is None
    assert served(None) is None

    # A newer file is a new copy; the one already handed out stays as it was.
    tmp = book / ".new"
    tmp.write_bytes(b"second version")
    os.replace(tmp, m4b)
    newer = served(m4b)
    assert newer != copy and open(newer, "rb").read() == b"second version" and open(copy, "rb").read() == b"first"

    (book / "Harbour (read-along).epub").write_bytes(b"epub")  # the read-along book is a finished file
    assert open(served(book / "Harbour (read-along).epub"), "rb").read() == b"epub"
    for name in ("manifest.json", "chunks/0123abcd.wav", "book.txt", "notes.epub", "source.epub"):
        (book / name).write_text("{}")
        with pytest.raises(AudiobookError, match="is not a finished file"):
            served(book / name)
    (tmp_path / "user_settings.json").write_text("{}")
    with pytest.raises(AudiobookError, match="is not a finished file"):
        served(tmp_path / "user_settings.json")
    with pytest.raises(AudiobookError, match="is gone"):
        served(book / "missing.m4b")
    served.clear()
    assert not (tmp_path / "served").exists()


def test_blocked_paths_never_block_the_upload_folder(tmp_path):
    uploads = tmp_path / "project" / "tmp" / "gradio"
    got = blocked_paths([tmp_path / "project", tmp_path / "project" / "output", tmp_path / "project" / "output"],
                        keep_open=[uploads])
    assert got == [str((tmp_path / "project" / "output").resolve())]


def test_folder_settings_are_locked_on_the_network(tmp_path):
    path = tmp_path / "user_settings.json"
    path.write_text(json.dumps({"output_dir": "books", "batch_size": 3}))
    b = Backend(root=tmp_path, lock_folders=True)
    for key, value in [("output_dir", "/"), ("voices_dir", "/etc"), ("models_dir", "/m"), ("pronunciations_file", "/x.json")]:
        with pytest.raises(AudiobookError, match=rf"^The folder setting '{key}' cannot be changed from a page served to the network"):
            b.save_settings(batch_size=9, **{key: value})
    assert json.loads(path.read_text()) == {"output_dir": "books", "batch_size": 3}  # nothing written
    assert b.save_settings(batch_size=9, output_dir="books").batch_size == 9  # unchanged folders are fine
    assert b.reset_settings().output_dir == "books" and b.settings.batch_size == 5
    assert json.loads(path.read_text())["output_dir"] == "books"

    here = Backend(root=tmp_path)  # on this computer the folders can change
    assert here.save_settings(output_dir="elsewhere").output_dir == "elsewhere"
    assert here.reset_settings().output_dir == "output"
